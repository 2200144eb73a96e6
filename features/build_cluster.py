"""The signal build as Dask tasks: one task per buyer shard, the device index as a shuffle.

The graph, for ``P`` shards and ``B = ceil(P / SHARDS_PER_BUCKET)`` device buckets (all
tasks run on the workers; the client only submits them and appends finished parts to the
output in shard order):

1. ``device-first-use-k``: read shard k's device columns, index first uses and split
   them by device (:func:`features.signals_devices.split_by_device`);
2. ``shared-devices-j``: gather bucket j from every shard, derive its shared pairs and
   split them by the buyer's shard (:func:`features.signals_devices.split_by_part`);
3. ``signals-part-k``: load and validate shard k, gather its shared pairs from every
   bucket, build its signals (:func:`features.build.build_signals`) and write them as an
   Arrow part into the staging folder (temporary name, renamed when complete).

Steps 1-2 and the per-shard build are :func:`map_parts`; what a shard's task does with its
signals is a parameter (:func:`build_parts` stages Arrow parts; ``serving.publish.distributed``
writes the online snapshot's partition). :func:`map_shards` is steps 1-2 with a per-shard task that
loads its shard itself (``training.on_cluster``: training's assembly samples buyers and builds
its own spine).

Memory per worker is bounded by a shard: no task holds more than one shard's tables,
and a bucket holds ``SHARDS_PER_BUCKET`` shards' worth of the first-use index (one row
per buyer and device: a few MB per 25,000 buyers). The shuffle moves ``2 x P x B`` small
pieces (one getitem task each), fine for hundreds of shards; past that, Dask's P2P
shuffle (``dask.dataframe.shuffle``) is the same step with fewer tasks.
"""

from __future__ import annotations

import contextlib
import operator
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from features import build, cluster, signals_devices

SHARDS_PER_BUCKET = 4
"""Shards' worth of first-use rows per device bucket of the shuffle."""


def build_parts(
    client: Any,
    data_dir: str | Path,
    as_of: Sequence[pd.Timestamp],
    staging: Path,
    log: Callable[[str], None] | None = None,
) -> Iterator[pa.Table]:
    """Build every shard's signals on the cluster; yield them as Arrow tables in shard order.

    Args:
        client: A ``distributed.Client``; its workers must see ``data_dir`` and ``staging``.
        data_dir: Raw export (buyer-partitioned parts).
        as_of: Snapshot instants.
        staging: Existing folder the parts are written into (the caller removes it).
        log: Optional callable taking a progress line.

    Yields:
        Each shard's signals (:func:`features.build.to_arrow`), in shard order, as soon as it
        and all before it are complete; its part file is removed once read.

    Raises:
        features.validate.ContractError: If a shard breaks the contract.
        features.cluster.WorkerLost: If a task was lost with its workers too often.
    """
    parts, builds = map_parts(client, data_dir, as_of, _write_arrow, (staging,))
    results = cluster.results(client, builds)
    with contextlib.closing(results):
        for k, (path, rows, seconds) in zip(parts, results, strict=True):
            if log is not None:
                log(f"part {k}: {rows} rows in {seconds:.1f}s")
            with pa.OSFile(str(path), "rb") as source:
                table = pa.ipc.open_file(source).read_all()
            path.unlink()
            yield table


def map_parts(
    client: Any,
    data_dir: str | Path,
    as_of: Sequence[pd.Timestamp],
    task: Callable[..., Any],
    args: tuple = (),
    name: str = "signals-part",
) -> tuple[list[int], list[Any]]:
    """Submit the device shuffle and one task per shard that builds its signals and hands them on.

    The task of shard k (key ``{name}-{k:05d}-<token>``) loads and validates the shard, builds
    its signals with the cross-shard device index and returns ``(task(frame, k, *args), rows,
    seconds)``, where ``frame`` is :func:`features.build.build_signals`' output for the shard
    and ``seconds`` covers the build and ``task``.

    Args:
        client: A ``distributed.Client``; its workers must see ``data_dir``.
        data_dir: Raw export (buyer-partitioned parts).
        as_of: Snapshot instants.
        task: A picklable module-level callable run on the worker, ``task(frame, part, *args)``.
        args: Extra arguments of ``task``; futures among them (e.g. scattered data) are
            resolved on the worker.
        name: Key prefix of the per-shard tasks (what progress, errors and tests see).

    Returns:
        The shard numbers and, in the same order, the futures of their tasks (collect them
        with :func:`features.cluster.results`).
    """
    from features import io

    parts = io.shard_parts(data_dir)
    token = uuid.uuid4().hex[:12]
    builds = [
        client.submit(
            _build_part, data_dir, k, list(as_of), pieces, task, *args, key=f"{name}-{k:05d}-{token}"
        )
        for k, pieces in zip(parts, _device_pieces(client, data_dir, parts, token), strict=True)
    ]
    return parts, builds


def map_shards(
    client: Any, data_dir: str | Path, task: Callable[..., Any], args: tuple = (), name: str = "shard"
) -> tuple[list[int], list[Any]]:
    """Submit the device shuffle and one task per shard given its rows of the cross-shard device index.

    The task of shard k (key ``{name}-{k:05d}-<token>``) returns ``task(data_dir, k, shared,
    *args)``, where ``shared`` is the shard's buyers' rows of the whole export's
    :func:`features.signals_devices.shared_devices` (what ``features.build.export_shared_devices``
    gives in-process, filtered to the shard). Unlike :func:`map_parts`, the task loads the shard
    and chooses its rows itself (training's assembly samples buyers and builds its own spine).

    Args:
        client: A ``distributed.Client``; its workers must see ``data_dir``.
        data_dir: Raw export (buyer-partitioned parts).
        task: A picklable module-level callable run on the worker.
        args: Extra arguments of ``task``.
        name: Key prefix of the per-shard tasks.

    Returns:
        The shard numbers and, in the same order, the futures of their tasks.
    """
    from features import io

    parts = io.shard_parts(data_dir)
    token = uuid.uuid4().hex[:12]
    futures = [
        client.submit(_with_shared, data_dir, k, pieces, task, *args, key=f"{name}-{k:05d}-{token}")
        for k, pieces in zip(parts, _device_pieces(client, data_dir, parts, token), strict=True)
    ]
    return parts, futures


def _device_pieces(client: Any, data_dir: str | Path, parts: list[int], token: str) -> list[list[Any]]:
    """Submit the device first-use shuffle (steps 1-2); per shard, the futures of its piece of
    every bucket (gather them with :func:`features.signals_devices.gather_shared`)."""
    n = -(-len(parts) // SHARDS_PER_BUCKET)
    first_use = [
        client.submit(_first_use_buckets, data_dir, k, n, key=f"device-first-use-{k:05d}-{token}")
        for k in parts
    ]
    buckets = [
        client.submit(
            _shared_by_part,
            [client.submit(operator.getitem, f, j, key=f"device-piece-{k:05d}-{j:05d}-{token}")
             for k, f in zip(parts, first_use, strict=True)],
            parts,
            key=f"shared-devices-{j:05d}-{token}",
        )
        for j in range(n)
    ]  # fmt: skip
    return [
        [client.submit(operator.getitem, b, i, key=f"shared-piece-{j:05d}-{k:05d}-{token}")
         for j, b in enumerate(buckets)]
        for i, k in enumerate(parts)
    ]  # fmt: skip


def _with_shared(
    data_dir: str | Path, part: int, pieces: list[pd.DataFrame], task: Callable[..., Any], *args: Any
) -> Any:
    """Task: ``task(data_dir, part, shared, *args)`` with the shard's gathered shared-device rows."""
    return task(data_dir, part, signals_devices.gather_shared(pieces), *args)


def _first_use_buckets(data_dir: str | Path, part: int, buckets: int) -> list[pd.DataFrame]:
    """Task: shard ``part``'s device first uses, split into ``buckets`` by device."""
    first_use = build.part_device_first_use(data_dir, part).assign(**{signals_devices.PART: part})
    return signals_devices.split_by_device(first_use, buckets)


def _shared_by_part(pieces: list[pd.DataFrame], parts: list[int]) -> list[pd.DataFrame]:
    """Task: one device bucket's shared pairs, split by the buyer's shard."""
    return signals_devices.split_by_part(pd.concat(pieces, ignore_index=True), parts)


def _build_part(
    data_dir: str | Path,
    part: int,
    as_of: list[pd.Timestamp],
    pieces: list[pd.DataFrame],
    task: Callable[..., Any],
    *args: Any,
) -> tuple[Any, int, float]:
    """Task: shard ``part``'s signals handed to ``task``; returns ``(task's result, rows, seconds)``."""
    import time

    from features import io

    started = time.perf_counter()
    tables = io.load_tables(data_dir, part=part)
    spine = build.make_spine(tables["buyers"], as_of)
    shared = signals_devices.gather_shared(pieces)
    tables[signals_devices.SHARED_DEVICES.name] = shared[shared["buyer_id"].isin(spine["buyer_id"].unique())]
    frame = build.build_signals(tables, spine)
    result = task(frame, part, *args)
    return result, len(frame), time.perf_counter() - started


def _write_arrow(frame: pd.DataFrame, part: int, staging: Path) -> Path:
    """Shard ``part``'s signals as an uncompressed Arrow IPC file in ``staging`` (temporary name,
    renamed when complete); returns its path."""
    table = build.to_arrow(frame)
    path = staging / f"part-{part:05d}.arrow"
    tmp = path.with_name(f".{path.name}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    tmp.rename(path)
    return path
