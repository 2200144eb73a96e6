"""The truth per opportunity agrees with what happened: realised counts within 3 SD of the expected."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from simulator import realised
from simulator.summary import read_tables


@pytest.fixture(scope="module")
def settled(calibration_export: Path) -> dict[str, pd.DataFrame]:
    exported_at = pd.Timestamp(json.loads((calibration_export / "manifest.json").read_text())["exported_at"])
    tables = read_tables(calibration_export)
    truth = calibration_export / "truth"
    return {
        "presale": realised.presale_results(
            tables["presales"], pd.read_parquet(truth / "presale_opportunities.parquet"), exported_at
        ),
        "refund": realised.refund_results(
            tables["refunds"], pd.read_parquet(truth / "refund_opportunities.parquet"), exported_at
        ),
    }


def _within_3sd(p: pd.Series, flag: pd.Series, at_least: float) -> None:
    expected, sd, real = realised.expected_vs_realised(p.to_numpy(), flag.to_numpy())
    assert expected >= at_least, f"too few expected events ({expected:.1f}) to test calibration"
    assert abs(real - expected) <= 3 * sd, f"realised {real} vs expected {expected:.1f} +- {sd:.1f}"


@pytest.mark.parametrize(
    ("arm", "column", "at_least"),
    [(True, "p_default_if_shipped", 30), (False, "p_default_if_held", 300)],
)
def test_presale_defaults_match_the_truth_in_both_arms(
    settled: dict[str, pd.DataFrame], arm: bool, column: str, at_least: float
) -> None:
    rows = settled["presale"][settled["presale"]["shipped_early"] == arm]
    _within_3sd(rows[column], rows["default"], at_least)


def test_presale_truth_is_calibrated_within_risk_bands(settled: dict[str, pd.DataFrame]) -> None:
    rows = settled["presale"]
    p = rows["p_default_if_shipped"].where(rows["shipped_early"], rows["p_default_if_held"])
    band = pd.qcut(p, 3, labels=False)
    for k in range(3):
        _within_3sd(p[band == k], rows.loc[band == k, "default"], 10)


def test_moral_hazard_raises_defaults_of_opportunists_only(calibration_export: Path) -> None:
    opp = pd.read_parquet(calibration_export / "truth" / "presale_opportunities.parquet")
    traits = pd.read_parquet(calibration_export / "truth" / "traits.parquet")
    df = opp.merge(traits, on="buyer_id")
    lift = df["p_default_if_shipped"] - df["p_default_if_held"]
    assert (lift >= 0).all()
    assert (lift[df["fraudster"]] == 0).all()
    honest = df[~df["fraudster"] & (df["opportunism"] < 0.005)]
    opportunist = df[~df["fraudster"] & (df["opportunism"] > 0.2)]

    def odds_ratio(df: pd.DataFrame) -> pd.Series:
        shipped, held = df["p_default_if_shipped"], df["p_default_if_held"]
        return shipped / (1 - shipped) / (held / (1 - held))

    assert odds_ratio(honest).max() < 1.06  # logit shift 10 x opportunism < 0.05
    assert odds_ratio(opportunist).min() > 5  # shift > 2 (odds x 7.4 in each stress state)


@pytest.mark.parametrize("subset", ["all", "fast", "slow", "return", "refund_only"])
def test_refund_losses_match_the_truth(
    settled: dict[str, pd.DataFrame], calibration_export: Path, subset: str
) -> None:
    rows = settled["refund"]
    if subset in ("fast", "slow"):
        rows = rows[rows["fast"] == (subset == "fast")]
    elif subset in ("return", "refund_only"):
        kind = pd.read_parquet(calibration_export / "refunds", columns=["refund_id", "kind"])
        rows = rows.merge(kind, on="refund_id")
        rows = rows[rows["kind"] == ("return_and_refund" if subset == "return" else "refund_only")]
    _within_3sd(rows["p_loss_if_fast"], rows["loss"], 100)


@pytest.mark.parametrize("kind", ["all", "return_and_refund", "refund_only"])
def test_refund_losses_under_normal_handling_match_the_truth(
    settled: dict[str, pd.DataFrame], calibration_export: Path, kind: str
) -> None:
    """Requests history handled normally: the losses it paid (bad and refunded) match ``p_loss_if_normal``."""
    rows = settled["refund"][~settled["refund"]["fast"]]
    if kind != "all":
        kinds = pd.read_parquet(calibration_export / "refunds", columns=["refund_id", "kind"])
        rows = rows.merge(kinds, on="refund_id")
        rows = rows[rows["kind"] == kind]
    _within_3sd(rows["p_loss_if_normal"], rows["paid_loss"], 40)


def test_fast_refunds_pay_every_loss(settled: dict[str, pd.DataFrame]) -> None:
    """The fast arm's loss is the request's loss: a fast refund is always paid."""
    fast = settled["refund"][settled["refund"]["fast"]]
    assert len(fast) and (fast["paid_loss"] == fast["loss"]).all()


def test_refund_truth_reads_the_request_like_a_model_would(settled: dict[str, pd.DataFrame],
                                                            calibration_export: Path) -> None:  # fmt: skip
    """Within each stated reason and photo count, the posterior stays calibrated (no reason beats it)."""
    context = pd.read_parquet(
        calibration_export / "refunds", columns=["refund_id", "reason", "evidence_photos"]
    )
    rows = settled["refund"].merge(context, on="refund_id")
    for _, group in rows.groupby(["reason", rows["evidence_photos"].clip(upper=3)]):
        expected, sd, real = realised.expected_vs_realised(group["p_loss_if_fast"], group["loss"])
        assert abs(real - expected) <= 3 * sd + 1, (group.name, real, expected, sd)


@pytest.fixture(scope="module")
def labelled(calibration_export: Path) -> pd.DataFrame:
    exported_at = pd.Timestamp(json.loads((calibration_export / "manifest.json").read_text())["exported_at"])
    events = realised.bad_events(read_tables(calibration_export), exported_at)
    risk = pd.read_parquet(calibration_export / "truth" / "risk.parquet")
    return realised.realised_labels(risk, events, exported_at)


@pytest.mark.parametrize("first", [0, 1, 2])
def test_risk_truth_matches_the_labels_on_non_overlapping_windows(labelled: pd.DataFrame, first: int) -> None:
    """Every third month start: windows do not share events, so the counts are sums of independent-ish rows."""
    months = sorted(labelled["as_of"].unique())[first::3]
    rows = labelled[labelled["as_of"].isin(months)]
    _within_3sd(rows["p_bad_90d"], rows["bad_90d"], 1000)


def test_risk_truth_is_calibrated_by_decile_and_stress(labelled: pd.DataFrame) -> None:
    rows = labelled[labelled["as_of"].isin(sorted(labelled["as_of"].unique())[::3])]
    decile = pd.qcut(rows["p_bad_90d"], 10, labels=False)
    for k in range(10):
        _within_3sd(rows.loc[decile == k, "p_bad_90d"], rows.loc[decile == k, "bad_90d"], 20)
    for _, group in rows.groupby("stress_state"):
        _within_3sd(group["p_bad_90d"], group["bad_90d"], 100)


def test_simulator_and_training_labels_are_one_definition(
    calibration_export: Path, labelled: pd.DataFrame
) -> None:
    """``realised`` and ``training.labels`` both read ``features.outcomes``, and agree row by row."""
    from features import outcomes
    from training import labels

    assert realised.outcomes is outcomes and labels.bad_events is outcomes.bad_events
    tables = {name: df[df["buyer_id"] <= 10_000] for name, df in read_tables(calibration_export).items()}
    rows = labelled[labelled["buyer_id"] <= 10_000].reset_index(drop=True)
    made = labels.make_labels(tables, rows[["buyer_id", "as_of"]])
    assert len(rows) > 10_000 and rows["bad_90d"].sum() > 300
    assert (made["bad_90d"].to_numpy() == rows["bad_90d"].to_numpy()).all()


def _rows_with(
    labelled: pd.DataFrame, events: pd.DataFrame, start: str, end: str, within: pd.Timedelta
) -> pd.Series:
    """Flag rows whose buyer has an event started in ``(as_of - within, as_of)`` and not ended by ``as_of``."""
    pairs = labelled[["buyer_id", "as_of"]].reset_index().merge(events, on="buyer_id")
    live = (pairs[start] < pairs["as_of"]) & (pairs[start] > pairs["as_of"] - within)
    live &= pairs[end].isna() | (pairs[end] > pairs["as_of"])
    return labelled.index.isin(pairs.loc[live, "index"])


@pytest.mark.parametrize("pending", ["return_not_shipped", "dispute_open", "bill_unpaid"])
def test_risk_truth_reads_pending_follow_ups(
    calibration_export: Path, labelled: pd.DataFrame, pending: str
) -> None:
    """Buyer-months with a follow-up under way at as_of (what a model's signals see) stay calibrated."""
    if pending == "return_not_shipped":
        r = pd.read_parquet(calibration_export / "refunds")
        events = r[r["kind"] == "return_and_refund"]
        flag = _rows_with(labelled, events, "requested_at", "return_shipped_at", pd.Timedelta(days=14))
    elif pending == "dispute_open":
        flag = _rows_with(labelled, pd.read_parquet(calibration_export / "disputes"), "opened_at", "closed_at",
                          pd.Timedelta(days=90))  # fmt: skip
    else:
        flag = _rows_with(labelled, pd.read_parquet(calibration_export / "credit_bills"), "due_at", "paid_at",
                          pd.Timedelta(days=30))  # fmt: skip
    rows = labelled[flag]
    assert rows["p_bad_90d"].mean() > 2 * labelled["p_bad_90d"].mean()  # the truth sees it
    _within_3sd(rows["p_bad_90d"], rows["bad_90d"], 30)


@pytest.fixture(scope="module")
def reviews(calibration_export: Path) -> pd.DataFrame:
    exported_at = pd.Timestamp(json.loads((calibration_export / "manifest.json").read_text())["exported_at"])
    truth = pd.read_parquet(calibration_export / "truth" / "review_opportunities.parquet")
    return realised.review_results(pd.read_parquet(calibration_export / "reviews"), truth, exported_at)


def test_review_removals_match_the_truth(reviews: pd.DataFrame) -> None:
    """Removals are drawn from malice and rating alone, so ``p_malicious`` predicts them exactly."""
    from simulator.reviews import removal_prob

    p = pd.Series(removal_prob(reviews["p_malicious"], reviews["rating"]), index=reviews.index)
    _within_3sd(p, reviews["removed"], 300)
    negative = reviews["rating"] <= 2
    for stars in (1, 2):
        rows = reviews["rating"] == stars
        _within_3sd(p[rows], reviews.loc[rows, "removed"], 20)
    band = pd.qcut(reviews.loc[negative, "p_malicious"].rank(method="first"), 4, labels=False)
    for k in range(4):
        rows = band.index[band == k]
        _within_3sd(p[rows], reviews.loc[rows, "removed"], 10)


def test_review_truth_reads_the_review_like_a_model_would(reviews: pd.DataFrame) -> None:
    """Within text-length bands x photos of one-star reviews, and among reported reviews, the truth holds."""
    from simulator.reviews import removal_prob, removal_prob_if_reported

    one_star = reviews[reviews["rating"] == 1]
    p = removal_prob(one_star["p_malicious"], one_star["rating"])
    bands = pd.cut(one_star["text_length"], [-1, 0, 30, 80, 160, 10**9])
    for _, idx in one_star.groupby([bands, "has_photos"], observed=True).indices.items():
        expected, sd, real = realised.expected_vs_realised(p[idx], one_star["removed"].to_numpy()[idx])
        assert abs(real - expected) <= 3 * sd + 1, (real, expected, sd)
    reported = reviews[reviews["reported"]]
    q = pd.Series(removal_prob_if_reported(reported["p_malicious"], reported["rating"]), index=reported.index)
    _within_3sd(q, reported["removed"], 300)
