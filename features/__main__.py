"""``python -m features {validate,build,catalog}``: the feature command line.

Each subcommand's arguments and behaviour live in its own module
(``features.validate_cli``, ``features.build_cli``, ``features.catalog``), which exposes
``add_arguments(parser)`` and ``run(args) -> int`` (the process exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "validate": ("features.validate_cli", "Check a raw-table export against the data contract."),
    "build": ("features.build_cli", "Build point-in-time signals for buyers as of given dates."),
    "catalog": ("features.catalog", "Write the human-readable signal catalog (docs/signals.md)."),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
