"""Derived events: devices shared with other buyers, from the whole export.

A device is *shared* for buyer ``b`` from the moment both ``b`` and some other buyer
have used it: ``max(first use by b, earliest first use by any other buyer)``. Each
(buyer, device) pair that ever becomes shared is one row of the derived table
:data:`SHARED_DEVICES`, timed at that moment, so signals over it go through the same
point-in-time rule as every raw table (the moment only depends on uses before it).

Sharing needs other buyers' events, which a buyer shard does not hold. Build the
first-use index per shard (:func:`device_first_use`, small: one row per buyer and
device), concatenate the shards' indexes, derive :func:`shared_devices` once, and pass
it to the builder as ``tables["shared_devices"]``; then shard builds equal the whole
build. Without it, the builder derives it from the tables it is given (only the
buyers in them).

On a cluster the same index is a shuffle, never collected in one place: each shard's
first uses are split by device (:func:`split_by_device`), each device bucket derives its
shared pairs and splits them by the buyer's shard (:func:`split_by_part`), and each shard
gathers its pieces from every bucket (:func:`gather_shared`). A device's uses all meet in
one bucket, so the result equals :func:`shared_devices` of the whole index, shard by shard.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract

SHARED_DEVICES = contract.Table(
    "shared_devices",
    "(buyer, device) pair shared with at least one other buyer",
    (
        contract.Column("buyer_id", "int", description="Buyer id."),
        contract.Column("device_id", "int", description="Device id."),
        contract.Column("ts", "timestamp", description="When another buyer had also used the device."),
        contract.Column("first_used_at", "timestamp", description="The buyer's first use of the device."),
    ),
    event_time="ts",
    description="Derived from account_events and orders device_id columns.",
)

_USES = (("account_events", "ts"), ("orders", "created_at"))
ORDER = ["buyer_id", "ts", "device_id"]
"""Row order of the derived table (a (buyer, device) pair is one row, so this is total)."""
PART = "part"


def device_first_use(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each buyer's first use of each device, from account events and orders.

    Args:
        tables: Raw tables; ``account_events`` and ``orders`` are read if present.

    Returns:
        Columns ``buyer_id``, ``device_id`` (int64), ``first_used_at`` (UTC), one row
        per pair.
    """
    parts = []
    for name, time in _USES:
        frame = tables.get(name)
        if frame is None or frame.empty:
            continue
        used = _drop_repeats(frame["buyer_id"], frame["device_id"], frame[time])
        parts.append(used)
    if not parts:
        return pd.DataFrame(
            {
                "buyer_id": pd.Series([], dtype="int64"),
                "device_id": pd.Series([], dtype="int64"),
                "first_used_at": pd.Series([], dtype="datetime64[us, UTC]"),
            }
        )
    uses = pd.concat(parts, ignore_index=True).astype({"buyer_id": "int64", "device_id": "int64"})
    return uses.groupby(["buyer_id", "device_id"], as_index=False, sort=True)["first_used_at"].min()


def _drop_repeats(buyer: pd.Series, device: pd.Series, when: pd.Series) -> pd.DataFrame:
    """Rows with a device, less those repeating the previous row's (buyer, device) no earlier.

    Exact for the minimum per pair, and cheap: exports list a buyer's events together,
    so most rows repeat the previous one.
    """
    b = buyer.to_numpy(dtype=np.int64)
    has = device.notna().to_numpy()
    d = device.to_numpy(dtype=np.int64, na_value=-1) if device.dtype != np.int64 else device.to_numpy()
    t = when.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    keep = has.copy()
    rows = np.flatnonzero(has)
    repeat = (b[rows[1:]] == b[rows[:-1]]) & (d[rows[1:]] == d[rows[:-1]]) & (t[rows[1:]] >= t[rows[:-1]])
    keep[rows[1:][repeat]] = False
    return pd.DataFrame(
        {
            "buyer_id": b[keep],
            "device_id": d[keep],
            "first_used_at": pd.Series(t[keep]).dt.tz_localize("UTC").astype("datetime64[us, UTC]"),
        }
    )


def shared_devices(first_use: pd.DataFrame) -> pd.DataFrame:
    """The derived :data:`SHARED_DEVICES` rows from a (whole-export) first-use index.

    Args:
        first_use: Output of :func:`device_first_use`, possibly concatenated over
            shards (duplicate pairs are reduced to their earliest use).

    Returns:
        Columns ``buyer_id``, ``device_id``, ``ts``, ``first_used_at``, sorted by
        buyer and ``ts``.
    """
    uses = first_use.groupby(["buyer_id", "device_id"], as_index=False, sort=False)["first_used_at"].min()
    users = uses.groupby("device_id")["buyer_id"].transform("size").to_numpy()
    uses = uses[users > 1].sort_values(["device_id", "first_used_at", "buyer_id"], kind="stable")
    device = uses["device_id"].to_numpy()
    when = uses["first_used_at"].to_numpy()
    head = np.r_[True, device[1:] != device[:-1]]
    first_idx = np.maximum.accumulate(np.where(head, np.arange(len(device)), 0))
    earliest = when[first_idx]
    second = when[np.minimum(first_idx + 1, len(device) - 1)]
    other = np.where(np.arange(len(device)) == first_idx, second, earliest)
    out = uses.assign(
        ts=pd.Series(np.maximum(when, other), index=uses.index, dtype=uses["first_used_at"].dtype)
    )
    out = out[["buyer_id", "device_id", "ts", "first_used_at"]].sort_values(ORDER, kind="stable")
    return out.reset_index(drop=True)


def split_by_device(first_use: pd.DataFrame, buckets: int) -> list[pd.DataFrame]:
    """Shuffle map step: a shard's first-use index cut into ``buckets`` by ``device_id``.

    Args:
        first_use: :func:`device_first_use` of one shard, with a ``part`` column (the shard).
        buckets: Number of device buckets (>= 1).

    Returns:
        ``buckets`` frames; bucket ``j`` holds the devices with ``device_id % buckets == j``.
    """
    bucket = np.mod(first_use["device_id"].to_numpy(dtype=np.int64), buckets)
    return [first_use[bucket == j] for j in range(buckets)]


def split_by_part(first_use: pd.DataFrame, parts: list[int]) -> list[pd.DataFrame]:
    """Shuffle reduce step: one device bucket's shared pairs, cut by the buyer's shard.

    Args:
        first_use: Every shard's :func:`split_by_device` piece of one bucket (with ``part``).
        parts: The shard numbers, in output order.

    Returns:
        One :func:`shared_devices` frame per entry of ``parts``, holding that shard's buyers.
    """
    shared = shared_devices(first_use.drop(columns=PART))
    part_of = first_use.drop_duplicates("buyer_id").set_index("buyer_id")[PART]
    owner = part_of.reindex(shared["buyer_id"]).to_numpy()
    return [shared[owner == k] for k in parts]


def gather_shared(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    """A shard's rows of :func:`shared_devices` from its piece of every device bucket.

    Args:
        pieces: :func:`split_by_part` outputs for one shard, one per bucket.

    Returns:
        The rows of the whole-export :func:`shared_devices` for the shard's buyers, in the
        same order.
    """
    return pd.concat(pieces, ignore_index=True).sort_values(ORDER, kind="stable").reset_index(drop=True)
