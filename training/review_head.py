"""The review head: is a review malicious, at the moment it is posted (``rating.review``).

Rows: one per review posted with at most ``SCREENED_RATING`` stars (the negative reviews a merchant
asks about), plus every review a seller reported, at ``as_of`` = the review's posting floored to
UTC midnight (the service scores the daily snapshot published as of the previous midnight), with
the buyer's signals at that as_of and the review's context.

Label and selection. Moderation removes a review as malicious only after a seller reports it, so
the removals are a selected, delayed label: an unreported malicious review, or one moderation did
not confirm, looks honest in the data. The head does not pretend otherwise: it estimates
``P(removed as malicious | x)`` on every row of the window (screened reviews and reported ones), the
report step included, not ``P(malicious | x)``. Where sellers report and moderation removes by what
makes a review malicious (and its rating), as here, both probabilities order the reviews alike
(removal = report x confirmation, each a function of malice and rating), so a queue of the head's
top reviews is the queue ``P(malicious | x)`` would fill; its scale is lower (a malicious review is
removed about two times in three), which is why the policy's hold threshold is set on the head's own
scale for a declared moderation capacity. Training on the reported reviews alone (moderation's
verdict, ``P(removed | reported, x)``, equally ordered) was tried and catches less: a third of
the rows for the same removals (``docs/decisions.md``). The yardsticks check the ranking against the
simulator's truth on every negative review of the test window, reported or not, and the scale
against the truth's removal probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

from features.build import build_signals
from features.io import read_table
from features.pit import published_as_of
from features.registry import signals
from rating.context import CATEGORICAL
from rating.heads import ServiceHead
from rating.review import REVIEW, REVIEW_CONTEXT, review_context
from training.evaluation.yardsticks import BOOTSTRAP_REPLICATES, INTERVAL, buyer_weight_blocks
from training.heads import EARLY_STOPPING, HEAD_PARAMS, MAX_ROUNDS
from training.model import log_rounds
from training.review_rows import SCREENED_RATING
from training.snapshots import TimeSplit

QUEUE_SHARE = 0.10  # the second moderation queue: 10% of the screened reviews
FLAG = "suspected_malicious_reviewer"  # the policy flag the head is measured against
LEARNING_RATE = 0.05
"""The head shares the service heads' LightGBM parameters (``training.heads.HEAD_PARAMS``) and early stopping."""


def context_of(rows: pd.DataFrame) -> np.ndarray:
    """The review context columns of review rows, via ``rating.review``."""
    return review_context(
        rows["rating"], rows["text_length"], rows["has_photos"], rows["days_after_delivery"],
        rows["order_amount"], rows["category"],
    )  # fmt: skip


def design(rows: pd.DataFrame, signal_names: list[str]) -> np.ndarray:
    """The head's input rows: the buyer's signals, then the review's context."""
    return np.hstack([rows[signal_names].to_numpy(np.float64), context_of(rows)])


def fit_review_head(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    signal_names: list[str],
    seed: int,
    progress: Callable[[str], None] = lambda _m: None,
) -> ServiceHead:
    """LightGBM on the review rows of ``train`` (label: removed as malicious), early stopping on ``valid``'s.

    Raises:
        ValueError: A window has no review removed as malicious (nothing to learn from).
    """
    fit_rows, stop_rows = train, valid
    for name, rows in (("training", fit_rows), ("validation", stop_rows)):
        if not rows["bad"].any():
            raise ValueError(f"review head: no review of the {name} window was removed as malicious")
    progress(
        f"review head: {len(fit_rows):,} reviews ({int(fit_rows['bad'].sum()):,} removed as malicious), "
        f"{len(stop_rows):,} for early stopping ..."
    )
    names = list(signal_names) + list(REVIEW_CONTEXT)
    params = {**HEAD_PARAMS, "learning_rate": LEARNING_RATE, "seed": seed}
    train_set = lgb.Dataset(
        design(fit_rows, signal_names), fit_rows["bad"].to_numpy(np.int64), feature_name=names,
        categorical_feature=[n for n in names if n in CATEGORICAL], free_raw_data=True,
    )  # fmt: skip
    valid_set = lgb.Dataset(
        design(stop_rows, signal_names), stop_rows["bad"].to_numpy(np.int64), reference=train_set
    )
    booster = lgb.train(
        params,
        train_set,
        MAX_ROUNDS,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False), log_rounds(progress, "review head")],
    )
    return ServiceHead(
        service=REVIEW,
        signal_names=list(signal_names),
        context_names=list(REVIEW_CONTEXT),
        base=booster,
        metrics={
            "best_iteration": float(booster.best_iteration),
            "train_rows": float(len(fit_rows)),
            "train_removed": float(fit_rows["bad"].sum()),
        },
    )


def flag_rule(policy_path: Path) -> tuple[str, str, float]:
    """``(signal, op, value)`` of the ``FLAG`` rule in a policy file.

    Raises:
        ValueError: The policy has no such flag, or it is not a ``>=`` or ``>`` threshold.
    """
    flags = yaml.safe_load(Path(policy_path).read_text()).get("flags") or []
    for rule in flags:
        if rule.get("code") == FLAG and rule.get("op") in (">=", ">"):
            return rule["signal"], rule["op"], float(rule["value"])
    raise ValueError(f"{policy_path}: flags has no {FLAG!r} threshold rule (op >= or >)")


def flagged(rows: pd.DataFrame, rule: tuple[str, str, float]) -> np.ndarray:
    """Whether the flag names each row's writer from the row's signals (a missing value never fires)."""
    signal, op, value = rule
    x = rows[signal].to_numpy(np.float64)
    return np.nan_to_num(x, nan=-np.inf) >= value if op == ">=" else np.nan_to_num(x, nan=-np.inf) > value


def flag_of_reviews(data: Path, split: TimeSplit, window: str, rule: tuple[str, str, float]) -> pd.DataFrame:
    """Every review posted in ``window`` (any rating) and whether the flag named its writer then.

    The flag's signal is built by ``features.build`` at the review's as_of (its posting floored to
    UTC midnight), as for the head's rows; only that signal and only the tables it reads.

    Returns:
        review_id, buyer_id, rating, flagged.
    """
    (signal,) = [s for s in signals() if s.name == rule[0]]
    table = read_table(data, "reviews")
    created = pd.to_datetime(table["created_at"], utc=True).astype("datetime64[us, UTC]")
    spine = pd.DataFrame(
        {"buyer_id": table["buyer_id"].to_numpy(np.int64), "as_of": published_as_of(created)}
    )
    keep = (split.assign_instant(spine["as_of"]) == window).to_numpy()
    spine, reviews = spine[keep].reset_index(drop=True), table[keep].reset_index(drop=True)
    built = build_signals({"reviews": table}, spine, [signal])
    return pd.DataFrame(
        {
            "review_id": reviews["review_id"].to_numpy(np.int64),
            "buyer_id": spine["buyer_id"].to_numpy(np.int64),
            "rating": reviews["rating"].to_numpy(np.int64),
            "flagged": flagged(built, rule),
        }
    )


def hold_threshold(p: np.ndarray, capacity: float) -> float:
    """The smallest probability held when moderation can hold a ``capacity`` share of ``p``'s reviews.

    Raises:
        ValueError: ``capacity`` is outside (0, 1] or there is no review.
    """
    if not 0 < capacity <= 1 or len(p) == 0:
        raise ValueError(
            f"capacity must be in (0, 1] with reviews to hold; got {capacity} and {len(p)} reviews"
        )
    k = max(1, int(np.floor(capacity * len(p))))
    return float(np.sort(np.asarray(p, np.float64))[::-1][k - 1])


@dataclass(frozen=True)
class Queues:
    """The screened reviews of one window and what each ranking would hold.

    Attributes:
        buyer: Writer of each review (the bootstrap resamples writers).
        p_malicious: The truth's probability that each review is malicious.
        queues: Name -> boolean mask of the reviews held.
        flag_size: Reviews in the flag's queue, every rating counted (``queues``).
    """

    buyer: np.ndarray
    p_malicious: np.ndarray
    queues: dict[str, np.ndarray]
    flag_size: int = 0


def top(score: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` highest scores (ties broken by position, reproducibly)."""
    held = np.zeros(len(score), dtype=bool)
    held[np.argsort(-np.asarray(score, np.float64), kind="stable")[:k]] = True
    return held


def queues(
    rows: pd.DataFrame,
    p_head: np.ndarray,
    p_true: np.ndarray,
    flag: np.ndarray,
    flag_size: int,
    hold_above: float | None,
) -> Queues:
    """The yardsticks' queues over screened review rows.

    The flag names writers, so its queue holds every review of a named writer, whatever the rating:
    ``flag_size`` reviews, of which the screened ones are ``flag`` (reviews of more stars are never
    malicious and hold no fair criticism, so they count only in the size). ``*_at_flag``: the head's
    and the truth's top ``flag_size`` screened reviews; ``*_at_flag_neg``: their top as many as the
    flag names among screened reviews (the stricter comparison); ``*_at_q10``: ``QUEUE_SHARE`` of the
    screened reviews; ``policy``: those whose head probability reaches ``hold_above``, when given.
    """
    k_neg = int(np.asarray(flag, bool).sum())
    k_share = max(1, int(np.floor(QUEUE_SHARE * len(rows))))
    out = {
        "flag": np.asarray(flag, bool),
        "head_at_flag": top(p_head, flag_size),
        "truth_at_flag": top(p_true, flag_size),
        "head_at_flag_neg": top(p_head, k_neg),
        "truth_at_flag_neg": top(p_true, k_neg),
        "head_at_q10": top(p_head, k_share),
        "truth_at_q10": top(p_true, k_share),
    }
    if hold_above is not None:
        out["policy"] = np.asarray(p_head) >= hold_above
    return Queues(rows["buyer_id"].to_numpy(np.int64), np.asarray(p_true, np.float64), out, int(flag_size))


def yardsticks(q: Queues, seed: int, replicates: int = BOOTSTRAP_REPLICATES) -> dict[str, float]:
    """Fixed-name metrics with 95% bootstrap intervals (``_ci_low``, ``_ci_high``) over writers.

    ``review_<queue>_caught``: the truth-expected share of malicious reviews the queue holds;
    ``review_<queue>_honest_held``: the expected share of honest screened reviews it holds; ``_size``
    its reviews (the flag's: every rating; ``review_flag_screened_size`` its screened ones);
    ``review_head_vs_flag_at_flag(_neg)`` and ``review_head_vs_truth_at_flag(_neg)`` the ratios of
    what the head catches to what the flag and the truth catch at the flag's queue size (``_neg``:
    counting only the screened reviews the flag names).
    """
    p = q.p_malicious
    names = list(q.queues)
    values: dict[str, list[np.ndarray]] = {}
    with np.errstate(divide="ignore", invalid="ignore"):  # a replicate may draw none of a queue's writers
        for w in buyer_weight_blocks(q.buyer, replicates, seed):
            mal, honest = w @ p, w @ (1 - p)
            for name in names:
                held = q.queues[name]
                values.setdefault(f"review_{name}_caught", []).append((w[:, held] @ p[held]) / mal)
                values.setdefault(f"review_{name}_honest_held", []).append(
                    (w[:, held] @ (1 - p[held])) / honest
                )
        stacked = {k: np.concatenate(v) for k, v in values.items()}
        stacked["review_head_vs_flag_at_flag"] = (
            stacked["review_head_at_flag_caught"] / stacked["review_flag_caught"]
        )
        stacked["review_head_vs_truth_at_flag"] = (
            stacked["review_head_at_flag_caught"] / stacked["review_truth_at_flag_caught"]
        )
        stacked["review_head_vs_flag_at_flag_neg"] = (
            stacked["review_head_at_flag_neg_caught"] / stacked["review_flag_caught"]
        )
        stacked["review_head_vs_truth_at_flag_neg"] = (
            stacked["review_head_at_flag_neg_caught"] / stacked["review_truth_at_flag_neg_caught"]
        )
    out = {}
    for name, v in stacked.items():
        finite = v[1:][np.isfinite(v[1:])]
        low, high = np.percentile(finite, INTERVAL) if len(finite) else (np.nan, np.nan)
        out.update({name: float(v[0]), f"{name}_ci_low": float(low), f"{name}_ci_high": float(high)})
    for name in names:
        out[f"review_{name}_size"] = float(q.queues[name].sum())
    out["review_flag_screened_size"] = out["review_flag_size"]
    out["review_flag_size"] = float(q.flag_size)  # every review of a named writer, whatever its rating
    out["review_screened"] = float(len(p))
    out["review_expected_malicious"] = float(p.sum())
    return out


def calibration(
    p_head: np.ndarray, rows: pd.DataFrame, p_true_removed: np.ndarray | None
) -> dict[str, float]:
    """Removals the head expects on review rows, against the realised ones (and the truth's, when given)."""
    out = {
        "review_rows": float(len(rows)),
        "review_removed": float(rows["bad"].to_numpy(bool).sum()),
        "review_head_expected_removed": float(np.asarray(p_head).sum()),
    }
    if p_true_removed is not None:
        out["review_truth_expected_removed"] = float(np.asarray(p_true_removed).sum())
    return out


def truth_of(data: Path, rows: pd.DataFrame) -> np.ndarray | None:
    """The truth's ``p_malicious`` of each review row, or None when the export has no truth.

    Raises:
        ValueError: The truth lacks some of the rows (the message counts them).
    """
    path = Path(data) / "truth" / "review_opportunities.parquet"
    if not path.exists():
        return None
    truth = pd.read_parquet(path, columns=["review_id", "p_malicious"])
    p = rows[["review_id"]].merge(truth, on="review_id", how="left", validate="1:1")["p_malicious"].to_numpy()
    if np.isnan(p).any():
        raise ValueError(f"{path}: no p_malicious for {int(np.isnan(p).sum()):,} of {len(p):,} review rows")
    return p


@dataclass(frozen=True)
class ReviewEvaluation:
    """The review head judged on the test window.

    Attributes:
        hold_above: The hold threshold proposed on the validation window for the capacity.
        capacity: The declared moderation capacity (a share of the screened reviews).
        metrics: Fixed-name metrics (``yardsticks``, ``calibration``) with intervals.
    """

    hold_above: float
    capacity: float
    metrics: dict[str, float]


def moderation_capacity(policy_path: Path) -> float:
    """The declared moderation capacity of a policy file (``reviews.moderation_capacity``).

    Raises:
        ValueError: The policy declares none.
    """
    reviews = yaml.safe_load(Path(policy_path).read_text()).get("reviews") or {}
    if "moderation_capacity" not in reviews:
        raise ValueError(f"{policy_path}: reviews.moderation_capacity is not declared")
    return float(reviews["moderation_capacity"])


def evaluate_review_head(
    head: ServiceHead,
    frame: pd.DataFrame,
    split: TimeSplit,
    data: Path,
    policy_path: Path,
    seed: int,
) -> ReviewEvaluation:
    """Propose the hold threshold on the validation window's screened reviews for the policy's
    capacity, and measure the head, the flag and the truth on the test window's.

    Args:
        head: The fitted review head.
        frame: Review rows with signals (``review_rows`` plus the signals).
        split: The time split (a review belongs to the window of its as_of).
        data: The export (its ``truth/`` gives ``p_malicious``; without truth only calibration).
        policy_path: The reviewed policy file (the flag and the moderation capacity).
        seed: Bootstrap seed.
    """
    from simulator.reviews import removal_prob  # the truth's removal probability, for the check only

    capacity = moderation_capacity(policy_path)
    valid, test = (split.opportunities_in(frame, w) for w in ("valid", "test"))
    screened_valid = valid[valid["rating"] <= SCREENED_RATING]
    hold_above = hold_threshold(_probability(head, screened_valid), capacity)
    p_test = _probability(head, test)
    p_true = truth_of(data, test)
    metrics = calibration(
        p_test, test, None if p_true is None else removal_prob(p_true, test["rating"].to_numpy())
    )
    screened = (test["rating"] <= SCREENED_RATING).to_numpy()
    if p_true is not None:
        rows = test[screened].reset_index(drop=True)
        named = flag_of_reviews(data, split, "test", flag_rule(policy_path))
        flag = rows[["review_id"]].merge(named, on="review_id", how="left", validate="1:1")["flagged"]
        q = queues(rows, p_test[screened], p_true[screened], flag.fillna(False).to_numpy(bool),
                   int(named["flagged"].sum()), hold_above)  # fmt: skip
        metrics.update(yardsticks(q, seed))
    metrics.update({"review_hold_above": hold_above, "review_moderation_capacity": capacity})
    return ReviewEvaluation(hold_above=hold_above, capacity=capacity, metrics=metrics)


def _probability(head: ServiceHead, rows: pd.DataFrame) -> np.ndarray:
    return head.probability(rows[head.signal_names].to_numpy(np.float64), context_of(rows))
