"""Exact TreeSHAP of one row from per-leaf tables: LightGBM's attribution, a fraction of its cost.

Path-dependent TreeSHAP (what ``pred_contrib`` computes) credits feature ``i`` with, summed over
every leaf ``l`` of every tree,

    v_l * (o_i - z_i) * sum over S within U_l - {i} of |S|! (u - |S| - 1)! / u! * prod_{j in S} o_j
                                                        * prod_{j in U_l - S - {i}} z_j

where ``U_l`` are the ``u`` distinct features split on the path to ``l``, ``z_j`` the share of the
training rows that follow the path at ``j``'s splits (counts) and ``o_j`` 1 when the row satisfies
all of the path's splits on ``j``, else 0. For a leaf, the credits depend on the row only through
its ``u`` bits, so they are tabled once per leaf and bit pattern (``2^u x u`` values; Fast TreeSHAP
v2, Yang 2021). A row then costs its decision at every split (numpy), one table read per leaf and
one ``np.bincount``, instead of LightGBM's walk of every leaf's path per tree. Same attribution as
``pred_contrib`` (tested to 1e-9, ``tests/rating/test_path_shap.py``), categorical splits and
missing values included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from rating.leaf_paths import leaf_values, trees_used

_ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| at most this is zero for ``missing_type`` Zero
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class Splits:
    """Every split of a booster's trees, and how a row goes at each (LightGBM's own rule: a numerical
    split sends a missing value its default way under missing type NaN, and treats it as 0 under
    type None; under type Zero, 0 and NaN go the default way).

    Attributes:
        feature: Per split, its feature.
        threshold: Per split, its threshold (numerical splits; 0 for categorical ones).
        nan_left: Per split, where NaN goes.
        zero: The splits of missing type Zero (0 goes the default way: ``zero_left``).
        zero_left: Their default way.
        categorical: Indices of the categorical splits.
        categories: ``categorical splits x (largest category + 1)``: the categories going left
            (NaN goes as ``nan_left`` says, a negative or unseen category right).
    """

    feature: np.ndarray
    threshold: np.ndarray
    nan_left: np.ndarray
    zero: np.ndarray
    zero_left: np.ndarray
    categorical: np.ndarray
    categories: np.ndarray

    def left(self, x: np.ndarray) -> np.ndarray:
        """Per split, whether row ``x`` goes left (a new array)."""
        value = x.take(self.feature)
        nan = np.isnan(value)
        left = value <= self.threshold  # False for NaN: set below
        np.copyto(left, self.nan_left, where=nan)
        if self.zero.size:
            zeros = np.abs(value[self.zero]) <= _ZERO
            left[self.zero] = np.where(zeros, self.zero_left, left[self.zero])
        if self.categorical.size:
            width = self.categories.shape[1]
            code = np.trunc(value.take(self.categorical))  # LightGBM's int cast: -0.5 is category 0
            known = (code >= 0) & (code < width)  # False for NaN
            cell = np.where(known, code, 0).astype(np.int64)
            cell += np.arange(self.categorical.size) * width  # the split's row of ``categories``
            hit = self.categories.ravel().take(cell)
            hit &= known
            np.copyto(hit, self.nan_left.take(self.categorical), where=nan.take(self.categorical))
            left[self.categorical] = hit
        return left


@dataclass(frozen=True)
class PathShap:
    """Per leaf, its path's splits and its TreeSHAP credits per bit pattern (module docstring).

    Leaves are those with a path (a tree of one leaf only adds to ``bias``); a *slot* is one
    distinct feature on one leaf's path, numbered ``s`` = 0 .. u - 1 within the leaf.

    Attributes:
        splits: Every split of the trees used.
        entry_split: Per step of every leaf's path (leaf after leaf), its split.
        entry_left: Per step, whether the path goes left there.
        entry_bit: Per step, ``2^s`` of its feature's slot.
        leaf_entries: Per leaf, where its steps start.
        leaf_full: Per leaf, ``2^u - 1`` (every bit set: the row is in the leaf).
        leaf_start: Per leaf, where its table starts in ``credit``.
        leaf_u: Per leaf, ``u``.
        slot_leaf: Per slot (leaf after leaf), its leaf.
        slot_place: Per slot, ``s``.
        slot_feature: Per slot, its feature.
        slot_start: Per slot, ``leaf_start + s`` of its leaf: where its credits start in ``credit``.
        credit: The tables, leaf after leaf: a leaf's credit of slot ``s`` under bit pattern ``p``
            at ``leaf_start + p * u + s``.
        bias: TreeSHAP's expected value (the count-weighted mean of the leaves, summed over trees).
        n_features: The booster's features.
    """

    splits: Splits
    entry_split: np.ndarray
    entry_left: np.ndarray
    entry_bit: np.ndarray
    leaf_entries: np.ndarray
    leaf_full: np.ndarray
    leaf_start: np.ndarray
    leaf_u: np.ndarray
    slot_leaf: np.ndarray
    slot_place: np.ndarray
    slot_feature: np.ndarray
    slot_start: np.ndarray
    credit: np.ndarray
    bias: float
    n_features: int

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP of row ``x`` (``n_features`` values; with ``bias`` they add up to the raw score).

        Raises:
            ValueError: ``x`` does not have ``n_features`` values.
        """
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size != self.n_features:
            raise ValueError(f"x: has {x.size} values, the booster expects {self.n_features}")
        if not self.leaf_u.size:
            return np.zeros(self.n_features)
        # per step, its bit where the row leaves the path there; per leaf, the bits of the features
        # whose splits the row does not all satisfy (whole-array numpy calls, results in place: one
        # row's cost is mostly the number of calls)
        broken = self.splits.left(x).take(self.entry_split)
        broken ^= self.entry_left
        pattern = np.bitwise_or.reduceat(self.entry_bit * broken, self.leaf_entries)
        pattern ^= self.leaf_full  # the bits the row satisfies
        pattern *= self.leaf_u
        cell = pattern.take(self.slot_leaf)
        cell += self.slot_start
        total = np.bincount(self.slot_feature, weights=self.credit.take(cell), minlength=self.n_features + 1)
        return total[: self.n_features]


def _shapley_weights(u: int) -> np.ndarray:
    """``|S|! (u - |S| - 1)! / u!`` for ``|S|`` = 0 .. u - 1."""
    return np.array([math.factorial(s) * math.factorial(u - s - 1) / math.factorial(u) for s in range(u)])


def leaf_credits(value: float, zero: np.ndarray) -> np.ndarray:
    """One leaf's credits: ``2^u x u``, row ``p`` the credit of each distinct feature when bit ``j`` of
    ``p`` says whether the row satisfies the path's splits on feature ``j`` (``zero``: the ``z_j``)."""
    u = zero.size
    if u == 0:
        return np.zeros((1, 0))
    patterns = np.arange(1 << u)
    ones = ((patterns[:, None] >> np.arange(u)[None, :]) & 1).astype(np.float64)  # o_j per pattern
    weights = _shapley_weights(u)
    out = np.empty((patterns.size, u))
    for i in range(u):
        others = [j for j in range(u) if j != i]
        # sum over S within the others of w(|S|) prod_{S} o_j prod_{others - S} z_j: a polynomial in
        # the number of members of S, built one feature at a time
        poly = np.zeros((patterns.size, u))
        poly[:, 0] = 1.0
        for j in others:
            shifted = np.zeros_like(poly)
            shifted[:, 1:] = poly[:, :-1] * ones[:, [j]]
            poly = poly * zero[j] + shifted
        out[:, i] = value * (ones[:, i] - zero[i]) * (poly @ weights)
    return out


def _paths(node: dict[str, Any], path: list, out: dict[int, list]) -> tuple[float, float]:
    """Collect each leaf's path (split node, went left, share of the parent's rows) by leaf index;
    returns the node's (count-weighted mean output, count)."""
    if "leaf_value" in node:
        out[int(node.get("leaf_index", 0))] = path
        return float(node["leaf_value"]), float(node.get("leaf_count", 0))
    parent = float(node["internal_count"])
    means = []
    for side, left in (("left_child", True), ("right_child", False)):
        child = node[side]
        count = float(child["leaf_count"] if "leaf_value" in child else child["internal_count"])
        share = count / parent if parent > 0 else 0.0
        means.append(_paths(child, [*path, (node, left, share)], out))
    (a, n_a), (b, n_b) = means
    return ((a * n_a + b * n_b) / (n_a + n_b) if n_a + n_b > 0 else (a + b) / 2.0), n_a + n_b


def path_shap(booster: lgb.Booster, scaled: Sequence[tuple[lgb.Booster, float]] = ()) -> PathShap:
    """The per-leaf TreeSHAP tables of ``booster`` (the trees ``Booster.predict`` walks), and of each
    booster of ``scaled`` with its leaf values times its factor: one table for the sum of the models'
    raw scores (TreeSHAP is additive over trees), so a row costs one pass, not one per model.

    Args:
        booster: The model whose inputs the table reads.
        scaled: ``(booster, factor)`` pairs; each booster reads the first of ``booster``'s inputs
            (a stacked head's rating reads the signals, which come first).

    Raises:
        ValueError: A booster has several models per iteration (multiclass), or a scaled one reads
            more inputs than ``booster``.
    """
    n_features = booster.num_feature()
    wider = [b.num_feature() for b, _ in scaled if b.num_feature() > n_features]
    if wider:
        raise ValueError(f"scaled: a booster reads {wider[0]} inputs, the table's booster {n_features}")
    nodes: dict[int, int] = {}  # id(dumped split) -> split index
    split_rows: list[dict[str, Any]] = []
    leaves: list[tuple[float, list]] = []
    bias = 0.0
    for model, factor in ((booster, 1.0), *scaled):
        for tree in trees_used(model):
            paths: dict[int, list] = {}
            mean, _ = _paths(tree["tree_structure"], [], paths)
            bias += factor * mean
            values = leaf_values(tree["tree_structure"])
            for leaf in range(len(paths)):
                for node, _, _ in paths[leaf]:
                    if id(node) not in nodes:
                        nodes[id(node)] = len(split_rows)
                        split_rows.append(node)
                steps = [(nodes[id(n)], left, share) for n, left, share in paths[leaf]]
                leaves.append((factor * values[leaf], steps))
    splits = _splits(split_rows)
    entry_split, entry_left, entry_bit, tables = [], [], [], []
    leaf_entries, leaf_start, leaf_u, slot_place, slot_feature = [], [], [], [], []
    start = 0
    for value, path in (leaf for leaf in leaves if leaf[1]):
        order: dict[int, int] = {}
        zero: list[float] = []
        leaf_entries.append(len(entry_split))
        for split, left, share in path:
            feature = int(splits.feature[split])
            if feature not in order:
                order[feature] = len(order)
                zero.append(1.0)
            zero[order[feature]] *= share
            entry_split.append(split)
            entry_left.append(left)
            entry_bit.append(1 << order[feature])
        leaf_start.append(start)
        leaf_u.append(len(order))
        slot_place += range(len(order))
        slot_feature += list(order)
        table = leaf_credits(value, np.asarray(zero))
        tables.append(table.ravel())
        start += table.size
    leaf_u_array = np.asarray(leaf_u, dtype=np.int64)
    leaf_start_array = np.asarray(leaf_start, dtype=np.int64)
    slot_leaf = np.repeat(np.arange(leaf_u_array.size), leaf_u_array)
    slot_place_array = np.asarray(slot_place, dtype=np.int64)
    return PathShap(
        splits=splits,
        entry_split=np.asarray(entry_split, dtype=np.int64),
        entry_left=np.asarray(entry_left, dtype=bool),
        entry_bit=np.asarray(entry_bit, dtype=np.int64),
        leaf_entries=np.asarray(leaf_entries, dtype=np.int64),
        leaf_full=(1 << leaf_u_array) - 1,
        leaf_start=leaf_start_array,
        leaf_u=leaf_u_array,
        slot_leaf=slot_leaf,
        slot_place=slot_place_array,
        slot_feature=np.asarray(slot_feature, dtype=np.int64),
        slot_start=leaf_start_array[slot_leaf] + slot_place_array,
        credit=np.concatenate([np.zeros(0), *tables]),
        bias=bias,
        n_features=n_features,
    )


def _splits(rows: list[dict[str, Any]]) -> Splits:
    """The splits of the dumped nodes ``rows``, in that order."""
    categorical = [i for i, r in enumerate(rows) if r["decision_type"] == "=="]
    sets = [[int(c) for c in str(rows[i]["threshold"]).split("||")] for i in categorical]
    largest = max((max(s) for s in sets), default=-1)
    categories = np.zeros((len(categorical), largest + 1), dtype=bool)
    for row, members in enumerate(sets):
        categories[row, members] = True
    threshold = np.array([0.0 if r["decision_type"] == "==" else float(r["threshold"]) for r in rows])
    missing = np.array([_MISSING[r["missing_type"]] for r in rows], dtype=np.int64)
    default_left = np.array([bool(r["default_left"]) for r in rows], dtype=bool)
    nan_left = np.where(missing == _MISSING["None"], threshold >= 0.0, default_left)  # None: NaN is 0
    nan_left[categorical] = (missing[categorical] != _MISSING["NaN"]) & categories[:, :1].any(axis=1)
    zero = np.flatnonzero(
        (missing == _MISSING["Zero"]) & (np.array([r["decision_type"] for r in rows]) != "==")
    )
    return Splits(
        feature=np.array([int(r["split_feature"]) for r in rows], dtype=np.int64),
        threshold=threshold,
        nan_left=nan_left,
        zero=zero,
        zero_left=default_left[zero],
        categorical=np.asarray(categorical, dtype=np.int64),
        categories=categories,
    )
