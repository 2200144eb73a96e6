"""One row at a time through LightGBM's own single-row fast path.

``Booster.predict`` on one row checks and converts its input in Python and builds a new
predictor in C on every call (about 50 us before any tree is walked, 70-190 us with
``pred_contrib``). LightGBM's C API has the path production scorers use for one row:
``LGBM_BoosterPredictForMatSingleRowFastInit`` sets up a predictor once, then
``LGBM_BoosterPredictForMatSingleRowFast`` scores a dense float64 row with it. Same
trees, same code walking them, so the results equal ``Booster.predict`` (tested to 1e-9,
``tests/rating/test_single_row.py``).

LightGBM serialises these calls per booster (a mutex in ``Booster::PredictSingleRow``); the
GIL is released during the call.
"""

from __future__ import annotations

import ctypes
import weakref

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

KINDS = {"raw": 1, "leaf": 2, "contrib": 3}  # C_API_PREDICT_RAW_SCORE, _LEAF_INDEX, _CONTRIB
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


def _library() -> ctypes.CDLL:
    """LightGBM's shared library as a CDLL of our own (same handle; argtypes set here stay here)."""
    lib = ctypes.CDLL(_LIB._name)
    lib.LGBM_BoosterPredictForMatSingleRowFast.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_void_p,
    ]
    lib.LGBM_BoosterPredictForMatSingleRowFast.restype = ctypes.c_int
    lib.LGBM_FastConfigFree.argtypes = [ctypes.c_void_p]
    lib.LGBM_FastConfigFree.restype = ctypes.c_int
    return lib


def _width(booster: lgb.Booster, kind: str) -> int:
    """Values one prediction of ``kind`` gives: 1 raw score, one leaf index per tree used (up to the
    best iteration if known, as ``Booster.predict``), or the contributions and the expected value."""
    per_iteration = booster.num_model_per_iteration()
    if kind == "contrib":
        return (booster.num_feature() + 1) * per_iteration
    if kind == "leaf":
        iterations = booster.current_iteration()
        if booster.best_iteration > 0:
            iterations = min(booster.best_iteration, iterations)
        return iterations * per_iteration
    return per_iteration


class SingleRowPredictor:
    """Raw scores, leaf indices or TreeSHAP contributions of one booster, one dense row per call.

    Args:
        booster: The booster (kept alive as long as the predictor).
        kind: ``raw`` (the raw score, log-odds for a binary model), ``leaf`` (the index of the
            row's leaf in each tree used, as float64) or ``contrib`` (one TreeSHAP contribution
            per feature, then the expected value).

    Raises:
        ValueError: Unknown ``kind``.
    """

    def __init__(self, booster: lgb.Booster, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        self.booster = booster
        self.kind = kind
        self.n_features = booster.num_feature()
        self.width = _width(booster, kind)
        self._lib = _library()
        handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(KINDS[kind]),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(booster.best_iteration),  # as Booster.predict: the best one if known, else all
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(self.n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(handle),
            )
        )
        self._handle = handle
        self._free = weakref.finalize(self, self._lib.LGBM_FastConfigFree, handle)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Predict one row.

        Args:
            row: ``n_features`` values (NaN: missing); converted to contiguous float64 if needed.

        Returns:
            ``width`` float64 values: the raw score, the leaf indices, or the contributions then the
            expected value.

        Raises:
            ValueError: ``row`` does not have ``n_features`` values.
        """
        row = np.ascontiguousarray(row, dtype=np.float64)
        if row.size != self.n_features:
            raise ValueError(f"row: has {row.size} values, the booster expects {self.n_features}")
        out = np.empty(self.width, dtype=np.float64)
        length = ctypes.c_int64()
        _safe_call(
            self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._handle, row.ctypes.data, ctypes.byref(length), out.ctypes.data
            )
        )
        return out

    def close(self) -> None:
        """Free the C predictor now (it is freed with this object otherwise)."""
        self._free()
