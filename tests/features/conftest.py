"""A small valid raw-table export, in memory or on disk, for feature tests.

Fixtures:
    ``contract_frames``: table name -> a fresh valid frame (6 buyers, a few rows per table).
    ``make_export``: ``make_export(tmp_path, layout="parquet", **overrides) -> Path`` writes
        the export; ``overrides`` map a table name to a frame, to a function of the valid
        frame, or to ``None`` (table left out).

Buyers 1-3 sit in part 0 and buyers 4-6 in part 1 of a ``layout="parts"`` export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract

EXPORTED_AT = pd.Timestamp("2024-12-31T00:00:00Z")
SHARDS = (
    {"part": 0, "buyer_id_min": 1, "buyer_id_max": 3},
    {"part": 1, "buyer_id_min": 4, "buyer_id_max": 6},
)
BUYERS = range(1, 7)


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    """Rows -> frame with exactly the contract dtypes (via the arrow schema)."""
    schema = contract.arrow_schema(name)
    return (
        pa.Table.from_pylist(rows, schema=schema)
        .to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)
        .pipe(_tighten, contract.table(name))
    )


def _tighten(frame: pd.DataFrame, table: contract.Table) -> pd.DataFrame:
    for col in table.columns:
        if col.kind in ("int", "bool") and not col.nullable:
            frame[col.name] = frame[col.name].astype("int64" if col.kind == "int" else bool)
    return frame


def build_frames() -> dict[str, pd.DataFrame]:
    """A valid export of 6 buyers; every table non-empty, every nullable column has a null."""
    rows: dict[str, list[dict]] = {name: [] for name in contract.TABLE_NAMES}
    for b in BUYERS:
        reg = _t(f"2023-0{b}-01")
        rows["buyers"].append(
            {
                "buyer_id": b,
                "registered_at": reg,
                "city_tier": b % 5 + 1,
                "real_name_verified_at": reg + pd.Timedelta(days=1) if b % 2 else None,
                "phone_verified_at": reg + pd.Timedelta(hours=1),
            }
        )
        rows["account_events"].append(
            {
                "buyer_id": b,
                "ts": reg + pd.Timedelta(days=3),
                "event_type": "login",
                "device_id": b if b % 3 else None,
            }
        )
        rows["credit_scores"].append({"buyer_id": b, "ts": _t("2024-03-01"), "score": 550 + 40 * b})
        rows["credit_bills"].append(
            {
                "bill_id": 5000 + b,
                "buyer_id": b,
                "due_at": _t("2025-01-10") if b == 6 else _t("2024-06-10"),
                "amount_due": 100.0 * b,
                "paid_at": None if b in (3, 6) else _t("2024-06-05"),
                "amount_paid": None if b in (3, 6) else 100.0 * b,
            }
        )
        for k in (1, 2, 3):
            order_id, created = 100 * b + k, _t(f"2024-0{k}-1{b}T10:00")
            rows["orders"].append(
                {
                    "order_id": order_id,
                    "buyer_id": b,
                    "seller_id": 900 + k,
                    "created_at": created,
                    "category": contract.CATEGORIES[(b + k) % len(contract.CATEGORIES)],
                    "amount": 20.0 * k + b,
                    "channel": contract.CHANNELS[k % len(contract.CHANNELS)],
                    "device_id": None if k == 3 else b,
                    "payment_method": contract.PAYMENT_METHODS[b % len(contract.PAYMENT_METHODS)],
                    "paid_at": created + pd.Timedelta(minutes=5),
                    "shipped_at": created + pd.Timedelta(days=1),
                    "delivered_at": created + pd.Timedelta(days=3),
                    "confirmed_at": None if k == 2 else created + pd.Timedelta(days=4),
                    "canceled_at": None,
                }
            )
        first = _t(f"2024-01-1{b}T10:00")
        if b in (1, 4):
            rows["presales"].append(
                {
                    "order_id": 100 * b + 1,
                    "buyer_id": b,
                    "deposit_amount": 2.0,
                    "deposit_paid_at": first,
                    "balance_amount": 18.0 + b,
                    "balance_due_at": _t("2025-01-20") if b == 4 else _t("2024-02-01"),
                    "balance_paid_at": None if b == 4 else _t("2024-01-30"),
                    "shipped_before_balance": b == 1,
                }
            )
        if b in (1, 2, 5):
            asked = _t(f"2024-02-1{b}T12:00")
            rows["refunds"].append(
                {
                    "refund_id": 7000 + b,
                    "order_id": 100 * b + 2,
                    "buyer_id": b,
                    "requested_at": asked,
                    "amount": 40.0,
                    "reason": "damaged",
                    "kind": "return_and_refund",
                    "evidence_photos": b,
                    "fast_refund": b == 1,
                    "decided_at": asked + pd.Timedelta(hours=2),
                    "outcome": None if b == 5 else "approved",
                    "refunded_at": asked + pd.Timedelta(hours=3) if b == 1 else None,
                    "return_shipped_at": None,
                    "return_received_at": None,
                    "abuse_confirmed_at": None,
                }
            )
        rows["reviews"].append(
            {
                "review_id": 8000 + b,
                "order_id": 100 * b + 3,
                "buyer_id": b,
                "created_at": _t(f"2024-03-2{b}"),
                "rating": b % 5 + 1,
                "text_length": 10 * b,
                "has_photos": b % 2 == 0,
                "reported_by_seller_at": None,
                "removed_as_malicious_at": _t("2024-04-01") if b == 2 else None,
            }
        )
        if b in (2, 6):
            rows["disputes"].append(
                {
                    "dispute_id": 9000 + b,
                    "order_id": 100 * b + 2,
                    "buyer_id": b,
                    "opened_at": _t(f"2024-02-2{b}"),
                    "closed_at": None if b == 6 else _t("2024-03-01"),
                    "reason": "not_received",
                    "ruling": None if b == 6 else "seller",
                }
            )
            rows["violations"].append(
                {
                    "violation_id": 9500 + b,
                    "buyer_id": b,
                    "ts": _t("2024-05-01"),
                    "kind": "scalping",
                    "severity": 2,
                }
            )
        rows["cs_contacts"].append(
            {
                "contact_id": 6000 + b,
                "buyer_id": b,
                "ts": _t(f"2024-04-0{b}"),
                "topic": "delivery",
                "abusive": False,
            }
        )
    return {name: _frame(name, table_rows) for name, table_rows in rows.items()}


def _column_to_arrow(series: pd.Series, kind: pa.DataType | None) -> pa.Array:
    # pyarrow reads tz-aware pandas columns through the deprecated Series.values (a
    # Pandas4Warning under pandas 3.1), so hand it naive UTC and put the zone back.
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        naive = pa.array(series.dt.tz_convert(None))
        return naive.cast(kind or pa.timestamp(naive.type.unit, tz="UTC"))
    return pa.array(series, type=kind, from_pandas=True)


def _to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """The contract schema when the frame fits it, else whatever arrow infers (for corrupt data)."""
    schema = contract.arrow_schema(name)
    try:
        columns = [_column_to_arrow(frame[field.name], field.type) for field in schema]
        return pa.table(columns, names=schema.names)
    except (pa.ArrowException, KeyError, ValueError, TypeError):
        return pa.table({c: _column_to_arrow(frame[c], None) for c in frame.columns})


def write_export(
    out: Path,
    frames: dict[str, pd.DataFrame],
    layout: str = "parquet",
    exported_at: pd.Timestamp | None = EXPORTED_AT,
) -> Path:
    """Write ``frames`` as ``layout`` (``parquet``, ``csv`` or ``parts``) plus a manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        if layout == "csv":
            frame.to_csv(out / f"{name}.csv", index=False)
        elif layout == "parquet":
            pq.write_table(_to_arrow(name, frame), out / f"{name}.parquet")
        else:
            (out / name).mkdir(exist_ok=True)
            for shard in SHARDS:
                inside = frame["buyer_id"].between(shard["buyer_id_min"], shard["buyer_id_max"])
                part = frame[inside.to_numpy()]
                pq.write_table(_to_arrow(name, part), out / name / f"part-{shard['part']:05d}.parquet")
    manifest: dict = {"shards": list(SHARDS)} if layout == "parts" else {}
    if exported_at is not None:
        manifest["exported_at"] = exported_at.isoformat().replace("+00:00", "Z")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture
def contract_frames() -> dict[str, pd.DataFrame]:
    """A fresh valid set of typed frames (see ``build_frames``)."""
    return build_frames()


@pytest.fixture
def make_export() -> Callable[..., Path]:
    """Factory ``make_export(tmp_path, layout="parquet", exported_at=..., **overrides) -> Path``."""

    def make(
        tmp_path: Path, layout: str = "parquet", exported_at: pd.Timestamp | None = EXPORTED_AT, **overrides
    ) -> Path:
        frames = build_frames()
        for name, override in overrides.items():
            if override is None:
                frames.pop(name)
            else:
                frames[name] = override(frames[name].copy()) if callable(override) else override
        return write_export(tmp_path / "export", frames, layout, exported_at)

    return make
