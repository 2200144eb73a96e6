"""Training on Dask (``python training/train.py --cluster``): the assembly as one task per buyer shard
(:func:`assemble`), and the rating's booster trained by ``lightgbm.dask`` on the shards' training rows,
which stay on the workers (:func:`fit_booster`, early stopping applied afterwards by the client:
:func:`early_stopping_round`). How and why, and what each side holds in memory: ``docs/scale.md``,
"Training on the cluster"."""

from __future__ import annotations

import functools
import operator
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features import build_cluster, cluster
from features.io import shard_parts
from training import dataset
from training.labels import PER_OPPORTUNITY, target_weights
from training.model import EVAL_EVERY, Dataset, split_params
from training.snapshots import TimeSplit

ASSEMBLE_TASK = "assemble-part"
"""Key prefix of the per-shard assembly tasks."""
ROWS_TASK = "rating-rows"
"""Key prefix of the per-shard training-row tasks."""
LEAF_CHUNK = 8192
"""Validation rows per pass when computing the per-round validation loss."""
WATCH_S = 2.0
"""Seconds between two checks that the workers training the booster are still there."""


@dataclass(frozen=True)
class ClusterRows:
    """The rating's training rows, left on the cluster.

    Attributes:
        client: The ``distributed.Client`` they live on.
        X: Dask array (rows, signals) float32, one chunk per shard with training rows, in the
            order of the client's training frame.
        y: Dask array (rows,) of the target, chunked like ``X``.
        parts: The futures of ``X``'s chunks (where they are is where LightGBM trains).
        w: Dask array (rows,) of the target's weights (``training.labels.target_weights``), or None.
    """

    client: Any
    X: Any
    y: Any
    parts: list
    w: Any = None


def assemble(
    client: Any,
    data_dir: Path,
    dates: list[pd.Timestamp],
    max_buyers: int | None,
    seed: int,
    progress: Callable[[str], None],
    split: TimeSplit,
    names: list[str],
    target: str,
) -> tuple[dict[str, pd.DataFrame], Callable[..., lgb.Booster]]:
    """``training.dataset.assemble`` on the cluster, leaving each shard's training rows there.

    Args:
        client: A ``distributed.Client``; its workers must see ``data_dir``.
        data_dir, dates, max_buyers, seed, progress, split: As ``training.dataset.assemble``.
        names: The signals the booster is trained on, in column order.
        target: The label column.

    Returns:
        The assembled frames (equal to the in-process ones), and the booster fitter to pass to
        ``training.model.fit_rating`` (:func:`fit_booster` on those rows).

    Raises:
        features.validate.ContractError: If a shard breaks the contract.
        features.cluster.WorkerLost: If a task was lost with its workers too often.
        ValueError: If no shard has a training row.
    """
    fraction = dataset.sample_fraction(data_dir, shard_parts(data_dir), max_buyers)
    parts, shards = build_cluster.map_shards(
        client, data_dir, dataset.shard_frames, (list(dates), fraction, seed, split), ASSEMBLE_TASK
    )
    token = uuid.uuid4().hex[:12]
    rows = [  # as soon as its shard is assembled (before the next shard), so its frames can go
        client.submit(training_rows, f, split, names, target, key=f"{ROWS_TASK}-{k:05d}-{token}", priority=1)
        for k, f in zip(parts, shards, strict=True)
    ]
    counts: list[int] = []

    def gathered() -> Iterator[dict[str, pd.DataFrame]]:
        for i in range(len(shards)):
            shard = next(cluster.results(client, shards[i : i + 1]))
            shards[i] = None  # gathered: the worker drops the shard's frames, keeps its training rows
            counts.append(int(in_training(shard[dataset.SNAPSHOTS], split).sum()))
            yield shard

    try:
        frames = dataset.collect(gathered(), len(parts), progress)
    except BaseException:
        client.cancel([f for f in shards + rows if f is not None])
        raise
    label = frames[dataset.SNAPSHOTS][target].dtype
    arrays = _arrays(client, rows, counts, len(names), label, weighted=target == PER_OPPORTUNITY)
    return frames, functools.partial(fit_booster, arrays)


def in_training(snapshots: pd.DataFrame, split: TimeSplit) -> np.ndarray:
    """Which snapshot rows are in the split's training window (as ``training.snapshots.split_snapshots`` cuts)."""
    return (split.assign(snapshots["as_of"]) == "train").to_numpy()


def training_rows(
    frames: dict[str, pd.DataFrame], split: TimeSplit, names: list[str], target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task: a shard's training rows as the booster reads them, ``(X float32, y, weights)`` (weights
    of ones for a target without them)."""
    train = frames[dataset.SNAPSHOTS][in_training(frames[dataset.SNAPSHOTS], split)]
    w = target_weights(train, target)
    return (
        train[names].to_numpy(np.float32),
        train[target].to_numpy(),
        np.ones(len(train)) if w is None else w,
    )


def _arrays(
    client: Any, rows: list[Any], counts: list[int], width: int, label: np.dtype, weighted: bool = False
) -> ClusterRows:
    """The per-shard ``(X, y, w)`` futures as Dask arrays (shards without training rows left out;
    ``w`` only when ``weighted``).

    Partition ``j`` is placed on worker ``j % W`` of the ``W`` workers sorted by address (where
    the assembly ran is up to the scheduler), so that each worker trains on its share.
    """
    import dask
    import dask.array as da

    kept = [(f, n) for f, n in zip(rows, counts, strict=True) if n]
    if not kept:
        raise ValueError("no training rows in any shard: the training window holds no snapshot")
    slots = sorted(client.ncores())
    parts = {
        i: [client.submit(operator.getitem, f, i, key=f"{f.key}-{i}", workers=[slots[j % len(slots)]],
                          allow_other_workers=True)
            for j, (f, _) in enumerate(kept)]
        for i in (0, 1, 2)
    }  # fmt: skip
    X = da.concatenate(
        [
            da.from_delayed(dask.delayed(x), (n, width), np.float32)
            for x, (_, n) in zip(parts[0], kept, strict=True)
        ]
    )
    y = da.concatenate(
        [da.from_delayed(dask.delayed(v), (n,), label) for v, (_, n) in zip(parts[1], kept, strict=True)]
    )
    w = da.concatenate(
        [da.from_delayed(dask.delayed(v), (n,), np.float64) for v, (_, n) in zip(parts[2], kept, strict=True)]
    )
    return ClusterRows(client, X, y, parts[0], w if weighted else None)


def fit_booster(
    rows: ClusterRows,
    train: Dataset,
    valid: Dataset,
    signal_names: list[str],
    monotone: list[int],
    params: dict,
    progress: Callable[[str], None] | None = None,
) -> lgb.Booster:
    """Train the booster with ``lightgbm.dask`` on ``rows`` and keep the round early stopping would.

    Called as ``training.model.fit_booster`` is (``train`` is the client's copy of ``rows``,
    unused here). Trains ``num_boost_round`` rounds, then scores them on ``valid`` and cuts the
    booster at the round early stopping keeps (:func:`kept_round`; ``best_iteration`` set).

    Raises:
        features.cluster.WorkerLost: If a training task was lost with its worker too often.
    """
    from distributed import KilledWorker
    from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

    lgb_params, rounds, patience = split_params(params)
    lgb_params.pop("num_threads", None)  # lightgbm.dask uses each worker's thread count
    if rows.w is not None:  # a rate with its exposure: cross-entropy, the same log-odds as binary
        lgb_params["objective"] = "cross_entropy"
    kind = DaskLGBMClassifier if rows.w is None else DaskLGBMRegressor
    estimator = kind(
        client=rows.client, n_estimators=rounds, **lgb_params, monotone_constraints=list(monotone)
    )
    if progress is not None:
        progress(
            f"rating: {rounds} rounds with lightgbm.dask (no early stopping on Dask; the round is chosen after)"
        )
    with warnings.catch_warnings():
        # the sklearn estimator always carries n_jobs, which lightgbm.dask replaces (see above)
        warnings.filterwarnings("ignore", message=r"Parameter n_jobs will be ignored", category=UserWarning)
        try:
            _watched(
                rows,
                lambda: estimator.fit(rows.X, rows.y, sample_weight=rows.w, feature_name=list(signal_names)),
            )
        except KilledWorker as err:
            raise cluster.WorkerLost(f"workers died while training the rating ({err.task!r})") from err
    booster = estimator.booster_
    best, losses = kept_round(booster, valid, patience, progress)
    if progress is not None:
        progress(
            f"rating: round {best} kept, validation binary_logloss {losses[best - 1]:.5f} (patience {patience})"
        )
    cut = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    cut.best_iteration = best
    return cut


def _watched(rows: ClusterRows, fit: Callable[[], Any]) -> None:
    """Run ``fit`` (``lightgbm.dask`` training), failing as soon as a worker holding training rows leaves.

    ``lightgbm.dask`` pins each worker's training task to that worker, so a task whose worker
    died can run nowhere else and the run would wait for it for ever (seen: a worker killed
    while boosting). The fit runs in a daemon thread; every ``WATCH_S`` seconds the client
    checks that the workers holding training rows are still there.

    Raises:
        features.cluster.WorkerLost: If one of them left before the fit ended.
    """
    holders = {w for workers in rows.client.who_has(rows.parts).values() for w in workers}
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fit()
        except BaseException as err:  # handed to the waiting thread below
            outcome.append(err)

    thread = threading.Thread(target=run, name="lightgbm-dask-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(WATCH_S)
        gone = holders - set(rows.client.ncores())
        if gone and thread.is_alive():
            raise cluster.WorkerLost(
                f"worker(s) {sorted(gone)} left while training the rating; lightgbm.dask cannot move their training"
            )
    if outcome:
        raise outcome[0]


def kept_round(
    booster: lgb.Booster,
    valid: Dataset,
    patience: int,
    progress: Callable[[str], None] | None = None,
    rounds_per_pass: int = EVAL_EVERY,
) -> tuple[int, np.ndarray]:
    """The round ``lgb.early_stopping(patience)`` would have kept had it watched ``valid``.

    The rounds are scored ``rounds_per_pass`` at a time, and no further than the round where
    early stopping would have ended training.

    Returns:
        The round (1-based) and the validation losses of the rounds scored.
    """
    trees = booster.num_trees()
    raw = np.zeros(len(valid.y))
    losses = np.zeros(0)
    for start in range(0, trees, rounds_per_pass):
        count = min(rounds_per_pass, trees - start)
        losses = np.concatenate([losses, validation_losses(booster, valid, raw, start, count)])
        if progress is not None:
            progress(
                f"rating: round {len(losses)} (at most {trees}), validation binary_logloss {losses[-1]:.5f}"
            )
        best = early_stopping_round(losses, patience)
        if len(losses) - best >= patience:
            break
    return best, losses


def validation_losses(
    booster: lgb.Booster,
    valid: Dataset,
    raw: np.ndarray,
    start: int = 0,
    count: int | None = None,
    chunk: int = LEAF_CHUNK,
) -> np.ndarray:
    """The mean binary log-loss on ``valid`` (LightGBM's ``binary_logloss``; weighted by ``valid.w``
    when it has weights, as ``cross_entropy``) after each of the ``count`` rounds (default all) that
    follow round ``start``.

    Each row's leaf in each of those trees (``pred_leaf``), whose outputs added round by round to
    ``raw`` (each row's raw score after round ``start``; updated in place) are the raw scores.
    """
    count = booster.num_trees() - start if count is None else count
    shape = booster.dump_model(start_iteration=start, num_iteration=count)["tree_info"]
    outputs = np.zeros((count, max(t["num_leaves"] for t in shape)))
    for t, tree in enumerate(shape):
        outputs[t, : tree["num_leaves"]] = [
            booster.get_leaf_output(start + t, leaf) for leaf in range(tree["num_leaves"])
        ]
    total = np.zeros(count)
    y = np.asarray(valid.y, dtype=np.float64)
    weight = valid.weights()
    for first in range(0, len(y), chunk):
        rows = slice(first, first + chunk)
        leaves = booster.predict(valid.X[rows], pred_leaf=True, start_iteration=start, num_iteration=count)
        scores = raw[rows, None] + np.cumsum(outputs[np.arange(count), leaves], axis=1)
        loss = np.logaddexp(0, scores) - y[rows, None] * scores  # -log p(y)
        total += (weight[rows, None] * loss).sum(axis=0)
        raw[rows] = scores[:, -1]
    return total / weight.sum()


def early_stopping_round(losses: np.ndarray, patience: int) -> int:
    """The round (1-based) ``lgb.early_stopping(patience)`` keeps on this validation-loss curve:
    the best so far when ``patience`` rounds have not improved on it, or at the last round."""
    best, best_at = np.inf, 0
    for i, loss in enumerate(losses):
        if loss < best:
            best, best_at = loss, i
        elif i - best_at >= patience:
            break
    return best_at + 1
