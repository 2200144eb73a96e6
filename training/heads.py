"""Fit the service heads (``rating.heads``) on one row per opportunity at its decision instant.

Presale head: LightGBM on the buyer's signals and the presale's context over every presale of
the training window, held or shipped early (``ctx_shipped_early`` says which); early stopping
on the validation window. It boosts from the rating's margin (``fit_base``'s ``prior``:
``init_score`` = ``c + w x`` the rating booster's raw score of each row's signals, ``w`` = 1, ``c``
fitted), so its trees learn what a presale adds to the buyer's risk rather than the buyer again
from a few hundred defaults. History ships early only what the legacy rule approved and a small
random exploration share, so the base model barely sees the moral hazard of shipping early.
The uplift prices it: ``logit = base(shipped=1) + a``, the shift ``a`` fitted by logistic
regression (the base as offset) on the validation window's presales shipped early at random among
the legacy rule's declines (exploration: the population a policy extends into; ``add_shift``). A
slope on a buyer-level opportunism proxy (``add_uplift``: LightGBM on signals for whether a refund
request of this buyer turns into a loss, ``a + b * max(proxy, knot)``) is kept for the benches that
compare it; fitted on the explored presales' few defaults it underpriced the approvals. Refund head: LightGBM on signals and the
request's context over every refund request (whether a request goes bad does not depend on paying it fast: the buyer's behaviour is the
outcome), and its *normal arm*: LightGBM on the context of the training window's bad requests that
history handled normally, for the share of them normal handling paid anyway (``paid``); the head
prices what paying fast adds, ``P(bad) x (1 - P(paid normally | bad))`` (``rating.heads``).
``docs/decisions.md`` has the figures.
"""

from __future__ import annotations

from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from rating.calibrate import newton_logistic
from rating.context import (
    CATEGORICAL,
    PRESALE_CONTEXT,
    REFUND_CONTEXT,
    TREATMENT,
    presale_context,
    refund_context,
)
from rating.heads import ServiceHead, flat_below
from training.model import log_rounds
from training.opportunities import FAST_REFUND, PRESALE, legacy_decisions
from training.snapshots import TimeSplit

HEAD_PARAMS = {
    "objective": "binary",
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "verbose": -1,
    "num_threads": 2,
}
WEIGHT = "weight"  # an opportunity row's training weight, when it has one (``training.propensity``)
PROXY = "opportunism proxy"
NORMAL = "normal handling"  # the refund head's normal arm
LEARNING_RATE = {FAST_REFUND: 0.1, PRESALE: 0.06, PROXY: 0.06, NORMAL: 0.06}
"""Per model. The refund head at 0.1 stops at 83 trees, at 0.06 at 180 and at 0.03 at 533, for the same
test loss (within the interval): exact reasons cost the service time per tree. The presale head and
the proxy behind its uplift stay at 0.06: at 0.1 the presale head stopped at 30 trees and its loss
at the rule's volume rose from 0.497 to 0.521 of the rule's (default run)."""
MAX_ROUNDS = 2000
EARLY_STOPPING = 50
MIN_UPLIFT_DEFAULTS = 10  # defaults among shipped validation presales needed to fit the proxy's slope
UPLIFT_ROWS = "explored"
"""Which validation presales the uplift is fitted on: ``explored`` (shipped early, not by the legacy
rule) or ``shipped`` (every one shipped early). The legacy rule's own sit at the lowest proxy values
with almost no defaults, and pulled a fitted line's low end below zero: shipping early then lowered
the price of exactly the low-proxy buyers the policy approves (``docs/decisions.md``, 2026-12-07)."""
KNOT_QUANTILE: float | None = (
    0.5  # where the uplift's slope starts, among the fitted presales' proxy log-odds
)
CONTEXT = {PRESALE: PRESALE_CONTEXT, FAST_REFUND: REFUND_CONTEXT}
PRIOR_WEIGHT: float | None = 1.0
"""``w`` of the rating's margin a stacked presale base boosts from (None: fitted, ``prior_line``)."""


def context_matrix(service: str, rows: pd.DataFrame) -> np.ndarray:
    """The context columns of opportunity rows (``training.opportunities``), via ``rating.context``."""
    if service == PRESALE:
        return presale_context(
            rows["amount"], rows["deposit"], rows["category"], rows["due_in_days"], rows["shipped"]
        )
    return refund_context(
        rows["amount"], rows["order_amount"], rows["kind"], rows["reason"], rows["photos"], rows["category"],
        rows["order_age_days"],
    )  # fmt: skip


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    names: list[str],
    seed: int,
    progress: Callable[[str], None],
    what: str,
    overrides: dict | None = None,
    weight: np.ndarray | None = None,
    weight_valid: np.ndarray | None = None,
    init_score: np.ndarray | None = None,
    init_score_valid: np.ndarray | None = None,
) -> lgb.Booster:
    """One model of ``LEARNING_RATE[what]`` (a service or ``PROXY``), early stopping on the validation rows;
    ``overrides`` replace any of the parameters (``bench/bench_ceiling.py`` tries variants and
    fits the truth's probabilities with ``objective="cross_entropy"``); ``weight`` and
    ``weight_valid`` weigh the rows (``training.propensity``); ``init_score`` and ``init_score_valid``
    are log-odds the trees boost from (the booster's own raw score then leaves them out)."""
    categorical = [n for n in names if n in CATEGORICAL]
    params = {**HEAD_PARAMS, "learning_rate": LEARNING_RATE[what], "seed": seed, **(overrides or {})}
    train = lgb.Dataset(
        X, y, weight=weight, init_score=init_score, feature_name=names, categorical_feature=categorical,
        free_raw_data=True,
    )  # fmt: skip
    valid = lgb.Dataset(X_valid, y_valid, weight=weight_valid, init_score=init_score_valid, reference=train)
    return lgb.train(
        params,
        train,
        MAX_ROUNDS,
        valid_sets=[valid],
        callbacks=[
            lgb.early_stopping(EARLY_STOPPING, verbose=False),
            log_rounds(progress, what if what in (PROXY, NORMAL) else f"{what} head"),
        ],
    )


def _weight(rows: pd.DataFrame) -> np.ndarray | None:
    """The rows' ``weight`` column, if they have one."""
    return rows[WEIGHT].to_numpy(np.float64) if WEIGHT in rows else None


def design(service: str, rows: pd.DataFrame, signal_names: list[str]) -> np.ndarray:
    """A head's input rows: the buyer's signals, then the opportunity's context."""
    return np.hstack([rows[signal_names].to_numpy(np.float64), context_matrix(service, rows)])


def prior_line(
    margin: np.ndarray, rows: pd.DataFrame, weight: float | None = PRIOR_WEIGHT
) -> tuple[float, float]:
    """``(c, w)`` of the log-odds ``c + w * margin`` a base boosts from: by logistic regression of the
    rows' ``bad`` on the prior's raw ``margin``, ``w`` fixed at ``weight`` (None: fitted too), weighted
    by their ``weight`` column if they have one. ``c`` moves the rating's per-opportunity log-odds to
    the service's rate; without both outcomes among the rows, ``(0, weight or 1)``.
    """
    y = rows["bad"].to_numpy(np.float64)
    w = 1.0 if weight is None else float(weight)
    if not 0 < y.sum() < len(y):
        return 0.0, w
    ones = np.ones((len(y), 1))
    if weight is None:
        c, w = newton_logistic(np.column_stack([ones, margin]), y, weight=_weight(rows))
        return float(c), float(w)
    return float(newton_logistic(ones, y, offset=w * margin, weight=_weight(rows))[0]), w


def fit_base(
    service: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    signal_names: list[str],
    seed: int,
    progress: Callable[[str], None] = lambda _m: None,
    overrides: dict | None = None,
    prior: lgb.Booster | None = None,
    prior_weight: float | None = PRIOR_WEIGHT,
    margins: tuple[np.ndarray, np.ndarray] | None = None,
) -> ServiceHead:
    """The head's base LightGBM, early stopping on the validation window; no uplift yet.
    ``overrides`` replace any of its LightGBM parameters (the learning rate included); a
    ``weight`` column of the rows weighs them (``training.propensity``).

    With a ``prior`` (the rating's booster, over ``signal_names``) the base boosts from ``c + w x`` its
    raw margin on each row (``prior_line``; ``prior_weight``: ``w``, None to fit it), and the head adds
    it back when it prices (``rating.heads``). ``margins``: the train and valid rows' margins to boost
    from instead of the prior's own (cross-fitted ones, where the prior saw the training rows).
    """
    names = list(signal_names) + list(CONTEXT[service])
    line, init = (0.0, 1.0), (None, None)
    if prior is not None:
        if margins is None:
            margins = tuple(
                prior.predict(r[signal_names].to_numpy(np.float64), raw_score=True) for r in (train, valid)
            )
        line = prior_line(margins[0], train, prior_weight)
        init = tuple(line[0] + line[1] * m for m in margins)
    booster = fit_model(
        design(service, train, signal_names), train["bad"].to_numpy(np.int64),
        design(service, valid, signal_names), valid["bad"].to_numpy(np.int64), names, seed,
        progress, service, overrides, _weight(train), _weight(valid), *init,
    )  # fmt: skip
    return ServiceHead(
        service=service,
        signal_names=list(signal_names),
        context_names=list(CONTEXT[service]),
        base=booster,
        treatment=TREATMENT if service == PRESALE else None,
        metrics={"best_iteration": float(booster.best_iteration), "train_rows": float(len(train))},
        prior=prior,
        prior_line=line,
    )


def add_uplift(
    head: ServiceHead,
    proxy: lgb.Booster,
    valid: pd.DataFrame,
    knot_quantile: float | None = KNOT_QUANTILE,
    fitted_on: str = UPLIFT_ROWS,
) -> ServiceHead:
    """Fit ``a``, ``b`` of the uplift ``a + b * max(z, knot)`` on the validation presales that were
    shipped early, by exploration only or all of them (``fitted_on``: ``UPLIFT_ROWS``), weighted by
    their ``weight`` column if they have one (``training.propensity``), with the knot at
    ``knot_quantile`` of their proxy log-odds ``z`` (None: no knot, linear).

    With fewer than ``MIN_UPLIFT_DEFAULTS`` defaults among them only the shift ``a`` is fitted;
    with none (or only defaults) the uplift stays 0 and the base alone prices shipping early
    (``metrics["uplift_defaults"]`` says which).
    """
    mask = valid["shipped"].to_numpy(bool, copy=True)
    if fitted_on == "explored":
        mask &= ~legacy_decisions(PRESALE, valid)
    elif fitted_on != "shipped":
        raise ValueError(f"fitted_on: {fitted_on!r}; expected 'shipped' or 'explored'")
    shipped = valid[mask].reset_index(drop=True)
    signals = shipped[head.signal_names].to_numpy(np.float64)
    base = head.logit(signals, context_matrix(PRESALE, shipped))  # no proxy yet: the base, shipped early
    z = proxy.predict(signals, raw_score=True)
    y = shipped["bad"].to_numpy(np.float64)
    w = _weight(shipped)
    defaults = int(y.sum())
    knot = None if knot_quantile is None or not len(z) else float(np.quantile(z, knot_quantile))
    x = flat_below(z, knot)
    if MIN_UPLIFT_DEFAULTS <= defaults < len(y) and np.ptp(x) > 0:
        a, b = newton_logistic(np.column_stack([np.ones_like(x), x]), y, offset=base, weight=w)
    elif 0 < defaults < len(y):  # too few to estimate a slope: the shift only
        a, b = float(newton_logistic(np.ones((len(y), 1)), y, offset=base, weight=w)[0]), 0.0
    else:  # nothing to learn from: the base alone prices shipping early
        a, b = 0.0, 0.0
    head.proxy = proxy
    head.uplift = (float(a), float(b))
    head.knot = knot
    head.metrics.update({"uplift_rows": float(len(y)), "uplift_defaults": float(defaults)})
    return head


def add_shift(head: ServiceHead, valid: pd.DataFrame) -> ServiceHead:
    """Fit the presale head's constant uplift ``a`` (no proxy, ``b`` 0): the log-odds shipping early
    adds to the base, by logistic regression with the base as offset on the validation presales shipped
    early by exploration (not by the legacy rule: their buyers are the ones a policy extends to),
    weighted by their ``weight`` column if they have one. With no default among them, or only
    defaults, the uplift stays 0 and the base alone prices shipping early.

    Why not the proxy's slope (``add_uplift``): judged with the truth on the default run's test window,
    the searched policy approved as much money at the same loss per unit either way (3.94x the rule's
    at 1.24x with the slope, 3.75x at 1.25x without: within the interval), but with the slope the
    head priced its approvals at 0.63 of the truth's loss and without it at 1.12
    (``docs/decisions.md``, 2026-12-07, sixth session). A slope fitted on the explored presales' few
    defaults underprices the cheap buyers the policy approves.
    """
    mask = valid["shipped"].to_numpy(bool, copy=True) & ~legacy_decisions(PRESALE, valid)
    explored = valid[mask].reset_index(drop=True)
    y = explored["bad"].to_numpy(np.float64)
    head.proxy, head.knot, head.uplift = None, None, (0.0, 0.0)
    base = head.logit(explored[head.signal_names].to_numpy(np.float64), context_matrix(PRESALE, explored))
    if 0 < y.sum() < len(y):
        a = float(newton_logistic(np.ones((len(y), 1)), y, offset=base, weight=_weight(explored))[0])
        head.uplift = (a, 0.0)
    head.metrics.update({"uplift_rows": float(len(y)), "uplift_defaults": float(y.sum())})
    return head


def add_normal_arm(
    head: ServiceHead,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    seed: int,
    progress: Callable[[str], None] = lambda _m: None,
) -> ServiceHead:
    """Fit the refund head's normal arm: on the bad requests history handled normally (not fast), does
    normal handling pay them (``paid``), from the request's context; early stopping on the validation
    window's. Without both outcomes among them the head keeps no normal arm (it then prices the whole
    loss if paid fast; ``metrics["normal_rows"]`` says how many there were)."""
    rows = {
        w: r[r["bad"].to_numpy(bool) & ~r["fast"].to_numpy(bool)]
        for w, r in (("train", train), ("valid", valid))
    }
    y = {w: r["paid"].to_numpy(np.int64) for w, r in rows.items()}
    head.metrics.update(
        {
            "normal_rows": float(len(y["train"])),
            "normal_paid_share": float(y["train"].mean()) if len(y["train"]) else 0.0,
        }
    )
    if any(len(np.unique(v)) < 2 for v in y.values()):
        return head
    names = list(CONTEXT[head.service])
    head.normal = fit_model(
        context_matrix(head.service, rows["train"]), y["train"],
        context_matrix(head.service, rows["valid"]), y["valid"], names, seed, progress, NORMAL,
    )  # fmt: skip
    head.metrics["normal_best_iteration"] = float(head.normal.best_iteration)
    return head


def fit_heads(
    frames: dict[str, pd.DataFrame],
    split: TimeSplit,
    signal_names: list[str],
    seed: int,
    progress: Callable[[str], None] = lambda _m: None,
    rating: lgb.Booster | None = None,
) -> dict[str, ServiceHead]:
    """Both service heads from the assembled opportunity frames (``training.dataset``); the presale
    base boosts from the ``rating`` booster's margin when one is given (``fit_base``'s ``prior``)."""
    heads = {}
    windows = {
        s: (split.opportunities_in(frames[s], "train"), split.opportunities_in(frames[s], "valid"))
        for s in (PRESALE, FAST_REFUND)
    }
    for service in (FAST_REFUND, PRESALE):
        train, valid = windows[service]
        progress(f"{service} head: {len(train):,} training opportunities ({int(train['bad'].sum()):,} losses), "
                 f"{len(valid):,} for early stopping ...")  # fmt: skip
        prior = rating if service == PRESALE else None
        heads[service] = fit_base(service, train, valid, signal_names, seed, progress, prior=prior)
    refund_train, refund_valid = windows[FAST_REFUND]
    progress("refund head's normal arm: what normal handling pays of the bad requests ...")
    heads[FAST_REFUND] = add_normal_arm(heads[FAST_REFUND], refund_train, refund_valid, seed, progress)
    progress("presale uplift: the shift shipping early adds, fitted on the exploration presales ...")
    heads[PRESALE] = add_shift(heads[PRESALE], windows[PRESALE][1])
    return heads


def fit_proxy(
    refund_train: pd.DataFrame,
    refund_valid: pd.DataFrame,
    signal_names: list[str],
    seed: int,
    progress: Callable[[str], None] = lambda _m: None,
) -> lgb.Booster:
    """The opportunism proxy ``add_uplift`` can slope the uplift on: LightGBM on the buyer's signals for
    whether a refund request turns into a loss, early stopping on the validation window's requests."""
    return fit_model(
        refund_train[signal_names].to_numpy(np.float64), refund_train["bad"].to_numpy(np.int64),
        refund_valid[signal_names].to_numpy(np.float64), refund_valid["bad"].to_numpy(np.int64),
        list(signal_names), seed, progress, PROXY,
    )  # fmt: skip
