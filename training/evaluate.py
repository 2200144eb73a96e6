"""Out-of-time evaluation: discrimination, calibration, stars, stability and service trade-offs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from rating.scale import N_STARS


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the score distributions of bad and good rows."""
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 20) -> float:
    """Expected calibration error over ``bins`` equal-count bins of predicted probability."""
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            err += chunk.size * abs(p[chunk].mean() - y[chunk].mean())
    return float(err / len(p))


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``, on the decile edges of ``expected``."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=edges.size + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=edges.size + 1) / len(actual)
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


def discrimination(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, Gini, KS, Brier, log loss and calibration error of probabilities ``p``."""
    auc = float(roc_auc_score(y, p))
    return {
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-9, 1 - 1e-9), labels=[0, 1])),
        "calibration_error": calibration_error(y, p),
        "bad_rate": float(np.mean(y)),
        "mean_p_bad": float(np.mean(p)),
    }


def star_table(y: np.ndarray, star: np.ndarray) -> pd.DataFrame:
    """Rows, share and bad rate per star (1..5)."""
    frame = pd.DataFrame({"star": star, "bad": y})
    table = frame.groupby("star")["bad"].agg(rows="size", bad_rate="mean").reindex(range(1, N_STARS + 1))
    table["rows"] = table["rows"].fillna(0).astype(int)
    table["share"] = table["rows"] / max(len(frame), 1)
    return table


def stars_monotone(table: pd.DataFrame) -> bool:
    """True when every band is populated and the bad rate strictly falls as stars rise."""
    rates = table["bad_rate"].to_numpy()
    return bool(np.all(table["rows"].to_numpy() > 0) and np.all(np.diff(rates) < 0))


def approval_curve(y: np.ndarray, p: np.ndarray, points: int = 101) -> pd.DataFrame:
    """Approve the lowest-risk share; for each approval rate, the bad rate and count among the approved."""
    order = np.argsort(p, kind="stable")
    cum_bad = np.cumsum(y[order])
    rates = np.linspace(0.01, 1.0, points - 1)
    n = np.maximum(1, np.round(rates * len(y)).astype(int))
    return pd.DataFrame(
        {"approval_rate": n / len(y), "approved": n, "bad": cum_bad[n - 1], "bad_rate": cum_bad[n - 1] / n}
    )


@dataclass(frozen=True)
class ServiceComparison:
    """One service at the old rule's approval rate: the rule against the model and the scorecard."""

    service: str
    population: int
    rule_approval_rate: float
    rule_bad: int
    model_bad: int
    scorecard_bad: int
    model_approval_rate_at_rule_bad_rate: float

    @property
    def model_reduction(self) -> float:
        """Share of the rule's bad approvals the model avoids at the same approval count."""
        return 1.0 - self.model_bad / self.rule_bad if self.rule_bad else float("nan")

    def as_metrics(self) -> dict[str, float]:
        s = self.service
        return {
            f"{s}_population": self.population,
            f"{s}_rule_approval_rate": self.rule_approval_rate,
            f"{s}_rule_bad": self.rule_bad,
            f"{s}_model_bad_at_rule_rate": self.model_bad,
            f"{s}_scorecard_bad_at_rule_rate": self.scorecard_bad,
            f"{s}_model_bad_reduction": self.model_reduction,
            f"{s}_model_approval_rate_at_rule_bad_rate": self.model_approval_rate_at_rule_bad_rate,
        }


def compare_at_rule_rate(
    service: str, y: np.ndarray, rule: np.ndarray, p_model: np.ndarray, p_scorecard: np.ndarray
) -> ServiceComparison:
    """Approve as many rows as the old rule does, by each model's ranking, and count the bad ones.

    Also: the largest share the model can approve while its bad rate among the approved stays at
    or below the old rule's (how many more good buyers it serves for the same risk).
    """
    k = int(rule.sum())
    order = np.argsort(p_model, kind="stable")
    model_bad = int(y[order[:k]].sum())
    rule_bad = int(y[rule.astype(bool)].sum())
    cum_bad_rate = np.cumsum(y[order]) / np.arange(1, len(y) + 1)
    within = np.flatnonzero(cum_bad_rate <= rule_bad / max(k, 1) + 1e-12)
    scorecard_bad = int(y[np.argsort(p_scorecard, kind="stable")[:k]].sum())
    return ServiceComparison(
        service=service,
        population=len(y),
        rule_approval_rate=k / max(len(y), 1),
        rule_bad=rule_bad,
        model_bad=model_bad,
        scorecard_bad=scorecard_bad,
        model_approval_rate_at_rule_bad_rate=(within.max() + 1) / len(y) if within.size else 0.0,
    )
