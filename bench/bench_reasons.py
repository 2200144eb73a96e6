"""How often the fast reason codes agree with exact TreeSHAP, and what each costs.

The service explains a decision with the rating artifact's lookup-table attribution
(``RatingModel.reasons``: per-signal binned mean TreeSHAP, microseconds per buyer).
Exact TreeSHAP (``booster.predict(X, pred_contrib=True)``) is the reference. Over a sample
of buyers this prints, for the top ``k`` risk-raising signals (positive contributions):

    overlap@k     mean |fast top-k  ∩  exact top-k| / |exact top-k|
    top-1         the first reason is the same
    top-1 in k    exact's first reason is among the fast top-k

overall and for 1-2 star buyers (the ones most often declined), plus the cost per buyer.

    python bench/bench_reasons.py --data data/market --model-uri models:/buyer-trust-rating@champion
    python bench/bench_reasons.py --snapshot data/online/snapshot.parquet --model-uri ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--data", type=Path, help="raw export: signals are built as of --as-of (default: export time)"
    )
    src.add_argument("--snapshot", type=Path, help="an online snapshot (from python -m serving.publish)")
    p.add_argument("--as-of", default=None, help="ISO-8601 instant for --data (default: the export time)")
    p.add_argument("--n", type=int, default=3000, help="buyers in the sample (default 3000)")
    p.add_argument("--k", type=int, default=4, help="reasons compared (default 4)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def sample_signals(args, names: list[str], rng: np.random.Generator) -> np.ndarray:
    """An (n, n_signals) float32 matrix in model order, from a snapshot or built from raw data."""
    if args.snapshot is not None:
        from serving.publish.snapshot import FileSnapshot

        snap = FileSnapshot.load(args.snapshot)
        position = {n: j for j, n in enumerate(snap.meta.signal_names)}
        rows = rng.choice(len(snap.buyer_ids), size=min(args.n, len(snap.buyer_ids)), replace=False)
        return snap.matrix[np.ix_(rows, [position[n] for n in names])]
    from features import io
    from features.build import build_shards

    as_of = io.export_time(args.data, args.as_of)
    frames = []
    for frame in build_shards(args.data, [as_of], limit=None):
        frames.append(frame[names].to_numpy(dtype=np.float32))
        if sum(len(f) for f in frames) >= 4 * args.n:
            break
    X = np.concatenate(frames)
    return X[rng.choice(len(X), size=min(args.n, len(X)), replace=False)]


def top_positive(contrib: np.ndarray, k: int) -> list[list[int]]:
    """Per row, the indices of the ``k`` largest positive contributions, largest first."""
    out = []
    for row in contrib:
        idx = np.argsort(-row, kind="stable")[:k]
        out.append([int(j) for j in idx if row[j] > 0])
    return out


def agreement(fast: list[list[int]], exact: list[list[int]], mask: np.ndarray) -> dict[str, float]:
    """overlap@k, top-1 and top-1-in-k over the rows in ``mask`` with at least one exact reason."""
    rows = [i for i in np.flatnonzero(mask) if exact[i]]
    if not rows:
        return {"buyers": 0, "overlap": float("nan"), "top1": float("nan"), "top1_in_k": float("nan")}
    overlap = np.mean([len(set(fast[i]) & set(exact[i])) / len(exact[i]) for i in rows])
    top1 = np.mean([bool(fast[i]) and fast[i][0] == exact[i][0] for i in rows])
    top1_in_k = np.mean([exact[i][0] in fast[i] for i in rows])
    return {
        "buyers": len(rows),
        "overlap": float(overlap),
        "top1": float(top1),
        "top1_in_k": float(top1_in_k),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import mlflow

    from rating.artifact import load_rating

    mlflow.set_tracking_uri(args.tracking_uri)
    rating = load_rating(args.model_uri)
    model = rating.model
    if model.reason_table is None:
        print("the model has no reason table", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    X = sample_signals(args, model.signal_names, rng)
    stars = model.score(X).star

    started = time.perf_counter()
    exact = model.booster.predict(X, pred_contrib=True, num_threads=1)[:, :-1]
    exact_batch_ms = (time.perf_counter() - started) / len(X) * 1000
    single = X[: min(200, len(X))]
    started = time.perf_counter()
    for row in single:
        model.booster.predict(row[None, :], pred_contrib=True, num_threads=1)
    exact_row_ms = (time.perf_counter() - started) / len(single) * 1000
    started = time.perf_counter()
    fast_contrib = model.reason_table.contributions(X)
    fast_batch_us = (time.perf_counter() - started) / len(X) * 1e6
    started = time.perf_counter()
    for row in single:
        model.reasons(row, k=args.k)
    fast_row_us = (time.perf_counter() - started) / len(single) * 1e6

    k = args.k
    fast, ref = top_positive(fast_contrib, k), top_positive(exact, k)
    version = f"{rating.name}/{rating.version}" if rating.version else rating.uri
    print(
        f"model {version}: {len(model.signal_names)} signals, {model.booster.num_trees()} trees; {len(X)} buyers"
    )
    print(
        f"exact TreeSHAP: {exact_row_ms:.2f} ms per buyer one at a time, {exact_batch_ms:.3f} ms in a batch"
    )
    print(f"fast lookup:    {fast_row_us:.1f} us per buyer one at a time, {fast_batch_us:.1f} us in a batch")
    print(f"\n{'buyers':<14}{'n':>6}{f'overlap@{k}':>12}{'top-1':>8}{f'top-1 in {k}':>12}")
    for label, mask in (("all", np.ones(len(X), bool)), ("1-2 stars", stars <= 2), ("3-5 stars", stars >= 3)):
        a = agreement(fast, ref, mask)
        print(f"{label:<14}{a['buyers']:>6}{a['overlap']:>12.3f}{a['top1']:>8.3f}{a['top1_in_k']:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
