"""The new version against the champion on the same test rows: the comparisons the gate reads, and
the gate's verdict on them (``judge``: what ``train.py`` runs before registering)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from rating.artifact import RatingModel, load_rating
from training.evaluation.promote import CHAMPION as CHAMPION_ALIAS
from training.evaluation.promote import Comparison, GateResult, champion_version, gate
from training.evaluation.report import PREFIX, Opportunities, decision_ranking
from training.evaluation.trust import opportunity_auc
from training.evaluation.yardsticks import Estimate, auc_comparison, compare_service
from training.opportunities import at_risk, legacy_decisions

NEW, CHAMPION = "new", "champion"


def comparable(champion: RatingModel, test: pd.DataFrame) -> bool:
    """Whether the champion can be scored on these rows (it reads only signals the frame has)."""
    return all(name in test.columns for name in champion.signal_names)


def challenge(
    model: RatingModel,
    champion: RatingModel,
    test: pd.DataFrame,
    opportunities: dict[str, Opportunities],
    seed: int = 7,
) -> list[Comparison]:
    """The rating's AUC and each service's expected loss at the rule's volume, new vs champion.

    The rating's AUC is over opportunities (``rating_auc_per_opportunity``, ``training.evaluation.trust``) when
    the rows carry the exposure, what the rating estimates; else over ``bad_90d`` (``rating_auc``).
    Differences are paired: both versions are scored on the same bootstrap resamples of buyers.
    """
    buyer = test["buyer_id"].to_numpy()
    scores = {
        NEW: model.score(test[model.signal_names].to_numpy(np.float32)).p_bad,
        CHAMPION: champion.score(test[champion.signal_names].to_numpy(np.float32)).p_bad,
    }
    if "exposure_90d" in test.columns:
        name = "rating_auc_per_opportunity"
        events, exposure = test["bad_events_90d"].to_numpy(), test["exposure_90d"].to_numpy()
        aucs = opportunity_auc(events, exposure, buyer, scores, seed=seed)
    else:
        name = "rating_auc"
        aucs = auc_comparison(test["bad_90d"].to_numpy(), buyer, scores, seed=seed)
    out = [
        Comparison(
            name,
            True,
            float(aucs[NEW][0]),
            float(aucs[CHAMPION][0]),
            Estimate.of(aucs[NEW] - aucs[CHAMPION]),
        )
    ]
    for service, opp in opportunities.items():
        rows = opp.rows
        if not len(rows):
            continue
        p_true = rows["bad"].to_numpy(np.float64) if opp.p_true is None else opp.p_true
        result = compare_service(
            service, at_risk(service, rows), p_true, rows["bad"].to_numpy(np.float64), rows["buyer_id"].to_numpy(),
            legacy_decisions(service, rows),
            {NEW: decision_ranking(model, service, rows), CHAMPION: decision_ranking(champion, service, rows)},
            oracle=None, seed=seed,
        )  # fmt: skip
        new, old = result.loss_ratio_replicates[NEW], result.loss_ratio_replicates[CHAMPION]
        out.append(
            Comparison(
                f"{PREFIX[service]}_loss_ratio_at_rule_volume",
                False,
                float(new[0]),
                float(old[0]),
                Estimate.of(new - old),
            )
        )
    return out


@dataclass(frozen=True)
class Judgement:
    """The gate's verdict on a new version, with what it compared.

    Attributes:
        verdict: Promote or not, and why.
        champion: The champion's version before (None: there was none).
        comparisons: The yardsticks against the champion (None: no champion, or not comparable).
    """

    verdict: GateResult
    champion: str | None
    comparisons: list[Comparison] | None


def judge(
    client: MlflowClient,
    name: str,
    model: RatingModel,
    test: pd.DataFrame,
    opportunities: dict[str, Opportunities],
    mode: str,
    monotone: bool,
    seed: int = 7,
    policies: Callable[[], list[Comparison] | None] | None = None,
) -> Judgement:
    """Compare ``model`` with the registered model ``name``'s champion on the test rows and apply the gate.

    Args:
        client: The registry.
        name: The registered model.
        model: The new version (not registered yet).
        test: The test window's snapshot rows (``buyer_id``, ``bad_90d`` and the signals).
        opportunities: Per service, the test window's opportunities.
        mode: ``auto``, ``never`` or ``force`` (``training.evaluation.promote.gate``).
        monotone: Whether the new version's star bad rates strictly fall on the test window.
        seed: Seed of the paired bootstrap.
        policies: When there is a comparable champion, the decisions' yardsticks: the new
            candidate policy against the champion's, each with its model, by backtest on the same
            window (``training.policy.backtest.against_champion``); None: the models' alone.
    """
    champion = champion_version(client, name)
    comparisons, can_compare = None, True
    if champion is not None:
        champion_model = load_rating(f"models:/{name}@{CHAMPION_ALIAS}").model
        can_compare = comparable(champion_model, test)
        if can_compare:
            comparisons = challenge(model, champion_model, test, opportunities, seed=seed)
            comparisons += (policies() if policies is not None else None) or []
    return Judgement(gate(mode, monotone, comparisons, can_compare), champion, comparisons)
