"""Write a simulated export: buyer-partitioned parquet parts, truth files and the manifest."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from features import contract
from simulator.calendar import build_calendar
from simulator.config import RunConfig, params_dict
from simulator.shard import simulate_shard

TRUTH_DIR = "truth"
TRUTH_FILES = ("traits", "risk", "presale_opportunities", "refund_opportunities")


def part_name(part: int) -> str:
    """File name of part ``part`` of a table folder."""
    return f"part-{part:05d}.parquet"


def _clear(out: Path) -> None:
    """Remove what an earlier run wrote here (only the simulator's own names)."""
    for name in (*contract.TABLE_NAMES, TRUTH_DIR):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    (out / "manifest.json").unlink(missing_ok=True)


def write_export(cfg: RunConfig, out: Path, progress: Callable[[int, int], None] | None = None) -> dict:
    """Simulate every shard in turn and write it; memory is bounded by one shard.

    Args:
        cfg: Run configuration.
        out: Output folder (created; earlier simulator output in it is replaced).
        progress: Called as ``progress(done, total)`` after each shard.

    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    cal = build_calendar(cfg.start, cfg.months, cfg.params)
    for name in contract.TABLE_NAMES:
        (out / name).mkdir()
    (out / TRUTH_DIR).mkdir()
    writers: dict[str, pq.ParquetWriter] = {}
    shards = []
    try:
        for part in range(cfg.shards):
            raw, truth = simulate_shard(cfg, cal, part)
            for name, table in raw.items():
                pq.write_table(table, out / name / part_name(part))
            for name, table in truth.items():
                if name not in writers:
                    writers[name] = pq.ParquetWriter(out / TRUTH_DIR / f"{name}.parquet", table.schema)
                writers[name].write_table(table)
            lo, hi = cfg.shard_range(part)
            shards.append({"part": part, "buyer_id_min": lo, "buyer_id_max": hi})
            if progress:
                progress(part + 1, cfg.shards)
    finally:
        for writer in writers.values():
            writer.close()
    manifest = {
        "exported_at": dt.datetime.fromtimestamp(cal.export_at, dt.UTC).isoformat().replace("+00:00", "Z"),
        "start": cfg.start.isoformat(),
        "months": cfg.months,
        "buyers": cfg.buyers,
        "seed": cfg.seed,
        "shard_size": cfg.shard_size,
        "shards": shards,
        "tables": list(contract.TABLE_NAMES),
        "truth": [f"{TRUTH_DIR}/{name}.parquet" for name in TRUTH_FILES],
        "params": params_dict(cfg.params),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
