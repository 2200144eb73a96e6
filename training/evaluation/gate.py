"""The promotion gate: a new version becomes champion only when the yardsticks the product is for say it
is no worse than the champion, and better somewhere.

``judge`` (what ``train.py`` runs before registering) compares the new version with the champion on the
same test rows (``challenge``: the comparisons the gate reads) and applies ``gate``; ``set_aliases``
then moves the registry's aliases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rating.artifact import RatingModel, load_rating
from training.evaluation.report import PREFIX, Opportunities, decision_ranking
from training.evaluation.trust import opportunity_auc
from training.evaluation.yardsticks import Estimate, auc_comparison, compare_service
from training.opportunities import at_risk, legacy_decisions

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTE_MODES = ("auto", "never", "force")
NEW = "new"  # the version being judged, beside CHAMPION in the comparisons


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and why."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class Comparison:
    """One yardstick of the new version against the champion's, on the same rows.

    Attributes:
        name: The yardstick (``rating_auc``, ``presale_loss_ratio_at_rule_volume``...).
        higher_is_better: True for AUC, False for losses.
        new: The new version's value.
        champion: The champion's value.
        diff: ``new - champion`` with its paired bootstrap interval (same buyers resampled).
    """

    name: str
    higher_is_better: bool
    new: float
    champion: float
    diff: Estimate

    @property
    def worse(self) -> bool:
        """Worse than the champion beyond the bootstrap interval."""
        return self.diff.high < 0 if self.higher_is_better else self.diff.low > 0

    @property
    def better(self) -> bool:
        """Better than the champion on the point estimate."""
        return self.new > self.champion if self.higher_is_better else self.new < self.champion

    def metrics(self) -> dict[str, float]:
        """``gate_<name>_new``, ``_champion`` and ``_diff`` with its interval."""
        return {
            f"gate_{self.name}_new": self.new,
            f"gate_{self.name}_champion": self.champion,
            **self.diff.metrics(f"gate_{self.name}_diff"),
        }

    def __str__(self) -> str:
        verdict = "worse" if self.worse else "better" if self.better else "equal"
        return f"{self.name} {self.new:.4f} vs champion {self.champion:.4f} (diff {self.diff}: {verdict})"


def gate(
    mode: str,
    new_monotone: bool,
    comparisons: list[Comparison] | None,
    champion_comparable: bool = True,
) -> GateResult:
    """Decide promotion of a new version.

    A new version becomes champion only when it is no worse than the champion beyond the
    bootstrap interval on every yardstick (the rating's AUC and each service's expected loss at
    the legacy rule's volume, on the same test rows) and better on at least one point estimate.

    Args:
        mode: ``auto`` (promote when the yardsticks say so), ``never`` or ``force``.
        new_monotone: Whether its star bad rates strictly fall on the test window.
        comparisons: The yardsticks against the champion, or ``None`` when there is no champion.
        champion_comparable: False when the champion cannot be scored on these rows
            (for example it needs signals this build no longer produces).
    """
    if mode not in PROMOTE_MODES:
        raise ValueError(f"promote must be one of {PROMOTE_MODES}, got {mode!r}")
    if mode == "force":
        return GateResult(True, "forced by --promote force")
    if mode == "never":
        return GateResult(False, "--promote never")
    if not new_monotone:
        return GateResult(False, "star bad rates do not strictly fall on the test window")
    if not champion_comparable:
        return GateResult(False, "the champion cannot be scored on this data; promote with --promote force")
    if comparisons is None:
        return GateResult(True, "no champion yet")
    worse = [c for c in comparisons if c.worse]
    if worse:
        return GateResult(False, "worse than the champion beyond the interval: " + "; ".join(map(str, worse)))
    if not any(c.better for c in comparisons):
        return GateResult(
            False, "does not beat the champion on any yardstick: " + "; ".join(map(str, comparisons))
        )
    return GateResult(
        True, "no worse than the champion on any yardstick: " + "; ".join(map(str, comparisons))
    )


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version holding the champion alias, or ``None``."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def set_aliases(client: MlflowClient, name: str, version: str, promote: bool) -> None:
    """The new version becomes challenger, and champion when promoted."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)


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
        mode: ``auto``, ``never`` or ``force`` (``gate``).
        monotone: Whether the new version's star bad rates strictly fall on the test window.
        seed: Seed of the paired bootstrap.
        policies: When there is a comparable champion, the decisions' yardsticks: the new
            candidate policy against the champion's, each with its model, by backtest on the same
            window (``training.policy.backtest.against_champion``); None: the models' alone.
    """
    champion = champion_version(client, name)
    comparisons, can_compare = None, True
    if champion is not None:
        champion_model = load_rating(f"models:/{name}@{CHAMPION}").model
        can_compare = comparable(champion_model, test)
        if can_compare:
            comparisons = challenge(model, champion_model, test, opportunities, seed=seed)
            comparisons += (policies() if policies is not None else None) or []
    return Judgement(gate(mode, monotone, comparisons, can_compare), champion, comparisons)
