"""``python -m simulator {generate,summary}``; without a subcommand, ``generate``.

python -m simulator --buyers 20000 --months 24 --seed 7 --out data/market
python -m simulator summary data/market
python -m simulator deploy --data data/market --months 12 --retrain-every 3 --out data/deploy
"""

from __future__ import annotations

import argparse
import sys

from simulator import deploy, generate, summary

SUBCOMMANDS = {
    "generate": (generate, "Simulate the marketplace and write the raw tables, truth and manifest."),
    "summary": (summary, "Print the marginals of an export."),
    "deploy": (deploy, "Continue an export month by month with the product deciding and retraining."),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the subcommand; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["generate", *argv]
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return SUBCOMMANDS[args.command][0].run(args)


if __name__ == "__main__":
    sys.exit(main())
