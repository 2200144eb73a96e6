"""The new version against the champion on the same test rows: the comparisons the gate reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rating.artifact import RatingModel
from training.opportunities import at_risk, legacy_decisions
from training.promote import Comparison
from training.report import PREFIX, Opportunities, decision_ranking
from training.trust import opportunity_auc
from training.yardsticks import Estimate, auc_comparison, compare_service

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

    The rating's AUC is over opportunities (``rating_auc_per_opportunity``, ``training.trust``) when
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
