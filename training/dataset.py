"""Assemble the training frames, shard by shard: point-in-time signals and labels for monthly snapshots,
and for every service opportunity the signals of the snapshot the service would have scored it with."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

import features as features_pkg
from features.build import build_signals, export_shared_devices, local_processes, make_spine
from features.io import load_tables, read_table, shard_parts
from features.memory import release_free_memory
from features.registry import signals
from features.signals_devices import SHARED_DEVICES
from training import labels as labels_module
from training import opportunities as opportunities_module
from training import review_rows as review_module
from training import snapshots as snapshots_module
from training.labels import make_labels
from training.opportunities import FAST_REFUND, PRESALE, presale_rows, refund_rows
from training.review_rows import review_rows
from training.snapshots import TimeSplit

SNAPSHOTS = "snapshots"
REVIEWS = "reviews"  # the review head's rows (``training.review_head.review_rows``) with their signals


def sample_buyers(buyers: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A reproducible random ``fraction`` of ``buyers`` (all of them when fraction >= 1)."""
    if fraction >= 1:
        return buyers
    keep = np.random.default_rng(seed).random(len(buyers)) < fraction
    return buyers.loc[keep]


def with_signals(tables: dict[str, pd.DataFrame], rows: pd.DataFrame, processes: int) -> pd.DataFrame:
    """``rows`` (with buyer_id and signals_as_of) followed by the buyer's signals as of each row's
    ``signals_as_of`` (``training.opportunities``: the published snapshot, not the decision instant)."""
    rows = rows.reset_index(drop=True)
    spine = rows[["buyer_id", "signals_as_of"]].rename(columns={"signals_as_of": "as_of"})
    built = build_signals(tables, spine, processes=processes)
    built = built.drop(columns=["buyer_id", "as_of"])
    return pd.concat([rows, built.reset_index(drop=True)], axis=1)


def assemble_part(
    tables: dict[str, pd.DataFrame],
    buyers: pd.DataFrame,
    dates: list[pd.Timestamp],
    split: TimeSplit | None,
    processes: int = 1,
) -> dict[str, pd.DataFrame]:
    """One shard's frames (see ``assemble``): ``tables`` are the shard's raw tables with
    ``shared_devices`` of the whole export, ``buyers`` the shard's sampled buyers; the signals
    are split over ``processes`` (``features.build.build_signals``)."""
    chosen = buyers["buyer_id"].to_numpy()
    out = {}
    for service, rows in ((PRESALE, presale_rows(tables)), (FAST_REFUND, refund_rows(tables))):
        out[service] = with_signals(tables, rows[np.isin(rows["buyer_id"].to_numpy(), chosen)], processes)
    reviews = review_rows(tables)
    out[REVIEWS] = with_signals(tables, reviews[np.isin(reviews["buyer_id"].to_numpy(), chosen)], processes)
    spine = make_spine(buyers, dates)  # the snapshots last: their frame is the largest
    if split is not None:
        spine = spine.iloc[split.snapshot_rows(spine)].reset_index(drop=True)
    signals = build_signals(tables, spine, processes=processes)
    out[SNAPSHOTS] = pd.concat([signals, make_labels(tables, spine)], axis=1)
    return out


def assemble(
    data_dir: Path,
    dates: list[pd.Timestamp],
    max_buyers: int | None = None,
    seed: int = 7,
    progress: Callable[[str], None] = lambda _msg: None,
    split: TimeSplit | None = None,
) -> dict[str, pd.DataFrame]:
    """Signals and labels per (buyer, date), and signals per service opportunity at its decision.

    Args:
        data_dir: Raw-table export (validated as it is read; bad data raises ``ContractError``).
        dates: Snapshot as-of dates (UTC).
        max_buyers: Use a random subset of about this many buyers (default all).
        seed: Seed of that subset.
        progress: Called with a line of text after each shard.
        split: When given, only the snapshot rows the split uses (``TimeSplit.snapshot_rows``:
            no gap rows, training rows thinned to one per buyer and label window); default every row.

    Returns:
        ``snapshots``: buyer_id, as_of, one float32 column per signal, then the label columns,
        for every buyer registered before each date; and per service (``SERVICES``) one row
        per opportunity of the sampled buyers (``training.opportunities``) with the buyer's
        signals as of the snapshot the service would have scored it with (``signals_as_of``).
    """
    parts = shard_parts(data_dir)
    shared = export_shared_devices(data_dir)  # devices cross shards: the same index publish uses
    fraction = sample_fraction(data_dir, parts, max_buyers)

    def shards() -> Iterator[dict[str, pd.DataFrame]]:
        for part in parts:
            yield shard_frames(data_dir, part, shared, dates, fraction, seed, split, local_processes())
            release_free_memory()  # the shard's tables are gone

    return collect(shards(), len(parts), progress)


def review_frame(data_dir: Path, progress: Callable[[str], None] = lambda _msg: None) -> pd.DataFrame:
    """The review head's rows (``training.review_head.review_rows``) of every buyer with their signals at
    each row's as_of, shard by shard (``assemble`` builds the same rows with everything else)."""
    shared = export_shared_devices(data_dir)
    parts = shard_parts(data_dir)
    chunks = []
    for i, part in enumerate(parts):
        tables = load_tables(data_dir, part=part)
        tables[SHARED_DEVICES.name] = shared[shared["buyer_id"].isin(tables["buyers"]["buyer_id"])]
        chunks.append(with_signals(tables, review_rows(tables), local_processes()))
        progress(f"shard {i + 1}/{len(parts)}: {len(chunks[-1]):,} review rows")
        del tables
        release_free_memory()
    return _concat(chunks)


def sample_fraction(data_dir: Path, parts: list[int], max_buyers: int | None) -> float:
    """The share of each shard's buyers kept for about ``max_buyers`` in all (1 for all of them),
    taking every shard to hold as many buyers as the first."""
    if max_buyers is None:
        return 1.0
    return max_buyers / max(1, len(read_table(data_dir, "buyers", part=parts[0])) * len(parts))


def shard_frames(
    data_dir: Path,
    part: int,
    shared: pd.DataFrame,
    dates: list[pd.Timestamp],
    fraction: float,
    seed: int,
    split: TimeSplit | None,
    processes: int = 1,
) -> dict[str, pd.DataFrame]:
    """Shard ``part``'s frames (``assemble_part``), in-process and on a cluster alike: load and
    validate the shard, sample ``fraction`` of its buyers (seed ``seed + part``) and give it its
    buyers' rows of ``shared``, the whole export's cross-shard device index. ``processes``: see
    ``assemble_part`` (in-process: the machine's cores; a cluster worker builds in its own process)."""
    tables = load_tables(data_dir, part=part)
    buyers = sample_buyers(tables["buyers"], fraction, seed + part)
    tables[SHARED_DEVICES.name] = shared[shared["buyer_id"].isin(tables["buyers"]["buyer_id"])]
    return assemble_part(tables, buyers, dates, split, processes)


def collect(
    shards: Iterable[dict[str, pd.DataFrame]], count: int, progress: Callable[[str], None]
) -> dict[str, pd.DataFrame]:
    """The shards' frames (``shard_frames``, in shard order) as one frame per name, with a
    progress line after each of the ``count`` shards."""
    frames: dict[str, list[pd.DataFrame]] = {SNAPSHOTS: [], PRESALE: [], FAST_REFUND: [], REVIEWS: []}
    for i, shard in enumerate(shards):
        for name, frame in shard.items():
            frames[name].append(frame)
        progress(
            f"shard {i + 1}/{count}: {len(frames[SNAPSHOTS][-1]):,} snapshot rows, "
            f"{len(frames[PRESALE][-1]):,} presales, {len(frames[FAST_REFUND][-1]):,} refund requests"
        )
    return {name: _concat(chunks) for name, chunks in frames.items()}


def _concat(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """The shards' frames as one, without copying a single shard's."""
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def _code_digest() -> bytes:
    """Every source file the assembled frames depend on: the features package and the label code."""
    files = (
        sorted(Path(features_pkg.__file__).parent.glob("*.py"))
        + [Path(m.__file__) for m in (labels_module, opportunities_module, snapshots_module, review_module)]
        + [Path(__file__)]
    )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.digest()


def cache_key(
    data_dir: Path,
    dates: list[pd.Timestamp],
    max_buyers: int | None,
    seed: int,
    split: TimeSplit | None = None,
) -> str:
    """A digest of everything the assembled frames depend on: the export, the signal registry, every
    line of the signal, point-in-time, outcome and label code, and the sample."""
    manifest = (
        (Path(data_dir) / "manifest.json").read_bytes()
        if (Path(data_dir) / "manifest.json").is_file()
        else b""
    )
    digest = hashlib.sha256()
    for part in (_code_digest(), manifest, repr(signals()).encode(), str(Path(data_dir).resolve()).encode()):
        digest.update(part)
    digest.update(json.dumps([str(d) for d in dates] + [max_buyers, seed, split and split.params()]).encode())
    return digest.hexdigest()[:16]


def assemble_cached(
    data_dir: Path,
    dates: list[pd.Timestamp],
    cache_dir: Path | None,
    max_buyers: int | None = None,
    seed: int = 7,
    progress: Callable[[str], None] = lambda _msg: None,
    split: TimeSplit | None = None,
) -> dict[str, pd.DataFrame]:
    """``assemble``, reusing parquet copies in ``cache_dir`` when nothing it depends on has changed."""
    if cache_dir is None:
        return assemble(data_dir, dates, max_buyers, seed, progress, split)
    folder = Path(cache_dir) / f"assembled-{cache_key(data_dir, dates, max_buyers, seed, split)}"
    paths = {name: folder / f"{name}.parquet" for name in (SNAPSHOTS, PRESALE, FAST_REFUND, REVIEWS)}
    if all(p.is_file() for p in paths.values()):
        progress(f"reusing the assembled frames in {folder}")
        return {name: pd.read_parquet(p) for name, p in paths.items()}
    frames = assemble(data_dir, dates, max_buyers, seed, progress, split)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        tmp = paths[name].with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(paths[name])
    return frames
