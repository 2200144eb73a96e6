"""The online snapshot: the latest signals per buyer, as a parquet file or in Redis.

File: ``buyer_id`` (int64) plus one float32 column per signal, with the key ``buyer_trust``
in the parquet schema metadata holding ``{"version", "as_of", "published_at", "signal_names"}``. The whole
file is loaded into memory (buyer_id -> row of a float32 matrix). Written to a temporary
file and renamed, so a reader never sees half a snapshot.

Redis (for many workers on many hosts): ``{prefix}meta`` holds the same JSON plus
``n_buyers``; ``{prefix}{version}:{buyer_id}`` holds the buyer's row as packed float32
bytes (the key names are :func:`meta_key`, :func:`rows_prefix` and :func:`abort_key`, and
nothing else spells them). A publish writes a new version's keys first (:class:`RedisRows`,
from one process or from every partition of a cluster publish) and switches ``meta`` last
(:class:`RedisWriter`); the previous version's keys expire after an hour, so workers still
on it keep answering. A publish that fails is aborted: its version is fenced off
(``{prefix}aborted:{version}``, an hour) and its keys deleted, so no row lands afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"buyer_trust"
OLD_VERSION_TTL_S = 3600
ROW_DTYPE = np.float32  # a Redis row: the buyer's signals as packed float32 bytes
REASONS_K = 10  # exact reasons stored per buyer (the most a policy may return)


class SnapshotError(RuntimeError):
    """The snapshot cannot be read (missing, malformed or its store unreachable)."""


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot holds.

    Attributes:
        version: Unique id of this publish.
        as_of: Time the signals are computed as of (ISO 8601 UTC).
        signal_names: Column order of each buyer's row.
        n_buyers: Number of buyers.
        reasons_model: Identity of the model whose exact TreeSHAP reasons the file holds
            (``serving.live.model_identity``), or None when it holds none.
        published_at: When the batch job wrote it (ISO 8601 UTC); None for snapshots
            written before this was recorded.
    """

    version: str
    as_of: str
    signal_names: tuple[str, ...]
    n_buyers: int
    reasons_model: str | None = None
    published_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "as_of": self.as_of,
                "published_at": self.published_at,
                "signal_names": list(self.signal_names),
                "n_buyers": self.n_buyers,
                "reasons_model": self.reasons_model,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> SnapshotMeta:
        d = json.loads(raw)
        names = tuple(d["signal_names"])
        return cls(
            d["version"],
            d["as_of"],
            names,
            int(d.get("n_buyers", 0)),
            d.get("reasons_model"),
            d.get("published_at"),
        )

    def published_epoch(self) -> float:
        """When the snapshot was published, as a Unix time (its ``as_of`` if that was not recorded).

        Raises:
            ValueError: Neither time is an ISO 8601 timestamp.
        """
        moment = datetime.fromisoformat(self.published_at or self.as_of)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


def now_iso() -> str:
    """The current UTC time, ISO 8601 (a snapshot's ``published_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class FileSnapshot:
    """A parquet snapshot held in memory.

    Args:
        meta: The snapshot's metadata.
        buyer_ids: (n,) int64.
        matrix: (n, n_signals) float32, rows aligned with ``buyer_ids``.
        mtime: Modification time of the file it was read from (for change detection).
        reasons: Exact reasons ``(index (n, k) int16, value (n, k) float32)`` computed by
            ``meta.reasons_model`` at publish time (index -1 pads), or None.
    """

    kind = "file"

    def __init__(
        self,
        meta: SnapshotMeta,
        buyer_ids: np.ndarray,
        matrix: np.ndarray,
        mtime: float = 0.0,
        reasons: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.meta = meta
        self.buyer_ids = buyer_ids
        self.matrix = matrix
        self.mtime = mtime
        self.reasons = reasons
        self.index = {int(b): i for i, b in enumerate(buyer_ids.tolist())}

    @classmethod
    def load(cls, path: str | Path) -> FileSnapshot:
        """Read the snapshot at ``path``; raises ``SnapshotError`` if absent or malformed."""
        path = Path(path)
        try:
            mtime = path.stat().st_mtime
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot {path}: {exc}") from exc
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None or "buyer_id" not in table.column_names:
            raise SnapshotError(f"snapshot {path}: not a buyer-trust snapshot (no metadata or buyer_id)")
        d = json.loads(raw)
        names = tuple(d["signal_names"])
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise SnapshotError(
                f"snapshot {path}: metadata lists signals absent from the file, e.g. {missing[:3]}"
            )
        ids = table.column("buyer_id").to_numpy().astype(np.int64)
        matrix = np.empty((table.num_rows, len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            matrix[:, j] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float32)
        meta = SnapshotMeta(
            d["version"], d["as_of"], names, table.num_rows, d.get("reasons_model"), d.get("published_at")
        )
        reasons = None
        if meta.reasons_model is not None:
            k = sum(1 for c in table.column_names if c.startswith("_reason_index_"))
            index = np.stack([table.column(f"_reason_index_{j}").to_numpy() for j in range(k)], axis=1)
            value = np.stack([table.column(f"_reason_value_{j}").to_numpy() for j in range(k)], axis=1)
            reasons = (index.astype(np.int16), value.astype(np.float32))
        return cls(meta, ids, matrix, mtime, reasons)

    def row(self, buyer_id: int) -> np.ndarray | None:
        """The buyer's signals (float32, snapshot order), or None for an unknown buyer."""
        pos = self.index.get(buyer_id)
        return None if pos is None else self.matrix[pos]

    def changed(self, location: str) -> bool:
        """Whether the file at ``location`` differs from the one loaded (by mtime)."""
        try:
            return os.stat(location).st_mtime != self.mtime
        except OSError:
            return False


class RedisSnapshot:
    """A snapshot read from Redis one buyer at a time.

    Args:
        client: A ``redis.Redis`` client.
        prefix: Key prefix.
        meta: The metadata of the version to read.
    """

    kind = "redis"

    def __init__(self, client: Any, prefix: str, meta: SnapshotMeta) -> None:
        self.client = client
        self.prefix = prefix
        self.meta = meta
        self.row_prefix = rows_prefix(prefix, meta.version).encode()
        self.width = len(meta.signal_names)

    @classmethod
    def connect(cls, url: str, prefix: str) -> RedisSnapshot:
        """Connect and read the current metadata; raises ``SnapshotError`` if unreachable or empty."""
        import redis

        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            raw = client.get(meta_key(prefix))
        except redis.RedisError as exc:
            raise SnapshotError(f"snapshot {url}: {exc}") from exc
        if raw is None:
            raise SnapshotError(f"snapshot {url}: no {meta_key(prefix)} key (nothing published yet)")
        return cls(client, prefix, SnapshotMeta.from_json(raw))

    def row(self, buyer_id: int) -> np.ndarray | None:
        """The buyer's signals, or None for an unknown buyer; raises ``SnapshotError`` if Redis fails."""
        import redis

        try:
            raw = self.client.get(self.row_prefix + str(buyer_id).encode())
        except redis.RedisError as exc:
            raise SnapshotError(f"redis: {exc}") from exc
        if raw is None:
            return None
        row = np.frombuffer(raw, dtype=ROW_DTYPE)
        if row.size != self.width:
            raise SnapshotError(f"redis: buyer {buyer_id} row has {row.size} values, expected {self.width}")
        return row

    def changed(self, location: str) -> bool:
        """Whether a newer version has been published (compares ``meta`` versions)."""
        try:
            raw = self.client.get(meta_key(self.prefix))
        except Exception:  # noqa: BLE001 - an unreachable store is not a change
            return False
        return raw is not None and SnapshotMeta.from_json(raw).version != self.meta.version


def load_snapshot(location: str, prefix: str) -> FileSnapshot | RedisSnapshot:
    """Open the snapshot at ``location`` (a parquet path or a ``redis://`` URL)."""
    if is_redis(location):
        return RedisSnapshot.connect(location, prefix)
    return FileSnapshot.load(location)


def new_version() -> str:
    """A unique snapshot version id."""
    return uuid.uuid4().hex[:16]


class FileWriter:
    """Write a parquet snapshot shard by shard (one row group each); ``commit`` renames it into place.

    Args:
        path: Destination file.
        signal_names: Column order.
        as_of: Signals' as-of time (ISO 8601).
        reasons_model: When given, every shard also carries exact reasons computed by this
            model (``_reason_index_j`` int16 and ``_reason_value_j`` float32, j < ``REASONS_K``).
        published_at: Publish time recorded in the file (ISO 8601 UTC; default: now).
    """

    def __init__(
        self,
        path: str | Path,
        signal_names: list[str],
        as_of: str,
        reasons_model: str | None = None,
        published_at: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.names = list(signal_names)
        self.version = new_version()
        self.as_of = as_of
        self.published_at = published_at or now_iso()
        self.reasons_model = reasons_model
        self.n = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{self.version}.tmp")
        fields = [pa.field("buyer_id", pa.int64())] + [pa.field(n, pa.float32()) for n in self.names]
        if reasons_model is not None:
            fields += [pa.field(f"_reason_index_{j}", pa.int16()) for j in range(REASONS_K)]
            fields += [pa.field(f"_reason_value_{j}", pa.float32()) for j in range(REASONS_K)]
        header = (
            SnapshotMeta(self.version, as_of, tuple(self.names), 0, reasons_model, self.published_at)
            .to_json()
            .encode()
        )
        self.schema = pa.schema(fields, metadata={META_KEY: header})
        self.writer = pq.ParquetWriter(self.tmp, self.schema)

    def append(
        self, buyer_ids: np.ndarray, matrix: np.ndarray, reasons: tuple[np.ndarray, np.ndarray] | None = None
    ) -> None:
        """Add the rows of one shard (``matrix`` columns in ``signal_names`` order).

        Args:
            buyer_ids: (n,) buyer ids.
            matrix: (n, n_signals) signals.
            reasons: ``(index, value)``, each (n, ``REASONS_K``); required with ``reasons_model``.
        """
        columns = [pa.array(np.asarray(buyer_ids, dtype=np.int64))]
        columns += [pa.array(np.asarray(matrix[:, j], dtype=np.float32)) for j in range(len(self.names))]
        if self.reasons_model is not None:
            if reasons is None:
                raise ValueError("reasons: required when the writer stores exact reasons")
            index, value = reasons
            columns += [pa.array(np.asarray(index[:, j], dtype=np.int16)) for j in range(REASONS_K)]
            columns += [pa.array(np.asarray(value[:, j], dtype=np.float32)) for j in range(REASONS_K)]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.n += len(buyer_ids)

    def abort(self) -> None:
        """Discard the unfinished file: nothing is moved into place, the temporary file is removed."""
        self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def commit(self) -> SnapshotMeta:
        """Finish the file and move it into place atomically; returns the metadata."""
        self.writer.close()
        os.replace(self.tmp, self.path)
        return SnapshotMeta(
            self.version, self.as_of, tuple(self.names), self.n, self.reasons_model, self.published_at
        )


def meta_key(prefix: str) -> str:
    """The Redis key holding the live version's metadata (the pointer a commit switches)."""
    return f"{prefix}meta"


def rows_prefix(prefix: str, version: str) -> str:
    """What every buyer-row key of ``version`` starts with; the buyer id follows."""
    return f"{prefix}{version}:"


def abort_key(prefix: str, version: str) -> str:
    """The marker that fences an aborted version off: no row is written to it once set."""
    return f"{prefix}aborted:{version}"


@dataclass(frozen=True)
class RedisRows:
    """The buyer rows of one uncommitted Redis snapshot version.

    Picklable, so a cluster publish hands it to every partition's task, which writes its
    buyers from the worker; :class:`RedisWriter` writes through it in one process and commits.

    Attributes:
        url: ``redis://`` URL.
        prefix: Key prefix.
        version: The version the rows belong to.
        batch: Keys per round trip.
    """

    url: str
    prefix: str
    version: str
    batch: int = 2000

    def connect(self) -> Any:
        """A ``redis.Redis`` client for ``url``."""
        import redis

        return redis.Redis.from_url(self.url)

    def write(self, client: Any, buyer_ids: np.ndarray, matrix: np.ndarray) -> int:
        """Set each buyer's row, ``batch`` keys per transaction; returns the number written.

        Each batch is a MULTI/EXEC watching :func:`abort_key`, so once :meth:`abort` has
        fenced the version off no batch lands (a partition still running when its publish
        failed writes nothing more).

        Args:
            client: A ``redis.Redis`` client (:meth:`connect`).
            buyer_ids: (n,) buyer ids.
            matrix: (n, n_signals) signals, in the snapshot's column order.

        Raises:
            SnapshotError: If the version was aborted.
        """
        import redis

        matrix = np.ascontiguousarray(matrix, dtype=ROW_DTYPE)
        ids = np.asarray(buyer_ids, dtype=np.int64).tolist()
        head, fence = rows_prefix(self.prefix, self.version), abort_key(self.prefix, self.version)
        for start in range(0, len(ids), self.batch):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(fence)
                    if pipe.exists(fence):
                        raise redis.WatchError(fence)
                    pipe.multi()
                    for i in range(start, min(start + self.batch, len(ids))):
                        pipe.set(f"{head}{ids[i]}", matrix[i].tobytes())
                    pipe.execute()
                except redis.WatchError as exc:
                    raise SnapshotError(
                        f"redis: snapshot version {self.version} was aborted; its rows are not written"
                    ) from exc
        return len(ids)

    def abort(self, client: Any) -> None:
        """Fence the version off (for ``OLD_VERSION_TTL_S``), then delete every row written to it."""
        client.set(abort_key(self.prefix, self.version), b"1", ex=OLD_VERSION_TTL_S)
        keys = list(client.scan_iter(match=f"{rows_prefix(self.prefix, self.version)}*", count=5000))
        for start in range(0, len(keys), self.batch):
            client.delete(*keys[start : start + self.batch])


class RedisWriter:
    """Write a Redis snapshot shard by shard; ``commit`` switches readers to it.

    Rows go through :class:`RedisRows` (``rows``), from this process (:meth:`append`) or
    from a cluster's partitions (:meth:`count` records what they wrote).

    Args:
        url: ``redis://`` URL.
        prefix: Key prefix.
        signal_names: Column order.
        as_of: Signals' as-of time (ISO 8601).
        batch: Keys per pipeline round trip.
    """

    def __init__(self, url: str, prefix: str, signal_names: list[str], as_of: str, batch: int = 2000) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.names = list(signal_names)
        self.as_of = as_of
        self.rows = RedisRows(url, prefix, new_version(), batch)
        self.version = self.rows.version
        self.n = 0

    def append(self, buyer_ids: np.ndarray, matrix: np.ndarray, reasons=None) -> None:
        """Add the rows of one shard (``matrix`` columns in ``signal_names`` order; ``reasons`` unused:
        with Redis the service computes reasons per request)."""
        self.n += self.rows.write(self.client, buyer_ids, matrix)

    def count(self, n: int) -> None:
        """Record ``n`` rows written to ``rows`` by another process (a partition's task)."""
        self.n += n

    def abort(self) -> None:
        """Delete this uncommitted version's rows; ``meta`` (the live version) is not touched."""
        self.rows.abort(self.client)

    def commit(self) -> SnapshotMeta:
        """Point ``meta`` at this version and let the previous version's keys expire."""
        meta = SnapshotMeta(self.version, self.as_of, tuple(self.names), self.n, published_at=now_iso())
        old = self.client.get(meta_key(self.prefix))
        self.client.set(meta_key(self.prefix), meta.to_json())
        if old is not None:
            old_version = SnapshotMeta.from_json(old).version
            pipe = self.client.pipeline(transaction=False)
            for key in self.client.scan_iter(match=f"{rows_prefix(self.prefix, old_version)}*", count=5000):
                pipe.expire(key, OLD_VERSION_TTL_S)
            pipe.execute()
        return meta


def is_redis(location: str) -> bool:
    """Whether a snapshot location is a Redis URL rather than a file path."""
    return location.startswith(("redis://", "rediss://", "unix://"))


def open_writer(
    location: str, prefix: str, signal_names: list[str], as_of: str, reasons_model: str | None = None
) -> FileWriter | RedisWriter:
    """A writer for ``location`` (a parquet path or a ``redis://`` URL; Redis stores no exact reasons)."""
    if is_redis(location):
        return RedisWriter(location, prefix, signal_names, as_of)
    return FileWriter(location, signal_names, as_of, reasons_model)
