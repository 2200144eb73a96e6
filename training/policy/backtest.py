"""The candidate policy of a training run, searched as a whole and judged by backtest.

The run's allowance proposal (``training.policy.proposal``) is the starting point; the search
(``serving.offline.policy_search``) then moves every star band's allowance and amount cap (and a fast
refund's quota amount and evidence threshold) together, deciding a window of the validation period through the service's own decision code and ledger
rules, and keeps the candidate approving the most money with the upper 95% bound of its loss
per unit at the target. The test period then judges the candidate beside the reviewed policy
and the legacy rule by the same backtest (the truth's expected loss where the export has one).
Both windows are the ``days`` before a presale festival (when presales are decided), or the
window's last ``days`` where no festival falls in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rating.artifact import LoadedRating, RatingModel
from serving.offline.backtest import backtest
from serving.offline.backtest_report import render
from serving.offline.policy_search import curve, propose_on_window
from serving.policy import FAST_REFUND, PRESALE, parse_policy
from training.evaluation.gate import Comparison
from training.evaluation.yardsticks import Estimate
from training.snapshots import MONTH, PRESALE_FESTIVALS, TimeSplit

SEARCH_DAYS = 30
REPLICATES = 200
HIGH_RISK_P = 0.3  # an approval whose true probability of loss is above this is a high-risk approval
PREFIX = {PRESALE: "presale", FAST_REFUND: "refund"}


@dataclass
class Judged:
    """What the run logs about its candidate policy."""

    doc: dict
    metrics: dict[str, float] = field(default_factory=dict)
    curve: pd.DataFrame | None = None
    text: str = ""
    decisions: pd.DataFrame | None = None  # the candidate's judged decisions on the test window
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None  # the test window


def festival_window(first: pd.Timestamp, end: pd.Timestamp, days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, stop)`` of ``days`` days ending the day after the first presale festival in ``[first, end)``,
    else the last ``days`` days before ``end`` (UTC)."""
    first, end = (pd.Timestamp(t).tz_convert("UTC") if pd.Timestamp(t).tzinfo else pd.Timestamp(t, tz="UTC")
                  for t in (first, end))  # fmt: skip
    for year in range(first.year, end.year + 1):
        for month, day in sorted(PRESALE_FESTIVALS):
            stop = pd.Timestamp(year=year, month=month, day=day, tz="UTC") + pd.Timedelta(days=1)
            if first + pd.Timedelta(days=days) <= stop <= end:
                return stop - pd.Timedelta(days=days), stop
    return end - pd.Timedelta(days=days), end


def search_window(split: TimeSplit, days: int = SEARCH_DAYS) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The validation window's decisions (the months ``valid_first`` .. ``valid_last``) the search replays."""
    return festival_window(split.valid_first, split.valid_last + MONTH, days)


def judge_window(
    split: TimeSplit, exported_at: pd.Timestamp, days: int = SEARCH_DAYS
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The test window's decisions the candidate is judged on."""
    return festival_window(split.test_first, exported_at, days)


def _service_metrics(
    prefix: str, name: str, result: dict, decisions: pd.DataFrame, service: str
) -> dict[str, float]:
    """Fixed-name figures of one policy's backtest of one service."""
    mine, rule = result["policy"], result["legacy"]
    out = {
        f"policy_{prefix}_{name}_approvals": float(mine["approvals"]),
        f"policy_{prefix}_{name}_money": mine["money"],
        f"policy_{prefix}_{name}_legacy_money": rule["money"],
        f"policy_{prefix}_{name}_opportunities": float(mine["opportunities"]),
    }
    if "money_vs_legacy" in result:
        out[f"policy_{prefix}_{name}_money_vs_legacy"] = result["money_vs_legacy"]
        out[f"policy_{prefix}_{name}_loss_per_unit_vs_legacy"] = result["loss_per_unit_vs_legacy"]
    if "loss_per_unit" in mine:
        lo, hi = mine["loss_per_unit_ci"]
        out |= {
            f"policy_{prefix}_{name}_loss_per_unit": mine["loss_per_unit"],
            f"policy_{prefix}_{name}_loss_per_unit_lo": lo,
            f"policy_{prefix}_{name}_loss_per_unit_hi": hi,
            f"policy_{prefix}_{name}_legacy_loss_per_unit": rule.get("loss_per_unit", float("nan")),
        }
    frame = decisions[decisions["service"] == service]
    ok = frame["decision"].eq("approve").to_numpy()
    truth = frame["p_true"].to_numpy(np.float64)
    if ok.any() and not np.isnan(truth[ok]).any():
        money = frame["at_risk"].to_numpy(np.float64)[ok]
        expected = money * truth[ok]
        head = money * frame["p_loss"].fillna(0.0).to_numpy(np.float64)[ok]
        if expected.sum() > 0:
            out[f"policy_{prefix}_{name}_high_risk_loss_share"] = float(
                expected[truth[ok] > HIGH_RISK_P].sum() / expected.sum()
            )
            out[f"policy_{prefix}_{name}_head_vs_truth_on_approvals"] = float(head.sum() / expected.sum())
    return out


def search_and_judge(
    model: RatingModel,
    run_id: str,
    candidate: dict,
    reviewed: dict,
    data: Path,
    split: TimeSplit,
    days: int = SEARCH_DAYS,
    progress: Callable[[str], None] = print,
) -> Judged:
    """Search the candidate on the validation window, then backtest it and the reviewed policy on the test window.

    Args:
        model: The run's rating, heads included.
        run_id: The MLflow run (names the in-memory artifact).
        candidate: The policy document the search starts from (the allowance proposal applied).
        reviewed: The reviewed policy document (the one in force).
        data: The export.
        split: The run's windows (the test window ends at the export time at the latest).
        days: Length of each window.
        progress: Where progress lines go.
    """
    from features.io import export_time, load_tables

    rating = LoadedRating(model=model, uri=f"runs:/{run_id}/rating", name=None, version=None, run_id=run_id)
    tables = load_tables(data)
    start, end = search_window(split, days)
    progress(f"policy search on {start.date()}..{end.date()} (validation) ...")
    found = propose_on_window(tables, rating, candidate, start, end, progress=progress)
    doc = found.doc
    names = list(model.signal_names)
    policies = {"candidate": parse_policy(doc, names), "reviewed": parse_policy(reviewed, names)}
    t0, t1 = judge_window(split, export_time(data), days)
    progress(f"judging the candidate by backtest on {t0.date()}..{t1.date()} (test) ...")
    decisions, reports = backtest(data, t0, t1, rating, policies, progress, tables=tables)
    metrics: dict[str, float] = {}
    for service, prefix in PREFIX.items():
        metrics[f"policy_{prefix}_search_target"] = found.targets[service]
        best = [t for t in found.tried if t.service == service and t.feasible]
        if best:
            top = max(best, key=lambda t: t.money)
            metrics[f"policy_{prefix}_search_money"] = top.money
            metrics[f"policy_{prefix}_search_upper"] = top.upper
        for name in policies:
            metrics |= _service_metrics(prefix, name, reports[name][service], decisions[name], service)
    text = "\n\n".join(
        render(reports[n], f"{n} ({policies[n].version}), test window {t0.date()} to {t1.date()}")
        for n in policies
    )
    return Judged(doc, metrics, curve(found.tried), text, decisions["candidate"], (t0, t1))


def targets_of(metrics: dict[str, float]) -> dict[str, float]:
    """Service -> the search's target, from the run's metrics."""
    return {
        s: metrics[f"policy_{p}_search_target"]
        for s, p in PREFIX.items()
        if f"policy_{p}_search_target" in metrics
    }


def curve_figure(frame: pd.DataFrame, targets: dict[str, float]):
    """Money approved against the upper bound of the loss per unit, every candidate tried, per service."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (service, prefix) in zip(axes, PREFIX.items(), strict=True):
        rows = frame[frame["service"] == service]
        for feasible, colour in ((True, "tab:green"), (False, "tab:grey")):
            part = rows[rows["feasible"] == feasible]
            ax.scatter(part["upper"] * 100, part["money"], s=12, c=colour,
                       label="feasible" if feasible else "above target")  # fmt: skip
        if service in targets:
            ax.axvline(targets[service] * 100, color="tab:red", lw=1, label="target")
        ax.set_xlabel("loss per unit approved, upper 95% bound (%)")
        ax.set_ylabel("money approved")
        ax.set_title(f"{prefix}: candidates tried (validation window)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def policy_comparisons(new: pd.DataFrame, champion: pd.DataFrame, seed: int = 7) -> list[Comparison]:
    """Per service, the new candidate's money approved and loss per unit approved against the champion's.

    Both are judged decisions of the same window (``serving.offline.backtest.judged``), each decided by its
    own model and policy; the loss is the truth's expected loss where the export has one, else
    the realised. Differences are paired: the same buyer-level Poisson(1) resamples for both.
    """
    out = []
    for service, prefix in PREFIX.items():
        a, b = new[new["service"] == service], champion[champion["service"] == service]
        if a.empty or b.empty:
            continue
        buyers, inverse = np.unique(np.concatenate([a["buyer_id"], b["buyer_id"]]), return_inverse=True)
        sums = []
        for frame, idx in ((a, inverse[: len(a)]), (b, inverse[len(a) :])):
            ok = frame["decision"].eq("approve").to_numpy()
            money = np.where(ok, frame["at_risk"].to_numpy(np.float64), 0.0)
            p = frame["p_true"].to_numpy(np.float64)
            p = np.where(np.isnan(p), frame["bad"].to_numpy(np.float64), p)
            sums.append([np.bincount(idx, weights=x, minlength=len(buyers)) for x in (money, money * p)])
        weights = np.vstack(
            [np.ones(len(buyers)), np.random.default_rng(seed).poisson(1.0, size=(REPLICATES, len(buyers)))]
        )
        (m_new, l_new), (m_old, l_old) = ([weights @ x for x in pair] for pair in sums)
        rate_new = np.divide(l_new, m_new, out=np.full_like(l_new, np.nan), where=m_new > 0)
        rate_old = np.divide(l_old, m_old, out=np.full_like(l_old, np.nan), where=m_old > 0)
        out.append(
            Comparison(
                f"policy_{prefix}_money", True, float(m_new[0]), float(m_old[0]), Estimate.of(m_new - m_old)
            )
        )
        out.append(
            Comparison(
                f"policy_{prefix}_loss_per_unit",
                False,
                float(rate_new[0]),
                float(rate_old[0]),
                Estimate.of(rate_new - rate_old),
            )  # fmt: skip
        )
    return out


def against_champion(
    client, name: str, judged: Judged, data: Path, progress: Callable[[str], None] = print
) -> list[Comparison] | None:
    """The new candidate against the champion's own candidate, each with its model, on the test window.

    None when there is no champion, or its run logged no candidate policy, or the champion's
    policy cannot be read (an older champion): the gate then reads the model yardsticks alone.
    """
    import mlflow
    import yaml

    from rating.artifact import load_rating
    from serving.policy import PolicyError
    from training.evaluation.gate import CHAMPION, champion_version

    if judged.decisions is None or champion_version(client, name) is None:
        return None
    champion = load_rating(f"models:/{name}@{CHAMPION}")
    try:
        uri = client.get_run(champion.run_id).info.artifact_uri
        policy = parse_policy(
            yaml.safe_load(mlflow.artifacts.load_text(f"{uri}/policy/candidate_policy.yaml")),
            list(champion.model.signal_names),
        )
    except (OSError, PolicyError, yaml.YAMLError, mlflow.exceptions.MlflowException) as err:
        progress(f"the champion's candidate policy cannot be read ({err}); the gate compares the models only")
        return None
    t0, t1 = judged.window
    progress(f"the champion's model and candidate policy on {t0.date()}..{t1.date()} ...")
    decisions, _ = backtest(data, t0, t1, champion, {"champion": policy}, progress)
    return policy_comparisons(judged.decisions, decisions["champion"])
