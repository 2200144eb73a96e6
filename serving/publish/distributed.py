"""``python -m serving.publish --cluster``: the online snapshot written per partition on Dask.

The signal build's graph (:func:`features.build_cluster.map_parts`: the device first-use
shuffle, then one task per buyer shard building its signals as of the instant) runs with a
publishing step at the end of each shard's task (``publish-part-k``), which keeps the
model's signals in order and

* for a parquet snapshot: computes each buyer's exact TreeSHAP reasons on the worker and
  stages the partition as an uncompressed ``.npz`` in ``.SNAPSHOT.<version>.parts/`` next
  to the snapshot (temporary name, renamed when complete); the client appends the parts in
  shard order through the same :class:`serving.publish.snapshot.FileWriter` as in-process, one at a
  time, so the file holds the same rows, values, reasons and row groups;
* for Redis: writes its buyers straight into the new, uncommitted version's keys
  (:class:`serving.publish.snapshot.RedisRows`, pipelined transactions) and returns the count; the
  client holds no rows.

The model reaches the workers once, as one task (``publish-booster-<token>``) that loads
its booster from the model text held in the graph; every partition depends on it and Dask
copies the result to each worker that needs it. A ``RatingModel`` cannot simply be
scattered: it pickles without its booster (that travels as an MLflow artifact), and
scattered data is lost for good when every worker holding it dies, where a task is
recomputed.

The caller (:func:`serving.publish.run.publish`) commits (renames the file, or switches Redis
``meta``) only after every partition succeeded, and aborts the writer on any failure.
Memory per worker is bounded by a shard; the client holds one partition (file) or none
(Redis).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rating.reasons import reason_points
from serving.publish.snapshot import FileWriter, RedisRows, RedisWriter

TASK_NAME = "publish-part"
"""Key prefix of the per-shard publishing tasks."""


@dataclass(frozen=True)
class Booster:
    """What exact reasons read of a model (``model.booster``), as shipped to the workers.

    Attributes:
        booster: The model's ``lightgbm.Booster`` (it pickles as its model text).
        catalogue: The model's reason catalogue (``rating.reasons.ReasonCatalogue``), None without one:
            reasons are ranked in its score points, as ``RatingModel.reason_points`` ranks them.
    """

    booster: Any
    catalogue: Any = None

    @classmethod
    def from_text(cls, text: str, catalogue: Any = None) -> Booster:
        """Task: the booster loaded from its model text (``Booster.model_to_string``)."""
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=text), catalogue)

    def reason_points(self, contributions: np.ndarray) -> np.ndarray:
        """As ``RatingModel.reason_points`` (``rating.reasons.reason_points`` with the catalogue)."""
        return reason_points(self.catalogue, contributions)


def publish_parts(
    client: Any,
    data_dir: str | Path,
    as_of: pd.Timestamp,
    writer: FileWriter | RedisWriter,
    names: list[str],
    model: Any = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Write every shard's snapshot rows through ``writer`` from the cluster; do not commit.

    Args:
        client: A ``distributed.Client``; its workers must see ``data_dir`` and the
            snapshot's folder (file) or reach the Redis server (Redis).
        data_dir: Raw export (buyer-partitioned parts).
        as_of: The instant (UTC).
        writer: The open, uncommitted writer (``serving.publish.snapshot.open_writer``).
        names: Signals to keep, in order.
        model: The model whose exact reasons a file snapshot stores (a ``RatingModel``;
            None: none).
        log: Optional callable taking a progress line (``part k/P: n buyers in s``).

    Raises:
        features.validate.ContractError: If a shard breaks the contract.
        features.cluster.WorkerLost: If a task was lost with its workers too often.
        serving.publish.snapshot.SnapshotError: If a partition could not be written to Redis.
    """
    from features import build_cluster, cluster

    staging = None
    if isinstance(writer, RedisWriter):
        sink: RedisRows | Path = writer.rows
    else:
        staging = writer.path.with_name(f".{writer.path.name}.{writer.version}.parts")
        staging.mkdir()
        sink = staging
    try:
        booster = None
        if model is not None:
            text = model.booster.model_to_string(num_iteration=-1)
            booster = client.submit(
                Booster.from_text,
                text,
                getattr(model, "catalogue", None),
                key=f"publish-booster-{uuid.uuid4().hex[:12]}",
            )
        parts, futures = build_cluster.map_parts(
            client, data_dir, [as_of], _publish_part, (names, sink, booster), name=TASK_NAME
        )
        del booster  # the partitions hold it
        results = cluster.results(client, futures)
        with contextlib.closing(results):
            for i, (written, rows, seconds) in enumerate(results):
                if staging is None:
                    writer.count(written)
                else:
                    writer.append(*_read_part(written))
                    written.unlink()
                if log is not None:
                    log(f"part {i + 1}/{len(parts)}: {rows} buyers in {seconds:.1f}s")
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _publish_part(
    frame: pd.DataFrame, part: int, names: list[str], sink: RedisRows | Path, model: Booster | None
) -> int | Path:
    """Task: shard ``part``'s snapshot rows written to Redis (returns the count) or staged in
    the folder ``sink`` with their exact reasons (returns the part's path)."""
    from serving.publish.batch_reasons import snapshot_rows

    buyer_ids, matrix, reasons = snapshot_rows(frame, names, model)
    if isinstance(sink, RedisRows):
        with contextlib.closing(sink.connect()) as redis:
            return sink.write(redis, buyer_ids, matrix)
    arrays = {"buyer_id": buyer_ids, "matrix": matrix}
    if reasons is not None:
        arrays |= {"reason_index": reasons[0], "reason_value": reasons[1]}
    path = sink / f"part-{part:05d}.npz"
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as out:
        np.savez(out, **arrays)
    tmp.rename(path)
    return path


def _read_part(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """A staged part as ``FileWriter.append``'s arguments ``(buyer_ids, matrix, reasons)``."""
    with np.load(path) as part:
        reasons = (part["reason_index"], part["reason_value"]) if "reason_index" in part else None
        return part["buyer_id"], part["matrix"], reasons
