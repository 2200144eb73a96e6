"""Per-leaf contribution tables: a row's Saabas attribution from its leaf indices alone.

Saabas' attribution follows the row's path through each tree: every split on the path from the
root to the leaf credits its feature with ``value(child) - value(parent)``, where a node's value
is the mean output of the training rows that reached it (the leaves below it weighted by their
counts, the same expectation TreeSHAP uses). The sum telescopes, so the credits and the bias
(the sum of the roots' values, TreeSHAP's expected value) add up to the row's raw score. A path
depends only on the leaf, so the credits are computed once per leaf here; at decision time a
row's attribution is one ``np.bincount`` over the rows of its leaves (LightGBM gives the leaf
indices: ``rating.single_row`` kind ``leaf``), and its raw score the sum of their values.

Saabas is not TreeSHAP: it credits a feature for the splits on this row's path only, where
TreeSHAP averages over every order the features could be revealed in. ``bench/bench_head_reasons.py``
measures how often their top reasons agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np


@dataclass(frozen=True)
class LeafTable:
    """The Saabas credits of every leaf of a booster's trees, padded to one width.

    Attributes:
        offsets: Per tree used, the global id of its leaf 0 (a row's global leaf ids are its leaf
            indices plus these).
        feature: ``leaves x width`` the features credited on each leaf's path, each once; pads
            name the dummy column ``n_features``.
        delta: ``leaves x width`` the credit of each (log-odds for a binary model); pads are 0.
        value: Per leaf, its output (the tree's contribution to the raw score).
        bias: The sum of the trees' root values: the raw score of a row that reveals nothing.
        n_features: The booster's features.
    """

    offsets: np.ndarray
    feature: np.ndarray
    delta: np.ndarray
    value: np.ndarray
    bias: float
    n_features: int

    def leaf_ids(self, leaves: np.ndarray) -> np.ndarray:
        """Global leaf ids of one row's per-tree leaf indices (``rating.single_row`` kind ``leaf``).

        Raises:
            ValueError: ``leaves`` does not hold one index per tree.
        """
        leaves = np.asarray(leaves).ravel()
        if leaves.size != self.offsets.size:
            raise ValueError(f"leaves: has {leaves.size} indices, the table has {self.offsets.size} trees")
        return self.offsets + leaves.astype(np.int64)

    def raw_score(self, ids: np.ndarray) -> float:
        """The raw score of a row whose global leaf ids are ``ids``: the sum of its leaves' values."""
        return float(self.value[ids].sum())

    def contributions(self, ids: np.ndarray) -> np.ndarray:
        """The row's Saabas credit per feature (``n_features`` values; they sum with ``bias`` to the raw score)."""
        total = np.bincount(
            self.feature[ids].ravel(), weights=self.delta[ids].ravel(), minlength=self.n_features + 1
        )
        return total[: self.n_features]


def _node_means(node: dict[str, Any]) -> tuple[float, float]:
    """``(mean output, count)`` of a node: its leaf value, or its leaves' count-weighted mean."""
    if "leaf_value" in node:
        return float(node["leaf_value"]), float(node.get("leaf_count", 0))
    left, n_left = _node_means(node["left_child"])
    right, n_right = _node_means(node["right_child"])
    total = n_left + n_right
    mean = (left + right) / 2.0 if total == 0 else (left * n_left + right * n_right) / total
    node["_mean"] = mean
    return mean, total


def _leaf_paths(node: dict[str, Any], credits: dict[int, float], out: dict[int, dict[int, float]]) -> None:
    """Each leaf's credits (feature -> sum of ``child - parent`` on its path), keyed by leaf index."""
    if "leaf_value" in node:
        out[int(node.get("leaf_index", 0))] = credits
        return
    parent = node["_mean"]
    feature = int(node["split_feature"])
    for side in ("left_child", "right_child"):
        child = node[side]
        child_mean = float(child["leaf_value"]) if "leaf_value" in child else child["_mean"]
        step = dict(credits)
        step[feature] = step.get(feature, 0.0) + child_mean - parent
        _leaf_paths(child, step, out)


def trees_used(booster: lgb.Booster) -> list[dict[str, Any]]:
    """The dumped trees ``Booster.predict`` walks: up to the best iteration if known, else all."""
    if booster.num_model_per_iteration() != 1:
        raise ValueError(
            f"booster: has {booster.num_model_per_iteration()} models per iteration, leaf tables take one"
        )
    iterations = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    return booster.dump_model(num_iteration=iterations)["tree_info"]


def leaf_table(booster: lgb.Booster) -> LeafTable:
    """The Saabas credits of every leaf of ``booster`` (one model per iteration: binary or regression).

    Raises:
        ValueError: The booster has several models per iteration (multiclass).
    """
    n_features = booster.num_feature()
    offsets, rows, values, bias = [], [], [], 0.0
    for tree in trees_used(booster):
        root = tree["tree_structure"]
        root_mean, _ = _node_means(root)
        bias += root_mean
        paths: dict[int, dict[int, float]] = {}
        _leaf_paths(root, {}, paths)
        offsets.append(len(rows))
        for leaf in range(len(paths)):
            rows.append(paths[leaf])
        by_index = leaf_values(root)
        values += [by_index[leaf] for leaf in range(len(paths))]
    width = max((len(r) for r in rows), default=0)
    feature = np.full((len(rows), max(width, 1)), n_features, dtype=np.int64)
    delta = np.zeros((len(rows), max(width, 1)), dtype=np.float64)
    for i, credits in enumerate(rows):
        feature[i, : len(credits)] = list(credits)
        delta[i, : len(credits)] = list(credits.values())
    return LeafTable(
        offsets=np.asarray(offsets, dtype=np.int64),
        feature=feature,
        delta=delta,
        value=np.asarray(values, dtype=np.float64),
        bias=bias,
        n_features=n_features,
    )


def leaf_values(root: dict[str, Any]) -> dict[int, float]:
    """A dumped tree's leaf values by leaf index."""
    out, stack = {}, [root]
    while stack:
        node = stack.pop()
        if "leaf_value" in node:
            out[int(node.get("leaf_index", 0))] = float(node["leaf_value"])
        else:
            stack += [node["left_child"], node["right_child"]]
    return out
