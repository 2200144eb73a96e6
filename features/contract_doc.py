"""Render ``docs/data-contract.md`` from ``features.contract``.

``python -m features.contract_doc`` rewrites the file; ``--check`` only reports (exit 1)
whether the committed file is stale. The text is generated: edit ``contract.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from features import contract

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "data-contract.md"

_INTRO = """\
# Raw data contract

<!-- Generated from features/contract.py by `python -m features.contract_doc`; do not edit. -->

A platform export (or the simulator) provides these tables; the feature builder reads
only these, through `features.io.load_tables`, which validates the whole contract and
loads all requested tables or none.

**Layout.** Each table is `DIR/<table>.parquet`, a folder `DIR/<table>/` of
`part-00000.parquet`, `part-00001.parquet`, ... or `DIR/<table>.csv`. Folder exports are
buyer-partitioned: part *k* of every table holds the rows of the same contiguous buyer
range, so each part is self-contained. `DIR/manifest.json` may hold `exported_at`
(ISO-8601, UTC) and `shards` (`[{"part", "buyer_id_min", "buyer_id_max"}]`).
Extra columns are ignored.

**Types.** `int`: 64-bit integer; `float`: 64-bit float (amounts in the platform
currency unit); `str`: text; `bool`: boolean; `timestamp`: UTC instant, stored as
`timestamp[us, UTC]` in parquet (naive CSV timestamps are read as UTC).

**Checks** (`python -m features validate DIR`): missing table or column, wrong type,
unparseable timestamp, null in a required column, duplicate primary key, orphan
reference, value below its minimum or above its maximum, value outside its allowed set,
timestamp after the export time (except `scheduled` columns), event time before the
buyer registered, and a row's `buyer_id` differing from its order's buyer.
"""

_TIME_RULES = """\
## Time semantics

- **Every fact carries the time it became true.** A status, outcome or ruling is
  knowable only from its own timestamp on: an order is canceled from `canceled_at`, a
  review counts as malicious from `removed_as_malicious_at`, a dispute is lost from
  `closed_at`.
- **The export is taken at one moment** (`exported_at`: the manifest, or the
  `--exported-at` flag). Its final states describe the future of any earlier date: a
  signal as of T reads a state only where its timestamp is before T.
- **Null means "not (yet) happened at export time".**
- Every timestamp is at or before the export time, except **scheduled** columns
  (planned instants such as due dates), which may follow it.
- A table's **event time** (when its row's fact begins) may not precede the buyer's
  `registered_at`.
- **Point in time:** a signal as of T uses only events strictly before T; a label uses
  only events in (T, T+90d]. All timestamps are UTC.
- **Bad outcomes** (labels) are read from the same tables after the snapshot date: a
  presale balance unpaid 7 days after its due date; a refund whose return never shipped
  within 14 days, or a refund later found abusive; a dispute lost by the buyer; a
  confirmed-fraud or severe (severity >= {severe}) violation; a credit bill 30+ days past due.
"""


def _range(col: contract.Column) -> str:
    if col.allowed is not None:
        return ", ".join(f"`{v}`" for v in col.allowed)
    low, high = col.min_value, col.max_value
    if low is not None and high is not None:
        return f"{low:g}..{high:g}"
    if low is not None:
        return f">= {low:g}"
    return f"<= {high:g}" if high is not None else ""


def _table_section(t: contract.Table) -> str:
    key = ", ".join(f"`{c}`" for c in t.primary_key) or "none (rows are events)"
    lines = [
        f"## `{t.name}`",
        "",
        f"One row per {t.grain}. Primary key: {key}. Event time: `{t.event_time}`.",
        *([t.description] if t.description else []),
        "",
        "| column | type | nullable | allowed values / range | references | scheduled | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in t.columns:
        ref = f"`{c.references}`" if c.references else ""
        cells = (
            f"`{c.name}`",
            c.kind,
            "yes" if c.nullable else "no",
            _range(c),
            ref,
            "yes" if c.scheduled else "",
        )
        lines.append("| " + " | ".join((*cells, c.description)) + " |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The full markdown text of ``docs/data-contract.md``."""
    parts = [_INTRO, _TIME_RULES.format(severe=contract.SEVERE_VIOLATION)]
    parts += [_table_section(t) for t in contract.TABLES]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Write the doc (default) or, with ``--check``, exit 1 if the committed one is stale."""
    parser = argparse.ArgumentParser(
        prog="python -m features.contract_doc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output", type=Path, default=DOC_PATH, help=f"Where to write (default {DOC_PATH}).")
    parser.add_argument(
        "--check", action="store_true", help="Do not write; exit 1 if the file is out of date."
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        print(
            f"{args.output}: {'up to date' if current == text else 'stale; run python -m features.contract_doc'}"
        )
        return 0 if current == text else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
