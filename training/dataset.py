"""Assemble the training frame: point-in-time signals and labels for monthly snapshots, shard by shard."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features import build as features_build
from features import registry as features_registry
from features import specs as features_specs
from features.build import build_signals, make_spine
from features.io import load_tables, shard_parts
from features.registry import signals
from training import labels as labels_module
from training.labels import make_labels


def sample_buyers(buyers: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A reproducible random ``fraction`` of ``buyers`` (all of them when fraction >= 1)."""
    if fraction >= 1:
        return buyers
    keep = np.random.default_rng(seed).random(len(buyers)) < fraction
    return buyers.loc[keep]


def assemble(
    data_dir: Path,
    dates: list[pd.Timestamp],
    max_buyers: int | None = None,
    seed: int = 7,
    progress: Callable[[str], None] = lambda _msg: None,
) -> pd.DataFrame:
    """Signals and labels for every (buyer, date) with the buyer registered before the date.

    Args:
        data_dir: Raw-table export (validated as it is read; bad data raises ``ContractError``).
        dates: Snapshot as-of dates (UTC).
        max_buyers: Use a random subset of about this many buyers (default all).
        seed: Seed of that subset.
        progress: Called with a line of text after each shard.

    Returns:
        buyer_id, as_of, one float32 column per signal, then the label columns.
    """
    parts = shard_parts(data_dir)
    total = None
    frames = []
    for i, part in enumerate(parts):
        tables = load_tables(data_dir, part=part)
        if total is None:
            total = max(1, len(tables["buyers"]) * len(parts))
        fraction = 1.0 if max_buyers is None else max_buyers / total
        buyers = sample_buyers(tables["buyers"], fraction, seed + part)
        spine = make_spine(buyers, dates)
        signals = build_signals(tables, spine)
        labels = make_labels(tables, spine)
        frames.append(pd.concat([signals.reset_index(drop=True), labels.reset_index(drop=True)], axis=1))
        progress(f"shard {i + 1}/{len(parts)}: {len(spine):,} snapshot rows")
    return pd.concat(frames, ignore_index=True)


def cache_key(data_dir: Path, dates: list[pd.Timestamp], max_buyers: int | None, seed: int) -> str:
    """A digest of everything the assembled frame depends on: the export, the signal and label code, the sample."""
    code = [
        Path(m.__file__).read_bytes()
        for m in (features_build, features_registry, features_specs, labels_module)
    ]
    manifest = (
        (Path(data_dir) / "manifest.json").read_bytes()
        if (Path(data_dir) / "manifest.json").is_file()
        else b""
    )
    digest = hashlib.sha256()
    for part in (*code, manifest, repr(signals()).encode(), str(Path(data_dir).resolve()).encode()):
        digest.update(part)
    digest.update(json.dumps([str(d) for d in dates] + [max_buyers, seed]).encode())
    return digest.hexdigest()[:16]


def assemble_cached(
    data_dir: Path,
    dates: list[pd.Timestamp],
    cache_dir: Path | None,
    max_buyers: int | None = None,
    seed: int = 7,
    progress: Callable[[str], None] = lambda _msg: None,
) -> pd.DataFrame:
    """``assemble``, reusing a parquet copy in ``cache_dir`` when nothing it depends on has changed."""
    if cache_dir is None:
        return assemble(data_dir, dates, max_buyers, seed, progress)
    path = Path(cache_dir) / f"snapshots-{cache_key(data_dir, dates, max_buyers, seed)}.parquet"
    if path.is_file():
        progress(f"reusing the snapshot matrix {path}")
        return pd.read_parquet(path)
    frame = assemble(data_dir, dates, max_buyers, seed, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return frame
