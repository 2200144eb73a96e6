"""Build the point-in-time signal matrix: one float32 column per registry signal.

``build_signals(tables, spine)`` is pure and vectorised (the engine is
:mod:`features.signals_eval`; the point-in-time rule is :mod:`features.pit`): a spine
row ``(buyer_id, as_of)`` sees only rows known strictly before ``as_of``.
``build_buyer`` is the single-buyer serving path and yields exactly the batch values.

Missing values (see :data:`features.signal_types.AGGREGATIONS`): counts, sums, distinct
counts and open states of nothing are 0; means, minima, maxima, latest values,
changes and days-since of nothing are NaN; ratios and trends with a zero denominator
are NaN.

``build_shards`` runs shard by shard (buyer-partitioned parts): pass 1 indexes device
first uses over all parts (devices shared across shards, see
:mod:`features.signals_devices`), pass 2 loads and validates one part and builds its spine
and signals, so memory is bounded by a shard. Writing the matrix, in process or on a
cluster, is :mod:`features.build_cli` (``python -m features build``).
"""

from __future__ import annotations

import mmap
import os
import sys
import time as clock
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features import pit, registry, signals_devices, signals_eval
from features.memory import release_free_memory
from features.signal_types import Signal


def make_spine(buyers: pd.DataFrame, as_of: Sequence[pd.Timestamp], limit: int | None = None) -> pd.DataFrame:
    """Spine rows ``(buyer_id, as_of)`` for every buyer registered strictly before each date.

    Args:
        buyers: The ``buyers`` table.
        as_of: Snapshot instants (UTC).
        limit: Keep only the ``limit`` smallest buyer ids (``None``: all).

    Returns:
        Columns ``buyer_id`` (int64) and ``as_of`` (``datetime64[us, UTC]``), sorted.
    """
    ids = buyers["buyer_id"].to_numpy(dtype=np.int64)
    registered = pit.micros(buyers["registered_at"])
    if limit is not None:
        keep = np.sort(ids)[:limit]
        registered, ids = registered[np.isin(ids, keep)], ids[np.isin(ids, keep)]
    frames = [empty_spine()]
    for stamp in map(_utc, as_of):
        chosen = ids[registered < pit.micros([stamp])[0]]
        frames.append(
            pd.DataFrame(
                {"buyer_id": chosen, "as_of": pd.Series([stamp] * len(chosen), dtype="datetime64[us, UTC]")}
            )
        )
    spine = pd.concat(frames, ignore_index=True)
    return spine.sort_values(["buyer_id", "as_of"], kind="stable").reset_index(drop=True)


CHUNK_ROWS = 150_000
"""Spine rows evaluated together: bounds the build's working memory (the located event sets and
one float64 column per chunk) whatever the spine's length."""
MAX_PROCESSES = 4
"""At most this many processes share one in-process build: each holds the event sets of its own
signals (a few hundred MB at the default marketplace), all of them the tables (shared, forked)."""


def local_processes() -> int:
    """Processes an in-process build splits its signals over: the cores this process may use, at
    most ``MAX_PROCESSES``; 1 where processes cannot be forked."""
    if not hasattr(os, "fork") or not hasattr(os, "sched_getaffinity"):
        return 1
    return max(1, min(MAX_PROCESSES, len(os.sched_getaffinity(0))))


def build_signals(
    tables: dict[str, pd.DataFrame],
    spine: pd.DataFrame,
    signals: Sequence[Signal] | None = None,
    processes: int = 1,
) -> pd.DataFrame:
    """Signal values for each spine row, from events known strictly before its ``as_of``.

    Args:
        tables: Raw tables by contract name (missing tables count as empty). May hold
            ``shared_devices`` (:mod:`features.signals_devices`) built from the whole
            export; otherwise it is derived from these tables alone.
        spine: Columns ``buyer_id`` and ``as_of`` (UTC instants); any order, repeats allowed.
        signals: Signals to build (default: the whole registry, in registry order).
        processes: Split the signals over this many processes (this one and forked children
            writing their columns into shared memory; ``local_processes()``). Each signal is
            computed by one process from the same tables, so the values do not depend on it.

    Returns:
        ``buyer_id``, ``as_of`` and one float32 column per signal, row-aligned with
        ``spine`` (same index). Rows are evaluated ``CHUNK_ROWS`` at a time (each row
        depends on its own buyer and instant only, so chunks give the same values).

    Raises:
        RuntimeError: A forked process failed (its traceback went to stderr).
    """
    signals = registry.signals() if signals is None else tuple(signals)
    tables = _with_derived(tables, signals)
    buyer = spine["buyer_id"].to_numpy(dtype=np.int64)
    as_of = pit.micros(spine["as_of"])
    order = np.lexsort((as_of, buyer))
    groups = _signal_groups(tables, signals, processes if len(order) and signals else 1)
    block = _column_block(len(order), len(signals), shared=len(groups) > 1)
    column = {s.name: j for j, s in enumerate(signals)}

    def fill(group: Sequence[Signal]) -> None:
        for start in range(0, len(order), CHUNK_ROWS):
            rows = order[start : start + CHUNK_ROWS]
            for name, values in signals_eval.evaluate(tables, buyer[rows], as_of[rows], group):
                block[rows, column[name]] = values
            release_free_memory()

    children = [_forked(fill, group) for group in groups[1:]]
    try:
        fill(groups[0])
    finally:
        failed = [pid for pid in children if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    if failed:
        raise RuntimeError(
            f"signal build: {len(failed)} of {len(groups)} processes failed; nothing was built"
        )
    out = pd.DataFrame(block, columns=[s.name for s in signals], index=spine.index, copy=False)
    out.insert(0, "as_of", spine["as_of"].astype("datetime64[us, UTC]"))
    out.insert(0, "buyer_id", buyer)
    return out


def _signal_groups(
    tables: dict[str, pd.DataFrame], signals: Sequence[Signal], processes: int
) -> list[list[Signal]]:
    """``signals`` in evaluation order, cut into at most ``processes`` runs of about equal work (a
    signal's work taken as its table's rows), so that each event set is mostly made by one process."""
    ordered = signals_eval.evaluation_order(signals)
    if processes <= 1 or len(ordered) < 2:
        return [list(ordered)]
    weight = np.array([len(tables.get(s.table, ())) + 1 for s in ordered], dtype=np.float64)
    ends = np.cumsum(weight) / weight.sum()
    cuts = np.searchsorted(ends, np.arange(1, processes) / processes, side="left") + 1
    bounds = [0, *sorted(set(cuts.tolist())), len(ordered)]
    return [list(ordered[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _column_block(rows: int, columns: int, shared: bool) -> np.ndarray:
    """A float32 ``rows x columns`` block, column-major; ``shared``: in anonymous shared memory, so
    forked processes write into it."""
    if not shared or rows * columns == 0:
        return np.empty((rows, columns), dtype=np.float32, order="F")
    memory = mmap.mmap(-1, rows * columns * 4)  # MAP_SHARED | MAP_ANONYMOUS: children write into it
    return np.ndarray((rows, columns), dtype=np.float32, buffer=memory, order="F")


def _forked(work: Callable[[Sequence[Signal]], None], group: Sequence[Signal]) -> int:
    """Run ``work(group)`` in a forked child; its pid. The child exits 0 when done, 1 on any error."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        work(group)
        code = 0
    except BaseException:  # noqa: BLE001 - the parent reports the failure; the child only says why
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def build_buyer(tables: dict[str, pd.DataFrame], buyer_id: int, as_of: pd.Timestamp) -> np.ndarray:
    """One buyer's signals as of one instant: the serving path, equal to the batch values.

    Args:
        tables: Raw tables (may include a precomputed ``shared_devices``).
        buyer_id: The buyer.
        as_of: The instant (UTC); events strictly before it are used.

    Returns:
        float32 vector in registry order.
    """
    signals = registry.signals()
    tables = _with_derived(tables, signals)
    mine = {name: frame[frame["buyer_id"].to_numpy() == buyer_id] for name, frame in tables.items()}
    spine = pd.DataFrame(
        {"buyer_id": [buyer_id], "as_of": pd.Series([_utc(as_of)], dtype="datetime64[us, UTC]")}
    )
    return build_signals(mine, spine, signals).iloc[0, 2:].to_numpy(dtype=np.float32)


def _utc(when: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def empty_spine() -> pd.DataFrame:
    return pd.DataFrame(
        {"buyer_id": pd.Series([], dtype="int64"), "as_of": pd.Series([], dtype="datetime64[us, UTC]")}
    )


def _with_derived(tables: dict[str, pd.DataFrame], signals: Sequence[Signal]) -> dict[str, pd.DataFrame]:
    name = signals_devices.SHARED_DEVICES.name
    if name in tables or not any(s.table == name for s in signals):
        return tables
    first_use = signals_devices.device_first_use(tables)
    return {**tables, name: signals_devices.shared_devices(first_use)}


# --- command line ----------------------------------------------------------------------------


def parse_dates(text: str) -> list[pd.Timestamp]:
    """``"2024-01-01,2024-02-01"`` -> UTC instants (midnight for plain dates).

    Raises:
        ValueError: If a part is not a date or time.
    """
    return [_utc(part.strip()) for part in text.split(",")]


def export_shared_devices(data_dir: str | Path) -> pd.DataFrame:
    """The cross-shard device index of a whole export (``signals_devices.shared_devices``).

    Reads only the device columns of every part. Every in-process path that builds signals shard
    by shard (``build_shards``, training's assembly) passes it as ``tables["shared_devices"]``, so
    a buyer's device signals are the same in training and at publish.
    """
    from features import io

    first_use = [part_device_first_use(data_dir, k) for k in io.shard_parts(data_dir)]
    return signals_devices.shared_devices(pd.concat(first_use, ignore_index=True))


def part_device_first_use(data_dir: str | Path, part: int) -> pd.DataFrame:
    """Shard ``part``'s device first uses (:func:`features.signals_devices.device_first_use`),
    reading only the device columns' tables of that part."""
    from features import io

    return signals_devices.device_first_use(
        {name: io.read_table(data_dir, name, part=part) for name in ("account_events", "orders")}
    )


def build_shards(
    data_dir: str | Path,
    as_of: Sequence[pd.Timestamp],
    limit: int | None = None,
    log=None,
    processes: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Signals for all buyers registered before each date, one frame per buyer shard.

    Pass 1 reads the device columns of every part to index shared devices across
    shards; pass 2 loads and validates one part at a time, so memory is bounded by a
    shard.

    Args:
        data_dir: Raw export (``DIR/<table>/part-0000k.parquet`` or single files).
        as_of: Snapshot instants.
        limit: Only the first ``limit`` buyers (by shard, then id).
        log: Optional callable taking a progress line.
        processes: Processes each shard's signals are split over (default ``local_processes()``).
    """
    from features import io

    processes = local_processes() if processes is None else processes
    parts = io.shard_parts(data_dir)
    shared = export_shared_devices(data_dir)
    left = limit
    for k in parts:
        if left is not None and left <= 0:
            break
        started = clock.perf_counter()
        tables = io.load_tables(data_dir, part=k)
        spine = make_spine(tables["buyers"], as_of, left)
        if left is not None:
            left -= spine["buyer_id"].nunique()
        tables[signals_devices.SHARED_DEVICES.name] = shared[
            shared["buyer_id"].isin(spine["buyer_id"].unique())
        ]
        frame = build_signals(tables, spine, processes=processes)
        if log is not None:
            log(f"part {k}: {len(frame)} rows in {clock.perf_counter() - started:.1f}s")
        yield frame


def to_arrow(frame: pd.DataFrame):
    """A signal frame as a ``pyarrow.Table``: buyer_id int64, as_of timestamp[us, UTC], float32 signals."""
    import pyarrow as pa

    columns = {
        "buyer_id": pa.array(frame["buyer_id"].to_numpy(dtype=np.int64)),
        "as_of": pa.array(pit.micros(frame["as_of"]), type=pa.timestamp("us", tz="UTC")),
    }
    for name in frame.columns[2:]:
        columns[name] = pa.array(frame[name].to_numpy(dtype=np.float32))
    return pa.table(columns)
