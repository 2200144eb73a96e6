"""Reason codes for every buyer at once: the model's fast lookup table, or exact TreeSHAP; and a
shard's snapshot rows with them.

A decision's reasons are the entries of the model's reason catalogue that lowered the buyer's
score most against its baseline buyer (``RatingModel.reason_points``: score points; an artifact
without a catalogue ranks single signals by log-odds). Two attributions give them:

* exact TreeSHAP (``booster.predict(X, pred_contrib=True)``): about a millisecond per
  buyer, so ``python -m serving.publish`` computes it in the batch and stores the top
  ``REASONS_K`` per buyer in the file snapshot, tagged with the model's identity;
* the artifact's lookup table (``RatingModel.reason_table``, binned mean TreeSHAP per
  signal): microseconds per buyer; used when the snapshot holds no exact reasons for the
  live model (a new champion before the next publish, or a Redis snapshot).

``bench/bench_reasons.py`` measures how often the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rating.reasons import top_k
from serving.publish.snapshot import REASONS_K

CHUNK = 4096


def model_identity(rating: Any) -> str:
    """What identifies a loaded model's artifact: its MLflow run, else the URI it came from."""
    return f"run:{rating.run_id}" if rating.run_id else f"uri:{rating.uri}"


def lookup_reasons(
    model: Any, matrix: np.ndarray, k: int = REASONS_K
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-``k`` reasons of every row by the model's lookup table (as ``RatingModel.reasons``);
    None when the model has none."""
    table = getattr(model, "reason_table", None)
    if table is None:
        return None
    points = getattr(model, "reason_points", lambda c: c)
    parts = [
        top_k(points(table.contributions(matrix[i : i + CHUNK])), k) for i in range(0, len(matrix), CHUNK)
    ]
    if not parts:
        return top_k(np.empty((0, 1)), k)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def exact_reasons(
    model: Any, matrix: np.ndarray, k: int = REASONS_K, threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` reasons of every row by exact TreeSHAP (``threads`` 0: all cores)."""
    parts = []
    points = getattr(model, "reason_points", lambda c: c)
    for i in range(0, len(matrix), CHUNK):
        contrib = model.booster.predict(matrix[i : i + CHUNK], pred_contrib=True, num_threads=threads)
        parts.append(top_k(points(np.asarray(contrib)[:, :-1]), k))  # the last column is the expected value
    if not parts:
        return top_k(np.empty((0, 1)), k)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def snapshot_rows(
    frame: pd.DataFrame, names: list[str], model: Any = None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """A shard's snapshot rows: buyer ids, the kept signals in order, and the exact reasons.

    Args:
        frame: The shard's signals (:func:`features.build.build_signals`, one as-of instant).
        names: Signals to keep, in order.
        model: The ``RatingModel`` whose exact TreeSHAP reasons to compute (None: none).

    Returns:
        ``(buyer_ids (n,) int64, matrix (n, len(names)) float32, reasons or None)``, as
        ``FileWriter.append`` takes them.
    """
    matrix = frame[names].to_numpy(dtype=np.float32)
    reasons = None if model is None else exact_reasons(model, matrix)
    return frame["buyer_id"].to_numpy(np.int64), matrix, reasons
