"""A service head: the probability that one opportunity becomes a loss if the service approves it.

``p = sigmoid(base(signals, context with the treatment set) + a + b * proxy(signals))``:

* ``base`` is LightGBM on the buyer's signals and the opportunity's context (``rating.context``),
  trained on every historical opportunity of the service;
* for presales the treatment column (shipped before the balance) is set to 1, and the
  *uplift* ``a + b * proxy`` prices what history rarely shows: the moral hazard of shipping
  early. ``proxy`` is a buyer-level LightGBM (the log-odds that a refund request of this buyer
  turns into a loss: opportunism), and ``a``, ``b`` are fitted on the exploration presales that
  were shipped early at random (``docs/decisions.md``). Refund heads have no uplift.

Boosters travel inside the pickle as LightGBM model text, so the head needs no extra artifact.
One row at a time (``explain``, ``row_logit``: a decision) goes through LightGBM's single-row
fast path (``rating.single_row``), set up on first use and never pickled; many rows through
``Booster.predict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from rating.single_row import SingleRowPredictor

UPLIFT = "moral_hazard"  # the uplift's name among a head's reasons


def _booster_state(booster: lgb.Booster | None) -> str | None:
    return None if booster is None else booster.model_to_string(num_iteration=-1)


def _booster_from(text: str | None) -> lgb.Booster | None:
    return None if text is None else lgb.Booster(model_str=text)


@dataclass
class ServiceHead:
    """The fitted head of one service.

    Attributes:
        service: ``presale_ship_before_balance`` or ``fast_refund``.
        signal_names: Buyer signals, in column order.
        context_names: Context columns (``rating.context``), in column order after the signals.
        base: LightGBM on ``signal_names + context_names``.
        treatment: Context column set to 1 when pricing an approval (None: no treatment).
        proxy: Buyer-level LightGBM on ``signal_names`` whose log-odds drive the uplift (or None).
        uplift: ``(a, b)`` of the uplift ``a + b * proxy log-odds``.
    """

    service: str
    signal_names: list[str]
    context_names: list[str]
    base: lgb.Booster
    treatment: str | None = None
    proxy: lgb.Booster | None = None
    uplift: tuple[float, float] = (0.0, 0.0)
    metrics: dict[str, float] = field(default_factory=dict)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_one_row", None)  # C predictors of this process, rebuilt on first use
        state["base"] = _booster_state(self.base)
        state["proxy"] = _booster_state(self.proxy)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["base"] = _booster_from(state["base"])
        state["proxy"] = _booster_from(state["proxy"])
        self.__dict__.update(state)

    def inputs(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The base model's input rows: signals then context, the treatment column set to 1.

        Raises:
            ValueError: A matrix has the wrong number of columns.
        """
        signals = np.atleast_2d(np.asarray(signals, np.float64))
        context = np.array(np.atleast_2d(context), dtype=np.float64)
        if signals.shape[1] != len(self.signal_names):
            raise ValueError(
                f"signals have {signals.shape[1]} columns, the head expects {len(self.signal_names)}"
            )
        if context.shape[1] != len(self.context_names):
            raise ValueError(
                f"context has {context.shape[1]} columns, the head expects {len(self.context_names)}"
            )
        if self.treatment is not None:
            context[:, self.context_names.index(self.treatment)] = 1.0
        return np.hstack([signals, context])

    def _predictors(self) -> dict[str, SingleRowPredictor | tuple[str, ...] | int | None]:
        """The single-row predictors (base raw, base contributions, proxy raw) and the input names,
        made on first use."""
        cached = self.__dict__.get("_one_row")
        if cached is None or cached["base"] is not self.base or cached["proxy_booster"] is not self.proxy:
            names = (*self.signal_names, *self.context_names)
            cached = {
                "base": self.base,
                "proxy_booster": self.proxy,
                "raw": SingleRowPredictor(self.base, "raw"),
                "contrib": SingleRowPredictor(self.base, "contrib"),
                "proxy": None if self.proxy is None else SingleRowPredictor(self.proxy, "raw"),
                "names": names,
                "treatment": None if self.treatment is None else names.index(self.treatment),
            }
            self.__dict__["_one_row"] = cached
        return cached

    def _row_uplift(self, signals: np.ndarray, predictors: dict) -> float | None:
        if predictors["proxy"] is None:
            return None
        a, b = self.uplift
        return a + b * float(predictors["proxy"](signals)[0])

    def row_logit(self, signals: np.ndarray, context: np.ndarray) -> float:
        """``logit`` of one row, through the single-row fast path.

        Args:
            signals: ``len(signal_names)`` values, or one row of them (NaN: missing).
            context: ``len(context_names)`` values, or one row; the treatment column is overwritten with 1.

        Raises:
            ValueError: A row has the wrong number of values.
        """
        predictors = self._predictors()
        logit = float(predictors["raw"](self.inputs(signals, context)[0])[0])
        uplift = self._row_uplift(np.asarray(signals, np.float64).ravel(), predictors)
        return logit if uplift is None else logit + uplift

    def uplift_logit(self, signals: np.ndarray) -> np.ndarray | None:
        """The uplift ``a + b * proxy log-odds`` per row (None without a proxy)."""
        if self.proxy is None:
            return None
        a, b = self.uplift
        rows = np.atleast_2d(np.asarray(signals, np.float64))
        return a + b * self.proxy.predict(rows, raw_score=True, num_threads=1)

    def logit(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Log-odds of a loss if approved, per row.

        Args:
            signals: ``rows x len(signal_names)`` (NaN: missing).
            context: ``rows x len(context_names)``; the treatment column is overwritten with 1.

        Raises:
            ValueError: A matrix has the wrong number of columns.
        """
        out = self.base.predict(self.inputs(signals, context), raw_score=True, num_threads=1)
        uplift = self.uplift_logit(signals)
        return out if uplift is None else out + uplift

    def explain(self, signals: np.ndarray, context: np.ndarray) -> tuple[float, np.ndarray, list[str]]:
        """One row's log-odds and what made it, from a single pass (exact TreeSHAP of the base,
        through the single-row fast path; only the first row is explained).

        Returns:
            ``(logit, contributions, names)``: the log-odds (base + uplift, as ``logit``), and per
            input the TreeSHAP contribution (the treatment column's set to 0: it is 1 for every
            approval, not a reason), then the uplift as ``UPLIFT`` when there is one.
        """
        predictors = self._predictors()
        contrib = predictors["contrib"](self.inputs(signals, context)[0])
        logit = float(contrib.sum())  # the contributions and the bias add up to the raw score
        names = list(predictors["names"])
        contrib = contrib[:-1]
        if predictors["treatment"] is not None:
            contrib[predictors["treatment"]] = 0.0
        uplift = self._row_uplift(np.atleast_2d(np.asarray(signals, np.float64))[0], predictors)
        if uplift is not None:
            logit += uplift
            contrib, names = np.append(contrib, uplift), [*names, UPLIFT]
        return logit, contrib, names

    def probability(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Probability of a loss if approved, per row."""
        return 1.0 / (1.0 + np.exp(-self.logit(signals, context)))
