"""Legacy decisions are recorded exactly as the platform's rules made them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from simulator import realised
from simulator.aftersales import FAST_REFUND_MAX_AMOUNT
from simulator.payments import OLD_RULE_SCORE
from simulator.summary import read_tables


def _vip_at(events: pd.DataFrame, rows: pd.DataFrame, at: str) -> pd.Series:
    vip = events[events["event_type"].isin(["vip_join", "vip_leave"])].sort_values("ts")
    probe = rows[["buyer_id", at]].reset_index().sort_values(at)
    joined = pd.merge_asof(probe, vip, left_on=at, right_on="ts", by="buyer_id", allow_exact_matches=True)
    return joined.set_index("index")["event_type"].eq("vip_join").reindex(rows.index)


def _score_before(scores: pd.DataFrame, rows: pd.DataFrame, at: str) -> pd.Series:
    probe = rows[["buyer_id", at]].reset_index().sort_values(at)
    joined = pd.merge_asof(probe, scores.sort_values("ts"), left_on=at, right_on="ts", by="buyer_id",
                           allow_exact_matches=False)  # fmt: skip
    return joined.set_index("index")["score"].reindex(rows.index)


def test_ship_before_balance_is_exactly_the_old_rule(tables: dict) -> None:
    p = tables["presales"].merge(tables["orders"][["order_id", "created_at"]], on="order_id")
    vip = _vip_at(tables["account_events"], p, "created_at")
    score = _score_before(tables["credit_scores"], p, "created_at")
    rule = vip & (score >= OLD_RULE_SCORE)
    assert rule.any() and (~rule).any()
    assert (p["shipped_before_balance"] == rule).all()


def test_fast_refund_is_exactly_the_legacy_rule(tables: dict) -> None:
    r = tables["refunds"]
    vip = _vip_at(tables["account_events"], r, "requested_at")
    small = (r["amount"] <= FAST_REFUND_MAX_AMOUNT) & (r["evidence_photos"] >= 1)
    rule = (r["kind"] == "return_and_refund") & (vip | small)
    assert (r["fast_refund"] == rule).all()
    fast = r[r["fast_refund"]]
    assert (fast["outcome"].dropna() == "approved").all()
    assert (
        fast["refunded_at"].dropna()
        <= fast.loc[fast["refunded_at"].notna(), "requested_at"] + pd.Timedelta(hours=2)
    ).all()


def test_old_rule_is_imperfect_but_not_useless(large_export: Path) -> None:
    manifest = json.loads((large_export / "manifest.json").read_text())
    exported_at = pd.Timestamp(manifest["exported_at"])
    p = read_tables(large_export)["presales"]
    settled = p[p["balance_due_at"] + pd.Timedelta(days=7) <= exported_at]
    default = settled["balance_paid_at"].isna() | (
        settled["balance_paid_at"] > settled["balance_due_at"] + pd.Timedelta(days=7)
    )
    trusted = settled["shipped_before_balance"]
    assert 0.01 < trusted.mean() < 0.2  # approves few buyers ...
    assert default[trusted].mean() < default[~trusted].mean()  # ... who are safer ...
    assert default[~trusted].mean() < 0.1  # ... while most of the declined pay too
    traits = pd.read_parquet(large_export / "truth" / "traits.parquet").set_index("buyer_id")
    assert traits.loc[settled.loc[default & ~trusted, "buyer_id"], "fraudster"].any()
    assert realised.BAD_TYPES[0] == "balance_default"
