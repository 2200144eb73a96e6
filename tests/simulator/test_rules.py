"""Historical decisions: the legacy rules (features.legacy) exactly, plus declared random exploration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.legacy import legacy_fast_refund, legacy_presale
from simulator import realised
from simulator.config import Params
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


def _opportunities(export_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(export_dir / "truth" / f"{name}_opportunities.parquet")


def test_ship_before_balance_is_the_legacy_rule_or_exploration(export_dir: Path, tables: dict) -> None:
    p = tables["presales"]
    vip = _vip_at(tables["account_events"], p, "deposit_paid_at")
    score = _score_before(tables["credit_scores"], p, "deposit_paid_at")
    rule = pd.Series(legacy_presale(vip.to_numpy(), score.to_numpy(dtype=float)), index=p.index)
    assert rule.any() and (~rule).any()
    opp = p[["order_id"]].merge(_opportunities(export_dir, "presale"), on="order_id", how="left")
    assert opp["legacy"].notna().all()
    assert (opp["legacy"].to_numpy() == rule.to_numpy()).all()
    assert (opp["shipped_early"].to_numpy() == p["shipped_before_balance"].to_numpy()).all()
    assert (p["shipped_before_balance"].to_numpy() == (rule | opp["explored"]).to_numpy()).all()
    assert not (opp["explored"] & opp["legacy"]).any()


def test_fast_refund_is_the_legacy_rule_or_exploration(export_dir: Path, tables: dict) -> None:
    r = tables["refunds"]
    vip = _vip_at(tables["account_events"], r, "requested_at")
    rule = legacy_fast_refund(vip.to_numpy(), (r["kind"] == "return_and_refund").to_numpy(),
                              r["amount"].to_numpy(), r["evidence_photos"].to_numpy())  # fmt: skip
    opp = r[["refund_id", "reason"]].merge(_opportunities(export_dir, "refund"), on="refund_id", how="left")
    assert (opp["legacy"].to_numpy() == rule).all()
    assert (r["fast_refund"].to_numpy() == (rule | opp["explored"]).to_numpy()).all()
    assert not (opp["explored"] & opp["legacy"]).any()
    lost = opp["reason"] == "not_received"
    assert lost.any() and not opp.loc[lost, "explored"].any() and (opp.loc[lost, "p_loss_if_fast"] == 0).all()
    fast = r[r["fast_refund"]]
    assert (fast["outcome"].dropna() == "approved").all()
    assert (
        fast["refunded_at"].dropna()
        <= fast.loc[fast["refunded_at"].notna(), "requested_at"] + pd.Timedelta(hours=2)
    ).all()


def test_exploration_shares_are_the_declared_ones(large_export: Path) -> None:
    params = Params()
    for name, share in (
        ("presale", params.presale_explore_share),
        ("refund", params.fast_refund_explore_share),
    ):
        opp = _opportunities(large_export, name)
        if name == "refund":
            opp = opp[opp["p_loss_if_fast"] > 0]  # lost parcels are never explored
        others = opp[~opp["legacy"]]
        sd = np.sqrt(len(others) * share * (1 - share))
        assert abs(others["explored"].sum() - len(others) * share) < 4 * sd, name


def test_old_rule_is_imperfect_but_not_useless(large_export: Path) -> None:
    manifest = json.loads((large_export / "manifest.json").read_text())
    exported_at = pd.Timestamp(manifest["exported_at"])
    tables = read_tables(large_export)
    settled = realised.presale_results(
        tables["presales"], _opportunities(large_export, "presale"), exported_at
    )
    legacy, default = settled["legacy"], settled["default"]
    assert 0.01 < legacy.mean() < 0.2  # approves few presales ...
    assert default[legacy].mean() < default[~settled["shipped_early"]].mean()  # ... which are safer ...
    assert default[~legacy].mean() < 0.1  # ... while most of the declined pay too
    traits = pd.read_parquet(large_export / "truth" / "traits.parquet").set_index("buyer_id")
    assert traits.loc[settled.loc[default & ~legacy, "buyer_id"], "fraudster"].any()
