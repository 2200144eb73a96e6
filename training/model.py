"""Fit the rating: LightGBM with early stopping and monotone constraints, then calibration,
star cut-points and the reason table, assembled into a ``RatingModel``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

from features.hard_facts import FLOOR_FACTS, HARD_FACTS
from rating.artifact import RatingModel
from rating.calibrate import fit_platt
from rating.reasons import fit_catalogue, fit_reason_table
from rating.scale import N_STARS, ScoreScale, p_to_score

DEFAULT_PARAMS: dict = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 500,
    "feature_fraction": 1.0,  # no column or row sampling: a retrain on the same rows gives the same rating
    "bagging_fraction": 1.0,  # and the same reasons (docs/evaluation.md, "Reasons a buyer can act on")
    "bagging_freq": 0,
    "lambda_l2": 10.0,
    "max_bin": 63,
    "monotone_constraints_method": "intermediate",
    "deterministic": True,
    "force_row_wise": True,
    "num_boost_round": 800,
    "early_stopping_rounds": 50,
    "num_threads": 2,
    "verbose": -1,
    "seed": 7,
}

EVAL_EVERY = 50
"""Boosting rounds between two progress lines."""

# Share of buyers in each star band, worst first, used to place the cut-points.
STAR_SHARES: tuple[float, ...] = (0.05, 0.15, 0.30, 0.30, 0.20)
MIN_BAND_ROWS = 100  # a band with fewer validation rows makes the cut-points unreliable


class StarCutError(ValueError):
    """The star bands cannot be made to hold enough buyers with a strictly falling bad rate."""


@dataclass(frozen=True)
class Dataset:
    """A signal matrix with its labels: ``X`` (n, n_signals) float32, ``y`` (n,) in [0, 1], and
    optional row weights ``w`` (n,) >= 0.

    A fractional ``y`` with weights is a binomial rate: the per-opportunity target is the share of a
    row's ``w`` opportunities that went bad (``training.labels``); 0/1 labels are ordinary outcomes.
    """

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],):
            raise ValueError(
                f"X must be 2-d and y 1-d of the same length, got {self.X.shape} and {self.y.shape}"
            )
        if self.w is not None and (self.w.shape != self.y.shape or (self.w < 0).any()):
            raise ValueError(f"w must be {self.y.shape} non-negative weights, got {self.w.shape}")

    @property
    def fractional(self) -> bool:
        """True when some label lies strictly between 0 and 1 (a rate, not an outcome)."""
        return bool(np.any((self.y > 0) & (self.y < 1)))

    def weights(self) -> np.ndarray:
        """The row weights (ones when none were given)."""
        return np.ones(len(self.y)) if self.w is None else np.asarray(self.w, dtype=np.float64)


def split_params(params: dict) -> tuple[dict, int, int]:
    """Separate LightGBM parameters from the round budget and the early-stopping patience."""
    p = dict(params)
    rounds = int(p.pop("num_boost_round"))
    patience = int(p.pop("early_stopping_rounds"))
    return p, rounds, patience


def log_rounds(progress: Callable[[str], None], what: str, every: int = EVAL_EVERY) -> Callable:
    """A LightGBM callback printing ``what``, the round and the validation loss every ``every`` rounds."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        done = env.iteration + 1
        if done % every == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0][:4]
            progress(f"{what}: round {done} (at most {env.end_iteration}), validation {metric} {value:.5f}")

    callback.order = 30  # after early stopping has looked at the round
    return callback


def fit_booster(
    train: Dataset,
    valid: Dataset,
    signal_names: list[str],
    monotone: list[int],
    params: dict,
    progress: Callable[[str], None] | None = None,
) -> lgb.Booster:
    """Train LightGBM on ``train`` with early stopping on ``valid``.

    Args:
        train: Older snapshots.
        valid: Later snapshots, used only for early stopping.
        signal_names: Feature names, in column order.
        monotone: One of -1/0/+1 per signal (LightGBM ``monotone_constraints``).
        params: ``DEFAULT_PARAMS`` merged with overrides.
        progress: When given, called with a line every ``EVAL_EVERY`` rounds.
    """
    lgb_params, rounds, patience = split_params(params)
    lgb_params["monotone_constraints"] = list(monotone)
    if train.fractional and lgb_params.get("objective") == "binary":
        lgb_params["objective"] = "cross_entropy"  # the same log-odds, for labels that are rates
    dtrain = lgb.Dataset(
        train.X, train.y, weight=train.w, feature_name=list(signal_names), free_raw_data=True
    )
    dvalid = lgb.Dataset(valid.X, valid.y, weight=valid.w, reference=dtrain)
    return lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=rounds,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(patience, verbose=False)]
        + ([log_rounds(progress, "rating")] if progress else []),
    )


def star_cuts(
    scores: np.ndarray, y: np.ndarray, shares: tuple[float, ...] = STAR_SHARES, w: np.ndarray | None = None
) -> tuple[float, ...]:
    """Score cut-points giving each star about ``shares`` of the buyers, checked for a falling bad rate
    (weighted by ``w``: per opportunity when ``y`` is the per-opportunity rate and ``w`` the exposure).

    Raises:
        StarCutError: a band holds fewer than ``MIN_BAND_ROWS`` rows or its bad rate does not
            strictly fall as the stars rise.
    """
    if len(shares) != N_STARS or abs(sum(shares) - 1) > 1e-9:
        raise ValueError(f"shares must be {N_STARS} numbers summing to 1, got {shares}")
    qs = np.cumsum(shares)[:-1]
    cuts = np.quantile(np.asarray(scores, dtype=np.float64), qs, method="higher")
    cuts = tuple(float(np.rint(c)) for c in cuts)
    if len(set(cuts)) != len(cuts):
        raise StarCutError(f"scores are too concentrated to form {N_STARS} distinct star bands: cuts {cuts}")
    stars = 1 + np.searchsorted(np.asarray(cuts), scores, side="right")
    weight = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    rates = []
    for s in range(1, N_STARS + 1):
        band = stars == s
        if band.sum() < MIN_BAND_ROWS:
            raise StarCutError(f"star {s} holds {band.sum()} rows, fewer than {MIN_BAND_ROWS}")
        rates.append(float(np.sum(y[band] * weight[band]) / max(np.sum(weight[band]), 1e-12)))
    if any(b >= a for a, b in zip(rates, rates[1:], strict=False)):
        raise StarCutError(f"bad rate does not strictly fall as stars rise: {np.round(rates, 4).tolist()}")
    return cuts


def fit_rating(
    train: Dataset,
    valid: Dataset,
    signal_names: list[str],
    reason_text: dict[str, str],
    monotone: list[int],
    params: dict,
    scale: ScoreScale | None = None,
    reason_sample: int = 20_000,
    seed: int = 7,
    timings: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
    booster_fit: Callable[..., lgb.Booster] = fit_booster,
    reason_codes: list[str] | None = None,
    catalogue_text: dict[str, str] | None = None,
) -> RatingModel:
    """Train the booster, calibrate on ``valid``, cut stars on ``valid``, fit the reason table and,
    given ``reason_codes``, the reason catalogue (``rating.reasons.fit_catalogue``).

    Args:
        timings: When given, receives the seconds spent in ``lgb.train`` (``"lgb_train"``) and
            in everything after it (``"calibrate_and_reasons"``).
        progress: When given, called with a line every ``EVAL_EVERY`` boosting rounds.
        booster_fit: What trains the booster, called as ``fit_booster`` is (the default; on a
            cluster ``training.on_cluster.fit_booster``); everything after it is the same.
        reason_codes: Per signal, its reason code ('' never a reason; ``features.registry.reason_codes``).
        catalogue_text: Code -> buyer-facing text (``features.registry.reason_catalogue``).

    Returns:
        A ``RatingModel`` holding the booster.
    """
    scale = scale or ScoreScale()
    started = time.perf_counter()
    booster = booster_fit(train, valid, signal_names, monotone, params, progress)
    trained = time.perf_counter()
    raw_valid = booster.predict(valid.X, raw_score=True)
    calibration = fit_platt(raw_valid, valid.y, w=valid.w)
    p_valid = calibration.apply(raw_valid)
    cuts = star_cuts(np.rint(p_to_score(p_valid, scale)), valid.y, w=valid.w)
    rng = np.random.default_rng(seed)
    sample = train.X[rng.choice(train.X.shape[0], size=min(reason_sample, train.X.shape[0]), replace=False)]
    contrib = booster.predict(sample, pred_contrib=True)[:, :-1]  # last column is the bias
    table = fit_reason_table(sample, contrib)
    catalogue = None
    if reason_codes is not None:
        points = scale.factor * calibration.slope  # score points per unit of the booster's log-odds
        catalogue = fit_catalogue(table, sample, reason_codes, catalogue_text or {}, points)
    if timings is not None:
        timings["lgb_train"] = trained - started
        timings["calibrate_and_reasons"] = time.perf_counter() - trained
    return RatingModel(
        signal_names=signal_names,
        reason_text=reason_text,
        calibration=calibration,
        scale=scale,
        cuts=cuts,
        reason_table=table,
        booster=booster,
        caps=tuple(c for c in HARD_FACTS if c in signal_names),
        floors=tuple(c for c in FLOOR_FACTS if c in signal_names),
        catalogue=catalogue,
    )


def seed_free(params: dict, rows: int) -> bool:
    """Whether the booster LightGBM fits on ``rows`` rows with ``params`` is the same for every seed.

    True when training is deterministic and samples nothing: no column sampling, no bagging, no
    extra trees, and no more rows than the bin-construction sample (beyond it the seed draws the
    rows that place the bin edges).
    """
    p = {**DEFAULT_PARAMS, **params}
    bagging = (
        p.get("bagging_freq", 0) > 0
        and min(
            p.get("bagging_fraction", 1.0),
            p.get("pos_bagging_fraction", 1.0),
            p.get("neg_bagging_fraction", 1.0),
        )
        < 1.0
    )
    return bool(
        p.get("deterministic", False)
        and p.get("feature_fraction", 1.0) >= 1.0
        and p.get("feature_fraction_bynode", 1.0) >= 1.0
        and not bagging
        and not p.get("extra_trees", False)
        and rows <= p.get("bin_construct_sample_cnt", 200_000)
    )


def checked_monotone(
    X: np.ndarray,
    y: np.ndarray,
    directions: list[int],
    tolerance: float = 0.02,
    sample: int = 50_000,
    seed: int = 7,
    kept: list[bool] | None = None,
) -> tuple[list[int], list[int]]:
    """Keep each declared risk direction as a monotone constraint unless the data clearly contradicts it.

    A signal's univariate AUC on its non-missing rows says which way it moves the risk; when that
    disagrees with the registry's direction by more than ``tolerance`` the constraint is dropped (0).
    Columns flagged in ``kept`` (the volume of activity, which may never lower the rating) keep
    their direction whatever the data say.

    Returns:
        The constraints, and the column indices whose constraint was dropped.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(X.shape[0], size=min(sample, X.shape[0]), replace=False)
    Xs, ys = X[rows], np.asarray(y)[rows]
    constraints, dropped = [], []
    for j, d in enumerate(directions):
        x = Xs[:, j]
        present = ~np.isnan(x)
        yp = ys[present]
        if d == 0 or (kept is not None and kept[j]) or yp.min(initial=0) == yp.max(initial=0):
            constraints.append(int(d))
            continue
        auc = roc_auc_score(yp, x[present]) if np.ptp(x[present]) > 0 else 0.5
        if (auc - 0.5) * d < -tolerance:
            constraints.append(0)
            dropped.append(j)
        else:
            constraints.append(int(d))
    return constraints, dropped
