"""A small but real rating model on synthetic data, for tests of the packages that consume it."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np

from features import registry
from rating.artifact import RatingModel
from rating.context import PRESALE_CONTEXT, REFUND_CONTEXT, TREATMENT
from rating.heads import ServiceHead
from rating.review import REVIEW, REVIEW_CONTEXT
from training.model import DEFAULT_PARAMS, Dataset, fit_rating
from training.opportunities import FAST_REFUND, PRESALE
from training.package import save_rating


def synthetic_dataset(signal_names: list[str], n: int, seed: int) -> Dataset:
    """Rows whose risk rises with the first half of the signals and falls with the rest."""
    rng = np.random.default_rng(seed)
    k = len(signal_names)
    X = rng.gamma(1.0, 1.0, size=(n, k)).astype(np.float32)
    X[rng.random((n, k)) < 0.05] = np.nan
    weights = np.where(np.arange(k) < k // 2, 0.6, -0.4) / np.sqrt(k / 4)
    logit = np.nan_to_num(X, nan=1.0) @ weights - 3.2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return Dataset(X=X, y=y)


def make_tiny_rating(signal_names: list[str], seed: int = 0, n: int = 20000) -> RatingModel:
    """Fit a real ``RatingModel`` on synthetic data over ``signal_names`` (a few seconds)."""
    train = synthetic_dataset(signal_names, n, seed)
    valid = synthetic_dataset(signal_names, n // 2, seed + 1)
    k = len(signal_names)
    monotone = [1 if j < k // 2 else -1 for j in range(k)]
    params = {**DEFAULT_PARAMS, "num_boost_round": 60, "early_stopping_rounds": 10, "min_data_in_leaf": 50}
    texts = {name: f"Reason text for {name}" for name in signal_names}
    if not set(signal_names) <= set(registry.signal_names()):  # made-up signals: one reason per signal
        return fit_rating(train, valid, signal_names, texts, monotone, params, seed=seed)
    codes = registry.reason_codes(signal_names)  # registry signals: the reason catalogue
    return fit_rating(
        train, valid, signal_names, texts, monotone, params, seed=seed, reason_codes=codes,
        catalogue_text=registry.reason_catalogue(signal_names),
    )  # fmt: skip


def tiny_heads(
    signal_names: list[str], seed: int = 0, n: int = 8000, rating: lgb.Booster | None = None
) -> dict[str, ServiceHead]:
    """Real service heads on synthetic opportunities whose loss rises with the amount and the first
    half of the signals (presale: with an uplift, and stacked on ``rating``'s margin when given, as
    training stacks it; refund: with a normal arm, what normal handling pays)."""
    heads = {}
    rng = np.random.default_rng(seed)
    for service, names in ((PRESALE, PRESALE_CONTEXT), (FAST_REFUND, REFUND_CONTEXT)):
        X = synthetic_dataset(signal_names, n, seed).X.astype(np.float64)
        ctx = rng.normal(size=(n, len(names)))
        ctx[:, 0] = rng.uniform(np.log1p(10), np.log1p(30000), n)  # log amount
        logit = 1.2 * (ctx[:, 0] - 7.0) + np.nan_to_num(X[:, 0], nan=1.0) - 3.0
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        prior = rating if service == PRESALE else None
        margin = None if prior is None else prior.predict(X, raw_score=True)  # the base boosts from it
        base = lgb.train(
            {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed, "num_threads": 1},
            lgb.Dataset(np.hstack([X, ctx]), y, init_score=margin), 40,
        )  # fmt: skip
        proxy = None
        if service == PRESALE:
            proxy = lgb.train(
                {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed, "num_threads": 1},
                lgb.Dataset(X, (rng.random(n) < 0.1).astype(int)), 10,
            )  # fmt: skip
        normal = None
        if service == FAST_REFUND:  # normal handling pays most refund-only claims, few returns
            paid = rng.random(n) < np.where(ctx[:, names.index("ctx_is_return")] > 0, 0.4, 0.85)
            normal = lgb.train(
                {"objective": "binary", "verbose": -1, "num_leaves": 3, "seed": seed, "num_threads": 1},
                lgb.Dataset(ctx, paid.astype(int)), 10,
            )  # fmt: skip
        heads[service] = ServiceHead(
            service, list(signal_names), list(names), base, TREATMENT if service == PRESALE else None, proxy,
            (0.3, 0.5) if proxy is not None else (0.0, 0.0), normal=normal, prior=prior,
        )  # fmt: skip
    return heads


def tiny_review_head(signal_names: list[str], seed: int = 0, n: int = 8000) -> ServiceHead:
    """A real review head on synthetic reviews: removal is likelier for one-star reviews with long text
    and photos, and rises with the first signal."""
    rng = np.random.default_rng(seed + 5)
    X = synthetic_dataset(signal_names, n, seed).X.astype(np.float64)
    rating = rng.choice([1, 2], n, p=[0.6, 0.4])
    ctx = np.column_stack(
        [rating, rng.uniform(0, 6, n), rng.random(n) < 0.85, rng.random(n) < 0.3, rng.uniform(0, 10, n),
         rng.uniform(2, 8, n), rng.integers(0, 10, n)]
    ).astype(np.float64)  # fmt: skip
    logit = (
        1.5 * (rating == 1) + 0.6 * (ctx[:, 1] - 3) + 0.8 * ctx[:, 3] + np.nan_to_num(X[:, 0], nan=1.0) - 4
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    base = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed, "num_threads": 1},
        lgb.Dataset(np.hstack([X, ctx]), y), 40,
    )  # fmt: skip
    return ServiceHead(REVIEW, list(signal_names), list(REVIEW_CONTEXT), base)


def save_tiny_rating(
    path: Path, signal_names: list[str], seed: int = 0, heads: bool = False, review: bool = False
) -> str:
    """Fit and save a tiny rating as an MLflow pyfunc directory; returns a URI ``load_rating`` accepts.

    With ``heads`` the artifact also holds tiny service heads (``tiny_heads``; the presale head stacked
    on the rating's booster), with ``review`` a tiny review head (``tiny_review_head``).
    """
    model = make_tiny_rating(signal_names, seed)
    if heads:
        model.set_heads(tiny_heads(signal_names, seed, rating=model.booster))
    if review:
        model.set_review_head(tiny_review_head(signal_names, seed))
    example = synthetic_dataset(signal_names, 5, seed + 2).X
    return save_rating(model, Path(path), example)
