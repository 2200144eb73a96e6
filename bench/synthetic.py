"""A rating model sized like production over the registry's signals, fit on synthetic rows, with a snapshot:
what the serving benchmarks measure before a trained champion exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEAD_TREES = {
    "presale_ship_before_balance": 75,
    "fast_refund": 83,
}  # the default run's champion heads and proxy (docs/serving.md, the profile)


PROXY_TREES = 118


def synthetic_heads(names: list[str], rng: np.random.Generator, n: int = 20000) -> dict:
    """Service heads of the champion's size (``HEAD_TREES``, the training parameters, categorical
    context, a proxy and an uplift for presales), fit on synthetic opportunities."""
    import lightgbm as lgb

    from rating.context import (
        CATEGORICAL,
        PRESALE_CONTEXT,
        REFUND_CONTEXT,
        TREATMENT,
        presale_context,
        refund_context,
    )
    from rating.heads import ServiceHead
    from training.heads import HEAD_PARAMS

    heads = {}
    for service, trees in HEAD_TREES.items():
        X = rng.gamma(1.0, 1.0, size=(n, len(names)))
        X[rng.random(X.shape) < 0.1] = np.nan
        amount = rng.uniform(10, 5000, n)
        category = rng.choice(["beauty", "apparel", "electronics", "home"], n)
        if service == "presale_ship_before_balance":
            ctx_names = PRESALE_CONTEXT
            ctx = presale_context(amount, amount * 0.1, category, rng.uniform(1, 40, n), rng.random(n) < 0.5)
        else:
            ctx_names = REFUND_CONTEXT
            ctx = refund_context(
                amount, amount * 1.5, rng.choice(["refund_only", "return_and_refund"], n),
                rng.choice(["damaged", "quality", "not_received"], n), rng.integers(0, 3, n), category,
                rng.uniform(0, 60, n),
            )  # fmt: skip
        logit = 0.5 * np.nan_to_num(X[:, :20], nan=1.0).sum(axis=1) / 4 + np.log(amount) / 3 - 6.0
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        all_names = [*names, *ctx_names]
        data = lgb.Dataset(
            np.hstack([X, ctx]), y, feature_name=all_names,
            categorical_feature=[c for c in ctx_names if c in CATEGORICAL],
        )  # fmt: skip
        base = lgb.train(HEAD_PARAMS, data, trees)
        proxy = None
        if service == "presale_ship_before_balance":
            proxy = lgb.train(HEAD_PARAMS, lgb.Dataset(X, (rng.random(n) < 0.1).astype(int)), PROXY_TREES)
        heads[service] = ServiceHead(
            service, list(names), list(ctx_names), base,
            TREATMENT if proxy is not None else None, proxy, (2.7, 0.9) if proxy is not None else (0.0, 0.0),
        )  # fmt: skip
    return heads


def synthetic_setup(workdir: Path, n_buyers: int, rounds: int = 300) -> tuple[str, Path]:
    """A real rating model over the registry's signals, fit on synthetic rows, and a snapshot (``--synthetic``).

    Sized like a production model (all registry signals, ``rounds`` trees, service heads of
    the champion's size) so the serving cost is representative before the trained champion exists.
    """
    from features.registry import signal_names
    from serving.publish.snapshot import FileWriter
    from training.model import DEFAULT_PARAMS, Dataset, fit_rating
    from training.package import save_rating

    names = list(signal_names())
    k = len(names)
    rng = np.random.default_rng(3)
    weights = rng.normal(0, 1.2, k) / np.sqrt(k)

    def rows(n: int) -> Dataset:
        X = rng.gamma(1.0, 1.0, size=(n, k)).astype(np.float32)
        X[rng.random((n, k)) < 0.1] = np.nan
        logit = (np.nan_to_num(X, nan=1.0) - 1.0) @ weights - 3.0
        return Dataset(X=X, y=(rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8))

    params = {
        **DEFAULT_PARAMS,
        "num_boost_round": rounds,
        "early_stopping_rounds": rounds,
        "min_data_in_leaf": 50,
    }
    monotone = [1 if w > 0 else -1 for w in weights]
    model = fit_rating(
        rows(40000), rows(20000), names, {n: f"Reason text for {n}" for n in names}, monotone, params
    )
    model.set_heads(synthetic_heads(names, rng))
    uri = save_rating(model, workdir / "model", rows(5).X)
    X = rows(n_buyers).X
    writer = FileWriter(workdir / "snapshot.parquet", names, "2025-06-01T00:00:00+00:00")
    writer.append(np.arange(n_buyers), X)
    writer.commit()
    return uri, workdir / "snapshot.parquet"
