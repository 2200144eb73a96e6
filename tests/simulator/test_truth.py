"""The truth is a probability, ordered with the traits, and agrees with what happened."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from features import outcomes
from simulator import aftersales, hazards, realised, truth
from simulator.calendar import build_calendar
from simulator.config import Params
from simulator.population import draw_population
from simulator.summary import read_tables


def _risk_with_traits(export_dir: Path) -> pd.DataFrame:
    risk = pd.read_parquet(export_dir / "truth" / "risk.parquet")
    traits = pd.read_parquet(export_dir / "truth" / "traits.parquet")
    return risk.merge(traits, on="buyer_id", validate="many_to_one")


def test_truth_files_cover_the_buyers_after_registration(export_dir: Path, tables: dict) -> None:
    traits = pd.read_parquet(export_dir / "truth" / "traits.parquet")
    risk = pd.read_parquet(export_dir / "truth" / "risk.parquet")
    assert traits["buyer_id"].tolist() == tables["buyers"]["buyer_id"].tolist()
    registered = tables["buyers"].set_index("buyer_id")["registered_at"]
    assert (risk["as_of"] > registered.loc[risk["buyer_id"]].to_numpy()).all()
    assert risk["as_of"].dt.day.eq(1).all() and risk["as_of"].nunique() == 12
    assert not risk.duplicated(["buyer_id", "as_of"]).any()
    assert risk["p_bad_90d"].between(0, 1).all()


def test_truth_is_ordered_with_the_traits(export_dir: Path) -> None:
    df = _risk_with_traits(export_dir)
    normal = df[~df["fraudster"] & ~df["ring_member"]]
    by_reliability = normal.groupby(pd.qcut(normal["reliability"], 4), observed=True)["p_bad_90d"].mean()
    assert by_reliability.is_monotonic_decreasing
    by_opportunism = normal.groupby(pd.qcut(normal["opportunism"], 4), observed=True)["p_bad_90d"].mean()
    assert by_opportunism.iloc[-1] > 2 * by_opportunism.iloc[0]
    by_stress = normal.groupby("stress_state")["p_bad_90d"].mean()
    assert by_stress.is_monotonic_increasing and by_stress.loc[2] > 2 * by_stress.loc[0]
    assert df.loc[df["fraudster"], "p_bad_90d"].mean() > 5 * normal["p_bad_90d"].mean()


def test_bad_rate_is_plausible_and_truth_is_calibrated(large_export: Path) -> None:
    manifest = json.loads((large_export / "manifest.json").read_text())
    exported_at = pd.Timestamp(manifest["exported_at"])
    events = realised.bad_events(read_tables(large_export), exported_at)
    risk = pd.read_parquet(large_export / "truth" / "risk.parquet")
    labelled = realised.realised_labels(risk, events, exported_at)
    bad_rate = labelled["bad_90d"].mean()
    assert 0.02 <= bad_rate <= 0.10
    assert abs(labelled["p_bad_90d"].mean() - bad_rate) < 0.01
    decile = pd.qcut(labelled["p_bad_90d"], 10, labels=False, duplicates="drop")
    by_decile = labelled.groupby(decile)["bad_90d"].mean()
    assert by_decile.iloc[-1] > 5 * by_decile.iloc[0]
    assert np.corrcoef(labelled.groupby(decile)["p_bad_90d"].mean(), by_decile)[0, 1] > 0.95
    assert 0.75 <= realised.auc(labelled["p_bad_90d"].to_numpy(), labelled["bad_90d"].to_numpy()) <= 0.95
    assert set(events["kind"]) == set(outcomes.COMPONENTS)


def test_auc_of_perfect_random_and_reversed_scores() -> None:
    label = np.array([0, 0, 1, 1, 0, 1])
    assert realised.auc(label.astype(float), label) == 1.0
    assert realised.auc(-label.astype(float), label) == 0.0
    assert realised.auc(np.zeros(6), label) == 0.5
    assert np.isnan(realised.auc(np.arange(3.0), np.zeros(3)))


def _one_trait_varies(trait: str, grid: np.ndarray) -> np.ndarray:
    """Truth for identical ordinary buyers (pre-period accounts, normal stress) except for one trait."""
    params = Params()
    cal = build_calendar(dt.date(2023, 1, 1), 12, params)
    pop = draw_population(np.random.default_rng(0), 1, grid.size, cal, params)
    same = {name: np.full(grid.size, getattr(pop, name)[0]) for name in
            ("rel_z", "fragility", "opportunism", "hostility", "activity", "spend", "pay_later")}  # fmt: skip
    same.update(
        registered_at=np.full(grid.size, cal.month_start[0] - 10**7),
        reg_month=np.full(grid.size, -1),
        fraudster=np.zeros(grid.size, dtype=bool),
        ring=np.zeros(grid.size, dtype=bool),
        active_until=np.full(grid.size, cal.months + 3),
        stress=np.zeros_like(pop.stress),
        pay_later=np.ones(grid.size, dtype=bool),
    )
    same[trait] = grid
    pop = dataclasses.replace(pop, **same)
    expected = hazards.expected_orders(pop, cal, params)
    empty = np.zeros(0, dtype=np.int64)
    none = {name: empty for name in (
        "b", "o", "festival", "due_month", "month", "created_at", "category", "kind", "canceled_at",
        "delivered_at", "requested_at", "reason", "return_shipped_at", "return_received_at",
        "abuse_confirmed_at", "opened_at", "closed_at", "due_at", "paid_at")}  # fmt: skip
    none.update(amount=np.zeros(0), shipped=np.zeros(0, dtype=bool), p_loss_if_fast=np.zeros(0))
    legacy = np.zeros((grid.size, cal.months), dtype=bool)
    return truth.p_bad_90d(pop, cal, expected, none, none, none, none, none, legacy, params)


def test_truth_moves_the_right_way_with_each_trait_alone() -> None:
    grid = np.linspace(0, 1, 6)
    for trait, sign, values in [
        ("rel_z", -1, np.linspace(-2, 2, 6)),
        ("opportunism", 1, grid * 0.5),
        ("hostility", 1, grid * 0.5),
        ("fragility", 1, 0.5 + 2 * grid),
        ("activity", 1, 0.5 + 4 * grid),
    ]:
        risk = _one_trait_varies(trait, values)
        steps = np.diff(risk, axis=0) * sign
        assert (steps > 0).all(), trait
        assert ((risk > 0) & (risk < 1)).all()


def test_opportunity_files_have_one_row_per_exported_opportunity(export_dir: Path, tables: dict) -> None:
    truth_dir = export_dir / "truth"
    for name, key, table in (("presale", "order_id", "presales"), ("refund", "refund_id", "refunds")):
        opp = pd.read_parquet(truth_dir / f"{name}_opportunities.parquet")
        assert sorted(opp[key]) == sorted(tables[table][key]), name
        assert (
            opp["buyer_id"].to_numpy() == tables[table].set_index(key).loc[opp[key], "buyer_id"].to_numpy()
        ).all()
    presales = pd.read_parquet(truth_dir / "presale_opportunities.parquet")
    for col in ("p_default_if_shipped", "p_default_if_held"):
        assert presales[col].between(0, 1).all() and presales[col].notna().all()
    refunds = pd.read_parquet(truth_dir / "refund_opportunities.parquet")
    assert refunds["p_loss_if_fast"].between(0, 1).all()
    assert (refunds["p_loss_if_normal"] >= 0).all()
    assert (refunds["p_loss_if_normal"] <= refunds["p_loss_if_fast"]).all()  # paying fast never saves a loss
    merged = refunds.merge(tables["refunds"][["refund_id", "requested_at", "amount"]], on="refund_id")
    assert (merged["requested_at_x"] == merged["requested_at_y"]).all() and (
        merged["amount_x"] == merged["amount_y"]
    ).all()


def test_refund_normal_arm_is_the_fast_arm_times_what_normal_handling_pays(
    export_dir: Path, tables: dict
) -> None:
    """Normal handling pays a bad return only when its goods come back and it is approved, a bad
    refund-only claim when it is approved: the two arms differ by that factor, by kind alone."""
    refunds = pd.read_parquet(export_dir / "truth" / "refund_opportunities.parquet")
    rows = refunds.merge(tables["refunds"][["refund_id", "kind", "reason"]], on="refund_id")
    asked = rows[rows["reason"] != "not_received"]
    ratio = asked["p_loss_if_normal"] / asked["p_loss_if_fast"]
    returns = asked["kind"].eq("return_and_refund").to_numpy()
    np.testing.assert_allclose(ratio[returns], (1 - aftersales.NO_RETURN_SHARE) * 0.93)
    np.testing.assert_allclose(ratio[~returns], 0.85)
    lost = rows[rows["reason"] == "not_received"]
    assert len(lost) and (lost["p_loss_if_fast"] == 0).all() and (lost["p_loss_if_normal"] == 0).all()


def test_review_truth_has_one_row_per_review_and_is_zero_where_malice_is_impossible(
    export_dir: Path, tables: dict
) -> None:
    opp = pd.read_parquet(export_dir / "truth" / "review_opportunities.parquet")
    reviews = tables["reviews"].set_index("review_id")
    assert sorted(opp["review_id"]) == sorted(reviews.index)
    rows = reviews.loc[opp["review_id"]]
    assert (opp["buyer_id"].to_numpy() == rows["buyer_id"].to_numpy()).all()
    assert (opp["created_at"].to_numpy() == rows["created_at"].to_numpy()).all()
    assert opp["p_malicious"].between(0, 1).all() and opp["p_malicious"].notna().all()
    assert (opp["p_malicious"].to_numpy()[rows["rating"].to_numpy() > 1] == 0).all()  # malicious: 1 star


def test_review_posterior_reads_hostility_text_and_photos_the_right_way() -> None:
    from simulator import reviews as rv

    one = np.ones(5, dtype=np.int64)
    grid = np.linspace(0.0, 0.8, 5)
    by_hostility = rv.malicious_posterior(grid, one, np.full(5, 120), np.zeros(5, bool), np.zeros(5, bool))
    assert (np.diff(by_hostility) > 0).all()
    h = np.full(4, 0.4)
    text = rv.malicious_posterior(
        h, one[:4], np.array([0, 10, 120, 300]), np.zeros(4, bool), np.zeros(4, bool)
    )
    assert text[2] > text[1] and text[2] > text[0] and text[3] > text[1]
    photos = rv.malicious_posterior(
        h[:2], one[:2], np.full(2, 60), np.array([True, False]), np.zeros(2, bool)
    )
    assert photos[0] > photos[1]
    assert (
        rv.malicious_posterior(h[:1], one[:1], np.full(1, 120), np.zeros(1, bool), np.ones(1, bool))[0] == 0
    )
    # the text-length likelihood is a distribution over whole characters (no text included)
    k = np.arange(0, 20_000)
    for median, sigma in (rv.TEXT_MALICIOUS, rv.TEXT_HONEST):
        assert abs(np.exp(rv._log_text_likelihood(k, median, sigma)).sum() - 1) < 1e-6
