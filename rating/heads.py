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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

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
        """One row's log-odds and what made it, from a single pass (exact TreeSHAP of the base).

        Returns:
            ``(logit, contributions, names)``: the log-odds (base + uplift, as ``logit``), and per
            input the TreeSHAP contribution (the treatment column's set to 0: it is 1 for every
            approval, not a reason), then the uplift as ``UPLIFT`` when there is one.
        """
        contrib = self.base.predict(self.inputs(signals, context)[:1], pred_contrib=True, num_threads=1)[0]
        logit = float(contrib.sum())  # the contributions and the bias add up to the raw score
        names = [*self.signal_names, *self.context_names]
        contrib = contrib[:-1].copy()
        if self.treatment is not None:
            contrib[names.index(self.treatment)] = 0.0
        uplift = self.uplift_logit(signals)
        if uplift is not None:
            logit += float(uplift[0])
            contrib, names = np.append(contrib, uplift[0]), [*names, UPLIFT]
        return logit, contrib, names

    def probability(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Probability of a loss if approved, per row."""
        return 1.0 / (1.0 + np.exp(-self.logit(signals, context)))
