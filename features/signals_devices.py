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
    out = uses.assign(ts=np.maximum(when, other))
    out = out[["buyer_id", "device_id", "ts", "first_used_at"]].sort_values(["buyer_id", "ts"], kind="stable")
    return out.reset_index(drop=True)
