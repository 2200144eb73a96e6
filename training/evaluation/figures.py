"""A run's evaluation figures as matplotlib ``Figure`` objects (no pyplot state, no backend set at import);
the numbers are ``training.evaluation.report``'s."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from rating.artifact import RatingModel
from training.evaluation.report import ORACLE, RATING, SCORECARD, Report


def roc_figure(y: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
    """ROC curves of several scorers (name -> probability of bad) on the same rows."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(
        xlabel="false positive rate (good buyers flagged)", ylabel="true positive rate (bad buyers caught)"
    )
    ax.set_title("ROC, out-of-time test window")
    ax.legend(loc="lower right")
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 20) -> Figure:
    """Observed bad rate against mean predicted probability, equal-count bins, log axes."""
    order = np.argsort(p, kind="stable")
    chunks = [c for c in np.array_split(order, bins) if c.size]
    pred = np.array([p[c].mean() for c in chunks])
    obs = np.array([y[c].mean() for c in chunks])
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    lo = max(min(pred.min(), obs[obs > 0].min() if (obs > 0).any() else pred.min()) / 2, 1e-4)
    ax.plot([lo, 1], [lo, 1], color="grey", linestyle=":")
    ax.plot(pred, np.maximum(obs, lo), marker="o")
    ax.set(xscale="log", yscale="log", xlabel="predicted p_bad", ylabel="observed bad rate")
    ax.set_title("Calibration, test window")
    return fig


def star_figure(table: pd.DataFrame) -> Figure:
    """Bad rate (bars) and share of buyers (labels) per star."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    bars = ax.bar(table.index.astype(str), 100 * table["bad_rate"].fillna(0), color="#4c72b0")
    for bar, share in zip(bars, table["share"], strict=True):
        ax.annotate(
            f"{share:.0%} of buyers",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    ax.set(xlabel="stars", ylabel="90-day bad rate (%)")
    ax.set_title("Bad rate per star, test window")
    return fig


def importance_figure(names: list[str], gain: np.ndarray, top: int = 25) -> Figure:
    """The ``top`` signals by total split gain."""
    order = np.argsort(-gain)[:top][::-1]
    fig = Figure(figsize=(7, 0.28 * len(order) + 1))
    ax = fig.add_subplot()
    ax.barh([names[i] for i in order], gain[order] / gain.sum())
    ax.set(xlabel="share of total gain")
    ax.set_title(f"Top {len(order)} signals")
    fig.tight_layout()
    return fig


def loss_volume_figure(
    service: str, curves: dict[str, pd.DataFrame], rule_point: tuple[float, float]
) -> Figure:
    """Expected loss per approved unit against the approved share of money at risk, per ranking,
    with the legacy rule as a point (approving in ascending order of each ranking's probability)."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(curve["volume_share"], 100 * curve["loss_rate"], label=name)
    ax.scatter([rule_point[0]], [100 * rule_point[1]], color="red", zorder=3, label="legacy rule")
    ax.axhline(100 * rule_point[1], color="red", linestyle=":", linewidth=0.8)
    ax.set(xlabel="approved share of the money at risk", ylabel="expected loss per approved unit (%)")
    ax.set_title(f"{service}: approvals against expected loss (truth)")
    ax.legend()
    return fig


def figures(rep: Report, model: RatingModel) -> dict[str, Figure]:
    """The run's figures by file name."""
    curves = {"rating model": rep.test_scores[RATING], "scorecard (optbinning)": rep.test_scores[SCORECARD]}
    if ORACLE in rep.test_scores:
        curves["oracle (true risk)"] = rep.test_scores[ORACLE]
    out = {
        "roc.png": roc_figure(rep.test_y, curves),
        "calibration.png": calibration_figure(rep.test_y, rep.test_scores[RATING]),
        "bad_rate_per_star.png": star_figure(rep.stars),
        "top_signals.png": importance_figure(
            model.signal_names, model.booster.feature_importance(importance_type="gain")
        ),
    }
    for service, service_curves in rep.curves.items():
        out[f"loss_volume_{service}.png"] = loss_volume_figure(
            service, service_curves, rep.rule_points[service]
        )
    return out
