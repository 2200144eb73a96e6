"""Write a simulated export: buyer-partitioned parquet parts, truth files and the manifest."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from simulator.calendar import Calendar, build_calendar
from simulator.config import RunConfig, params_dict
from simulator.shard import simulate_shard

TRUTH_DIR = "truth"
TRUTH_FILES = ("traits", "risk", "presale_opportunities", "refund_opportunities", "review_opportunities")


def part_name(part: int) -> str:
    """File name of part ``part`` of a table folder."""
    return f"part-{part:05d}.parquet"


def _clear(out: Path) -> None:
    """Remove what an earlier run wrote here (only the simulator's own names)."""
    for name in (*contract.TABLE_NAMES, TRUTH_DIR):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    (out / "manifest.json").unlink(missing_ok=True)


def write_export(
    cfg: RunConfig,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    client: Any = None,
) -> dict:
    """Simulate every shard and write it; memory (per process) is bounded by one shard.

    In-process, shards are simulated and written in turn. With a Dask ``client``, each
    shard is one task (:func:`write_export_on_cluster`); the files are the same bytes.

    Args:
        cfg: Run configuration.
        out: Output folder (created; earlier simulator output in it is replaced).
        progress: Called as ``progress(done, total)`` after each shard.
        client: A ``distributed.Client`` to run the shards on (``None``: in-process).

    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    if client is not None:
        return write_export_on_cluster(cfg, out, client, progress)
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
            shards.append(_shard_entry(cfg, part))
            if progress:
                progress(part + 1, cfg.shards)
    finally:
        for writer in writers.values():
            writer.close()
    manifest = _manifest(cfg, cal, shards)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _shard_entry(cfg: RunConfig, part: int) -> dict:
    lo, hi = cfg.shard_range(part)
    return {"part": part, "buyer_id_min": lo, "buyer_id_max": hi}


def _manifest(cfg: RunConfig, cal: Calendar, shards: list[dict]) -> dict:
    return {
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
        **({"shifts": [str(s) for s in cfg.shifts]} if cfg.shifts else {}),
    }


def write_export_on_cluster(
    cfg: RunConfig, out: Path, client: Any, progress: Callable[[int, int], None] | None = None
) -> dict:
    """:func:`write_export` with one Dask task per shard; same files, same bytes.

    Each task simulates its shard and writes its parts into a staging folder inside
    ``out`` (raw parts as parquet, truth as Arrow IPC). The client appends the truth
    parts to the truth files in shard order (one shard in memory at a time). Only when
    every shard succeeded is earlier output cleared, the staged folders renamed into
    place and the manifest written, last; on any failure the staging folder is removed
    and ``out`` is left as it was.

    Args:
        cfg: Run configuration.
        out: Output folder (created); the client and the workers must share it.
        client: A ``distributed.Client``.
        progress: Called as ``progress(done, total)`` as shards complete, in shard order.

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        features.cluster.WorkerLost: If a shard was lost with its workers too often.
    """
    from features import cluster

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    staging = out / f".staging-{token}"
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        (staging / TRUTH_DIR).mkdir(parents=True)
        futures = [
            client.submit(_stage_shard, cfg, part, staging, key=f"simulate-shard-{part:05d}-{token}")
            for part in range(cfg.shards)
        ]
        shards = []
        try:
            for part, entry in enumerate(cluster.results(client, futures)):
                for name in TRUTH_FILES:
                    with pa.OSFile(str(_truth_part(staging, name, part)), "rb") as source:
                        table = pa.ipc.open_file(source).read_all()
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(
                            staging / TRUTH_DIR / f"{name}.parquet", table.schema
                        )
                    writers[name].write_table(table)
                    _truth_part(staging, name, part).unlink()
                shards.append(entry)
                if progress:
                    progress(part + 1, cfg.shards)
        finally:
            for writer in writers.values():
                writer.close()
        _clear(out)
        for name in (*contract.TABLE_NAMES, TRUTH_DIR):
            (staging / name).rename(out / name)
        manifest = _manifest(cfg, build_calendar(cfg.start, cfg.months, cfg.params), shards)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _truth_part(staging: Path, name: str, part: int) -> Path:
    return staging / TRUTH_DIR / f"{name}-{part:05d}.arrow"


def _stage_shard(cfg: RunConfig, part: int, staging: Path) -> dict:
    """Task: simulate shard ``part`` and write its parts under ``staging``; its manifest entry."""
    raw, truth = simulate_shard(cfg, build_calendar(cfg.start, cfg.months, cfg.params), part)
    for name, table in raw.items():
        (staging / name).mkdir(parents=True, exist_ok=True)
        tmp = staging / name / f".{part_name(part)}.tmp"
        pq.write_table(table, tmp)
        tmp.rename(staging / name / part_name(part))
    (staging / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    for name, table in truth.items():
        tmp = _truth_part(staging, name, part).with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        tmp.rename(_truth_part(staging, name, part))
    return _shard_entry(cfg, part)
