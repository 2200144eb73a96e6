"""A service head: the probability that one opportunity becomes a loss if the service approves it.

``p = sigmoid(base(signals, context with the treatment set) + a + b * max(proxy(signals), knot))``:

* ``base`` is LightGBM on the buyer's signals and the opportunity's context (``rating.context``),
  trained on every historical opportunity of the service;
* for presales the treatment column (shipped before the balance) is set to 1, and the
  *uplift* ``a + b * max(proxy, knot)`` prices what history rarely shows: the moral hazard of
  shipping early. ``proxy`` is a buyer-level LightGBM (the log-odds that a refund request of this
  buyer turns into a loss: opportunism), and ``a``, ``b`` are fitted on the exploration presales
  that were shipped early at random, flat below the knot (``docs/decisions.md``). Without a proxy
  the uplift is the constant shift ``a`` (what training fits today: ``training.heads.add_shift``),
  the same for every presale and so never one of its reasons. Refund heads have no uplift.

A presale head may be *stacked* on the rating: its base was boosted (LightGBM ``init_score``) from
``c + w x`` the rating booster's raw margin on the buyer's signals (``prior``, ``prior_line``:
uncalibrated, before hard-fact caps), so the head adds that back, ``logit = c + w * prior(signals)
+ base(signals, context) + shift``. The base then learns only what a presale adds to the buyer's
risk, from tens of thousands of rows, while the rating learnt the buyer from hundreds of thousands.
TreeSHAP is additive over models, so a signal's contribution is ``w`` times the rating's plus the
base's: a decision's reasons stay signals, never "your rating" (``docs/decisions.md``, eighth session).

A refund head prices what paying fast *adds*: paid fast, every bad request is a loss
(``sigmoid(base)``); handled normally, the money goes out only if normal handling approves it
anyway. ``normal`` is a LightGBM on the request's context for ``P(normal handling pays | the
request is bad)``, and ``p = sigmoid(base) * (1 - sigmoid(normal(context)))``; the head's log-odds
are that increment's, so ``sigmoid(logit)`` is its probability everywhere.

Boosters travel inside the pickle as LightGBM model text, so the head needs no extra artifact.
One row at a time (``explain``, ``row_logit``: a decision) goes through LightGBM's single-row
fast path (``rating.single_row``), set up on first use and never pickled; many rows through
``Booster.predict``.

A decision's reasons (``explain``, ``risk``) are exact TreeSHAP of the base, from per-leaf tables
(``rating.path_shap``: the same attribution as LightGBM's ``pred_contrib``, at less than half its
cost for one row); LightGBM's own (``LIGHTGBM``) and Saabas' from per-leaf paths (``SAABAS``,
``rating.leaf_paths``: one leaf walk, but it agrees with TreeSHAP's top four for only a quarter of
decisions, ``bench/bench_head_reasons.py``) are there to compare. Tables are built on first use and
never pickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from rating.context import context_row
from rating.leaf_paths import leaf_table
from rating.path_shap import path_shap
from rating.reasons import Reason, top_reasons
from rating.single_row import SingleRowPredictor

UPLIFT = "moral_hazard"  # the uplift's name among a head's reasons
TREESHAP = "treeshap"  # exact TreeSHAP from per-leaf tables (rating.path_shap): what decisions cite
LIGHTGBM = "lightgbm"  # exact TreeSHAP by LightGBM (pred_contrib through the single-row path)
SAABAS = "saabas"  # Saabas from per-leaf path tables (rating.leaf_paths) and one leaf walk
ATTRIBUTIONS = (TREESHAP, LIGHTGBM, SAABAS)
BOOSTERS = ("base", "proxy", "normal", "prior")  # a head's boosters (pickled as model text)


@dataclass(frozen=True)
class RowRisk:
    """One opportunity priced by its head: the probability of a loss if approved and its reasons
    (the hard facts capping the buyer first, then the inputs that raised the log-odds most)."""

    p_loss: float
    reasons: tuple[Reason, ...] = ()


def flat_below(proxy_logit: np.ndarray, knot: float | None) -> np.ndarray:
    """The uplift's covariate: proxy log-odds held at ``knot`` below it (None: as they are)."""
    z = np.asarray(proxy_logit, np.float64)
    return z if knot is None else np.maximum(z, knot)


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
        uplift: ``(a, b)`` of the uplift ``a + b * max(proxy log-odds, knot)``; without a proxy the
            uplift is the constant ``a`` (the same for every presale: never a reason).
        knot: Proxy log-odds below which the uplift is flat (None: linear everywhere). A linear
            uplift extrapolated below the buyers it was fitted on says shipping early lowers their
            risk; the knot holds them at what the fitted buyers of low proxy showed.
        normal: LightGBM on ``context_names`` whose probability is the share of bad opportunities the
            service's normal handling pays anyway; when set the head prices the increment (None: no
            normal arm, the loss if approved is all the decision's).
        prior: The rating's booster over ``signal_names`` whose raw margin the base was boosted from
            (None: the base alone).
        prior_line: ``(c, w)``: the log-odds the prior adds are ``c + w * margin``.
    """

    service: str
    signal_names: list[str]
    context_names: list[str]
    base: lgb.Booster
    treatment: str | None = None
    proxy: lgb.Booster | None = None
    uplift: tuple[float, float] = (0.0, 0.0)
    knot: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    normal: lgb.Booster | None = None
    prior: lgb.Booster | None = None
    prior_line: tuple[float, float] = (0.0, 1.0)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_one_row", None)  # C predictors of this process, rebuilt on first use
        state.pop("_tables", None)  # per-leaf tables, rebuilt on first use
        for name in BOOSTERS:
            state[name] = _booster_state(getattr(self, name))
        return state

    def __setstate__(self, state: dict) -> None:
        state = {"prior_line": (0.0, 1.0), **state}  # heads saved before the prior have none
        for name in BOOSTERS:
            state[name] = _booster_from(state.get(name))  # nor those before the normal arm one
        self.__dict__.update(state)

    def inputs(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The base model's input rows: signals then context, the treatment column set to 1.

        Raises:
            ValueError: A matrix has the wrong number of columns.
        """
        signals = np.atleast_2d(signals)
        context = np.atleast_2d(context)
        if signals.shape[1] != len(self.signal_names):
            raise ValueError(
                f"signals have {signals.shape[1]} columns, the head expects {len(self.signal_names)}"
            )
        if context.shape[1] != len(self.context_names):
            raise ValueError(
                f"context has {context.shape[1]} columns, the head expects {len(self.context_names)}"
            )
        # one new float64 array, cast as np.asarray(..., np.float64) casts (objects included)
        x = np.concatenate([signals, context], axis=1, dtype=np.float64, casting="unsafe")
        if self.treatment is not None:
            x[:, len(self.signal_names) + self.context_names.index(self.treatment)] = 1.0
        return x

    def _predictors(self) -> dict[str, Any]:
        """What one row needs, made on first use: the single-row predictors a decision uses (base,
        proxy, normal and prior raw; ``compared`` holds the ones only ``explain``'s other attributions
        use, made by ``_compared``), the names of what ``explain`` attributes (the inputs, then
        ``UPLIFT`` with a proxy) and the masks of ``never`` sets over them."""
        cached = self.__dict__.get("_one_row")
        if cached is None or any(cached["boosters"][name] is not getattr(self, name) for name in BOOSTERS):
            names = (*self.signal_names, *self.context_names)
            cached = {
                "boosters": {name: getattr(self, name) for name in BOOSTERS},
                "raw": SingleRowPredictor(self.base, "raw"),
                "compared": {},
                "proxy": None if self.proxy is None else SingleRowPredictor(self.proxy, "raw"),
                "normal": None if self.normal is None else SingleRowPredictor(self.normal, "raw"),
                "prior": None if self.prior is None else SingleRowPredictor(self.prior, "raw"),
                "names": names,
                "explained": names if self.proxy is None else (*names, UPLIFT),
                "treatment": None if self.treatment is None else names.index(self.treatment),
                "masks": {},
            }
            self.__dict__["_one_row"] = cached
        return cached

    def _compared(self, kind: str, which: str = "base") -> SingleRowPredictor:
        """The single-row predictor of ``kind`` (``leaf`` indices or LightGBM's ``contrib``utions) of
        the base or the prior (``which``), for the attributions decisions do not cite, made on first use."""
        made = self._predictors()["compared"]
        if (kind, which) not in made:
            made[kind, which] = SingleRowPredictor(getattr(self, which), kind)
        return made[kind, which]

    def _row_uplift(self, signals: np.ndarray, predictors: dict) -> float | None:
        if predictors["proxy"] is None:  # a constant shift, or none
            return self.uplift[0] if self.uplift[0] else None
        return float(self.uplift_of(predictors["proxy"](signals)[:1])[0])

    def uplift_of(self, proxy_logit: np.ndarray) -> np.ndarray:
        """The uplift ``a + b * max(z, knot)`` of proxy log-odds ``z``."""
        a, b = self.uplift
        return a + b * flat_below(proxy_logit, self.knot)

    def _less_normal(self, logit: np.ndarray, normal_logit: np.ndarray) -> np.ndarray:
        """Log-odds of ``sigmoid(logit) * (1 - sigmoid(normal_logit))``: the loss if approved less what
        normal handling would have paid anyway (computed in log space, exact for any magnitude)."""
        log_p = -np.logaddexp(0.0, -np.asarray(logit, np.float64))  # log sigmoid(logit)
        log_q = log_p - np.logaddexp(0.0, np.asarray(normal_logit, np.float64))  # x (1 - sigmoid(n))
        return log_q - np.log(-np.expm1(np.minimum(log_q, -1e-300)))

    def row_logit(self, signals: np.ndarray, context: np.ndarray) -> float:
        """``logit`` of one row, through the single-row fast path.

        Args:
            signals: ``len(signal_names)`` values, or one row of them (NaN: missing).
            context: ``len(context_names)`` values, or one row; the treatment column is overwritten with 1.

        Raises:
            ValueError: A row has the wrong number of values.
        """
        predictors = self._predictors()
        x = self.inputs(signals, context)[0]
        logit = float(predictors["raw"](x)[0])
        if predictors["prior"] is not None:
            logit += self._prior_logit(predictors["prior"](x[: len(self.signal_names)])[0])
        uplift = self._row_uplift(np.asarray(signals, np.float64).ravel(), predictors)
        logit = logit if uplift is None else logit + uplift
        if predictors["normal"] is not None:
            normal = float(predictors["normal"](x[len(self.signal_names) :])[0])
            logit = float(self._less_normal(logit, normal))
        return logit

    def _prior_logit(self, margin: Any) -> Any:
        """What the prior adds to the log-odds, ``c + w * margin`` of its raw margin (``prior_line``)."""
        c, w = self.prior_line
        return c + w * margin

    def uplift_logit(self, signals: np.ndarray) -> np.ndarray | None:
        """The uplift (``uplift_of``) per row; without a proxy the constant ``a`` (None when 0)."""
        rows = np.atleast_2d(np.asarray(signals, np.float64))
        if self.proxy is None:
            return np.full(len(rows), self.uplift[0]) if self.uplift[0] else None
        return self.uplift_of(self.proxy.predict(rows, raw_score=True, num_threads=1))

    def logit(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Log-odds of a loss if approved, per row.

        Args:
            signals: ``rows x len(signal_names)`` (NaN: missing).
            context: ``rows x len(context_names)``; the treatment column is overwritten with 1.

        Raises:
            ValueError: A matrix has the wrong number of columns.
        """
        x = self.inputs(signals, context)
        out = self.base.predict(x, raw_score=True, num_threads=1)
        if self.prior is not None:
            out += self._prior_logit(
                self.prior.predict(x[:, : len(self.signal_names)], raw_score=True, num_threads=1)
            )
        uplift = self.uplift_logit(signals)
        out = out if uplift is None else out + uplift
        if self.normal is not None:
            normal = self.normal.predict(x[:, len(self.signal_names) :], raw_score=True, num_threads=1)
            out = self._less_normal(out, normal)
        return out

    def _table(self, attribution: str, which: str = "base") -> Any:
        """The per-leaf table of the base or the prior (``which``) for ``attribution`` (TreeSHAP's or
        Saabas'), built on first use (about half a second for a head of a hundred 15-leaf trees) and
        never pickled. The base's TreeSHAP table holds the prior's trees too, their leaves times ``w``
        (``rating.path_shap``'s ``scaled``): a decision's one pass covers both models."""
        cached = self.__dict__.get("_tables")
        if cached is None or cached[0] != (self.base, self.prior, self.prior_line):
            cached = ((self.base, self.prior, self.prior_line), {})
            self.__dict__["_tables"] = cached
        tables = cached[1]
        if (attribution, which) not in tables:
            booster = getattr(self, which)
            if attribution != TREESHAP:
                tables[attribution, which] = leaf_table(booster)
            elif which == "base" and self.prior is not None:
                tables[attribution, which] = path_shap(booster, ((self.prior, self.prior_line[1]),))
            else:
                tables[attribution, which] = path_shap(booster)
        return tables[attribution, which]

    def prepare(self) -> None:
        """Build the TreeSHAP table decisions cite now rather than on the first decision (plain
        arrays: safe to build before a server forks its workers)."""
        self._table(TREESHAP)

    def _attribute(self, x: np.ndarray, attribution: str) -> tuple[float, np.ndarray]:
        """The log-odds of the base and the prior on the head's input row ``x`` (no uplift, no normal
        arm) and each input's contribution to them by ``attribution``: a signal's is the base's plus
        ``w`` times the prior's (attributions add over models)."""
        if attribution == TREESHAP:  # one table holds both models
            table = self._table(TREESHAP)
            contrib = table.contributions(x)
            logit = float(contrib.sum()) + table.bias
            return (logit if self.prior is None else logit + self.prior_line[0]), contrib
        logit, contrib = self._model_attribution(x, attribution, "base")
        if self.prior is not None:
            n = len(self.signal_names)
            margin, prior = self._model_attribution(x[:n], attribution, "prior")
            logit += self._prior_logit(margin)
            contrib[:n] += self.prior_line[1] * prior
        return logit, contrib

    def _model_attribution(self, x: np.ndarray, attribution: str, which: str) -> tuple[float, np.ndarray]:
        """The raw score of the base or the prior (``which``) on row ``x`` (its own inputs) and each
        input's contribution to it, by LightGBM's TreeSHAP or Saabas' (``attribution``)."""
        if attribution == LIGHTGBM:  # the contributions and the bias add up to the raw score
            contrib = self._compared("contrib", which)(x)
            return float(contrib.sum()), contrib[:-1]
        table = self._table(SAABAS, which)
        ids = table.leaf_ids(self._compared("leaf", which)(x))
        return table.raw_score(ids), table.contributions(ids)

    def explain(
        self, signals: np.ndarray, context: np.ndarray, attribution: str = TREESHAP
    ) -> tuple[float, np.ndarray, tuple[str, ...]]:
        """One row's log-odds and what made it, from a single pass (only the first row is explained).

        Args:
            signals: ``len(signal_names)`` values, or one row of them (NaN: missing).
            context: ``len(context_names)`` values, or one row; the treatment column is overwritten with 1.
            attribution: ``TREESHAP`` (default: exact TreeSHAP of the base from per-leaf tables),
                ``LIGHTGBM`` (the same by LightGBM, through the single-row path) or ``SAABAS``.

        Returns:
            ``(logit, contributions, names)``: the log-odds (as ``logit``: the base's contributions
            and bias summed, plus the uplift), and per input the base's contribution (the treatment
            column's set to 0: it is 1 for every approval, not a reason), then the uplift as
            ``UPLIFT`` when there is one. With a normal arm the log-odds are the increment's and the
            contributions still the base's (what raised the loss if approved).

        Raises:
            ValueError: Unknown ``attribution``, or a row with the wrong number of values.
        """
        if attribution not in ATTRIBUTIONS:
            raise ValueError(f"attribution: must be one of {', '.join(ATTRIBUTIONS)}, got {attribution!r}")
        predictors = self._predictors()
        x = self.inputs(signals, context)[0]
        logit, contrib = self._attribute(x, attribution)
        if predictors["treatment"] is not None:
            contrib[predictors["treatment"]] = 0.0
        uplift = self._row_uplift(np.atleast_2d(np.asarray(signals, np.float64))[0], predictors)
        if uplift is not None:
            logit += uplift
        if uplift is not None and self.proxy is not None:  # a constant shift is nobody's reason
            contrib = np.append(contrib, uplift)
        if predictors["normal"] is not None:
            normal = float(predictors["normal"](x[len(self.signal_names) :])[0])
            logit = float(self._less_normal(logit, normal))
        return logit, contrib, predictors["explained"]

    def never_mask(self, never: frozenset[str]) -> np.ndarray:
        """Which of ``explain``'s names are in ``never``: computed once per set."""
        masks = self._predictors()["masks"]
        mask = masks.get(never)
        if mask is None:
            mask = np.array([n in never for n in self._predictors()["explained"]], dtype=bool)
            masks[never] = mask
        return mask

    def risk(
        self,
        signals: np.ndarray,
        opportunity: Mapping[str, Any],
        k: int = 4,
        texts: Mapping[str, str] | None = None,
        never: frozenset[str] = frozenset(),
        caps: Sequence[Reason] = (),
        attribution: str = TREESHAP,
    ) -> RowRisk:
        """One opportunity's probability of a loss if approved and its reasons, in one pass.

        Args:
            signals: The buyer's ``len(signal_names)`` signals (NaN: missing).
            opportunity: The opportunity's context fields (``rating.context.context_row``).
            k: Reasons at most; 0 skips the attribution (the single-row log-odds alone).
            texts: Buyer-facing text of each input (signals, context, ``UPLIFT``); a name without
                one is its own text.
            never: Inputs that are never a reason (the volume of activity).
            caps: The hard facts capping the buyer's star: the first reasons, as given.
            attribution: How the reasons are ranked (``explain``; default exact TreeSHAP from
                per-leaf tables).

        Returns:
            ``p_loss`` (the sigmoid of ``explain``'s log-odds) and up to ``k`` reasons.
        """
        context = context_row(opportunity)
        if k == 0:
            return RowRisk(1.0 / (1.0 + math.exp(-self.row_logit(signals, context))))
        logit, contrib, names = self.explain(signals, context, attribution)
        if never:
            contrib = np.where(self.never_mask(never), -np.inf, contrib)
        found = top_reasons(contrib, names, texts or {}, k)
        return RowRisk(1.0 / (1.0 + math.exp(-logit)), tuple([*caps, *found][:k]))

    def probability(self, signals: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Probability of a loss if approved, per row."""
        return 1.0 / (1.0 + np.exp(-self.logit(signals, context)))
