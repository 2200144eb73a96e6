"""Every row of an export honours the data contract and the export's own promises."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import contract

EVENT_TABLES = [t.name for t in contract.TABLES if t.event_time and t.name != "buyers"]


def test_manifest_describes_the_run(manifest: dict) -> None:
    assert manifest["exported_at"] == "2024-01-01T00:00:00Z"
    assert (manifest["start"], manifest["months"], manifest["buyers"], manifest["seed"]) == (
        "2023-01-01",
        12,
        1500,
        11,
    )
    assert [(s["part"], s["buyer_id_min"], s["buyer_id_max"]) for s in manifest["shards"]] == [
        (0, 1, 500),
        (1, 501, 1000),
        (2, 1001, 1500),
    ]


@pytest.mark.parametrize("name", contract.TABLE_NAMES)
def test_every_part_has_exactly_the_contract_schema(export_dir: Path, name: str) -> None:
    parts = sorted((export_dir / name).glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for part in parts:
        assert pq.read_schema(part).remove_metadata().equals(contract.arrow_schema(name)), part


@pytest.mark.parametrize("name", contract.TABLE_NAMES)
def test_values_respect_nullability_enums_and_bounds(tables: dict, name: str) -> None:
    frame = tables[name]
    assert len(frame) > 0, f"{name} is empty"
    for col in contract.table(name).columns:
        values = frame[col.name]
        if not col.nullable:
            assert values.notna().all(), f"{name}.{col.name} has nulls"
        present = values.dropna()
        if col.allowed:
            assert set(present) <= set(col.allowed), f"{name}.{col.name}: {set(present) - set(col.allowed)}"
        if col.min_value is not None:
            assert (present >= col.min_value).all(), f"{name}.{col.name} below {col.min_value}"
        if col.max_value is not None:
            assert (present <= col.max_value).all(), f"{name}.{col.name} above {col.max_value}"


@pytest.mark.parametrize("name", [t.name for t in contract.TABLES if t.primary_key])
def test_primary_keys_are_unique(tables: dict, name: str) -> None:
    key = list(contract.table(name).primary_key)
    assert not tables[name].duplicated(key).any()


@pytest.mark.parametrize("name", contract.TABLE_NAMES)
def test_foreign_keys_resolve(tables: dict, name: str) -> None:
    for col in contract.table(name).columns:
        if col.references:
            ref_table, ref_col = col.references.split(".")
            assert tables[name][col.name].isin(tables[ref_table][ref_col]).all(), f"{name}.{col.name}"


@pytest.mark.parametrize("name", ["presales", "refunds", "reviews", "disputes"])
def test_rows_about_an_order_belong_to_the_order_buyer(tables: dict, name: str) -> None:
    owner = tables["orders"].set_index("order_id")["buyer_id"]
    rows = tables[name]
    assert (owner.loc[rows["order_id"]].to_numpy() == rows["buyer_id"].to_numpy()).all()


@pytest.mark.parametrize("name", EVENT_TABLES)
def test_no_event_before_the_buyer_registered(tables: dict, name: str) -> None:
    registered = tables["buyers"].set_index("buyer_id")["registered_at"]
    rows = tables[name]
    for col in contract.table(name).columns:
        if col.kind == "timestamp":
            times = rows[col.name]
            reg = registered.loc[rows["buyer_id"]].to_numpy()
            assert (times.isna() | (times >= reg)).all(), f"{name}.{col.name}"


@pytest.mark.parametrize("name", contract.TABLE_NAMES)
def test_only_scheduled_instants_follow_the_export(tables: dict, manifest: dict, name: str) -> None:
    exported_at = pd.Timestamp(manifest["exported_at"])
    for col in contract.table(name).columns:
        if col.kind == "timestamp" and not col.scheduled:
            assert (tables[name][col.name].dropna() <= exported_at).all(), f"{name}.{col.name}"


def test_scheduled_due_dates_may_follow_the_export(tables: dict, manifest: dict) -> None:
    exported_at = pd.Timestamp(manifest["exported_at"])
    assert (tables["credit_bills"]["due_at"] > exported_at).any()  # December's bills are due in January


def test_outcomes_are_null_while_not_yet_known(tables: dict) -> None:
    refunds, disputes, bills = tables["refunds"], tables["disputes"], tables["credit_bills"]
    assert (refunds["outcome"].isna() == refunds["decided_at"].isna()).all()
    assert (disputes["ruling"].isna() == disputes["closed_at"].isna()).all()
    assert (bills["amount_paid"].isna() == bills["paid_at"].isna()).all()
    assert refunds["outcome"].isna().any() and disputes["ruling"].isna().any()


@pytest.mark.parametrize("name", contract.TABLE_NAMES)
def test_each_buyer_lives_in_one_part_number(tables: dict, manifest: dict, name: str) -> None:
    rows = tables[name]
    for shard in manifest["shards"]:
        in_part = rows[rows["part"] == shard["part"]]["buyer_id"]
        assert in_part.between(shard["buyer_id_min"], shard["buyer_id_max"]).all(), (name, shard)
    assert rows.groupby("buyer_id")["part"].nunique().max() == 1


def test_order_lifecycle_is_ordered_in_time(tables: dict) -> None:
    o = tables["orders"]
    for earlier, later in [
        ("created_at", "paid_at"),
        ("created_at", "shipped_at"),
        ("shipped_at", "delivered_at"),
        ("delivered_at", "confirmed_at"),
        ("created_at", "canceled_at"),
    ]:
        both = o[earlier].notna() & o[later].notna()
        assert (o.loc[both, later] >= o.loc[both, earlier]).all(), (earlier, later)
    assert (o["canceled_at"].isna() | o["delivered_at"].isna()).all()


def test_follow_up_facts_come_after_what_they_follow(tables: dict) -> None:
    orders = tables["orders"].set_index("order_id")
    r = tables["refunds"]
    assert (r["requested_at"] >= orders.loc[r["order_id"], "created_at"].to_numpy()).all()
    for earlier, later in [("requested_at", "decided_at"), ("return_shipped_at", "return_received_at"),
                           ("requested_at", "abuse_confirmed_at")]:  # fmt: skip
        both = r[earlier].notna() & r[later].notna()
        assert (r.loc[both, later] >= r.loc[both, earlier]).all(), (earlier, later)
    d = tables["disputes"]
    assert (d["closed_at"].isna() | (d["closed_at"] >= d["opened_at"])).all()
    v = tables["reviews"]
    assert (v["reported_by_seller_at"].isna() | (v["reported_by_seller_at"] >= v["created_at"])).all()
    assert (v["removed_as_malicious_at"].isna() | v["reported_by_seller_at"].notna()).all()


def test_presales_are_orders_split_into_deposit_and_balance(tables: dict) -> None:
    p = tables["presales"].merge(tables["orders"], on="order_id")
    assert ((p["deposit_amount"] + p["balance_amount"] - p["amount"]).abs() < 0.011).all()
    share = p["deposit_amount"] / p["amount"]
    assert share.between(0.099, 0.201).all()
    assert (p["paid_at"].isna() == p["balance_paid_at"].isna()).all()
    assert p["balance_due_at"].dt.month.isin([6, 11]).all()
    assert (p["balance_due_at"] > p["deposit_paid_at"]).all()
    trusted = p[p["shipped_before_balance"] & p["shipped_at"].notna() & p["balance_paid_at"].notna()]
    assert (trusted["shipped_at"] < trusted["balance_paid_at"]).mean() > 0.9


def test_return_and_refund_only_kinds_behave_differently(tables: dict, export_dir: Path) -> None:
    r = tables["refunds"].merge(pd.read_parquet(export_dir / "truth" / "refund_opportunities.parquet"),
                                on="refund_id")  # fmt: skip
    assert r.loc[r["kind"] == "refund_only", "return_shipped_at"].isna().all()
    assert not r.loc[r["legacy"], "kind"].eq("refund_only").any()  # only exploration pays them fast
