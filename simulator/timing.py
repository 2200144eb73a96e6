"""When an order's bad outcomes become facts: the lag distributions on a fine time grid.

A regular order's refund loss and lost dispute become facts after a chain of lags (payment,
shipping, delivery, the refund request, the return or the abuse finding; the dispute's opening
and ruling). Each lag is a distribution drawn by ``activity``, ``aftersales``; here each is
discretised on a grid of ``step`` seconds (the mass of ``[(k - 1/2) step, (k + 1/2) step)`` at
``k step``) and chained by convolution, so that for an order created ``u`` seconds before an
as-of instant ``T`` the probability that the fact falls in ``(T, T + 90 days]`` is a table
lookup. Rounding each of ``n`` lags to the nearest grid point moves a fact by at most
``n step / 2``; ``truth`` reports the effect of halving the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import ndtr

from features.outcomes import HORIZON
from simulator import activity, aftersales
from simulator.calendar import DAY, HOUR

STEP = 600  # seconds
LOOKBACK_DAYS = 240  # orders older than this at the as-of instant have no fact left to come (< 1e-6)
WINDOW = int(HORIZON.total_seconds())


def lognormal(median_days: float, sigma: float, size: int, step: int) -> np.ndarray:
    """Masses of a lognormal lag at grid points ``0, step, ..., (size - 1) step`` (tail beyond dropped)."""
    edges = (np.arange(size + 1) - 0.5) * step
    z = np.log(np.maximum(edges, 1e-9) / (median_days * DAY)) / sigma
    cdf = np.where(edges <= 0, 0.0, ndtr(z))
    return np.diff(cdf)


def uniform(lo_s: float, hi_s: float, size: int, step: int) -> np.ndarray:
    """Masses of a uniform lag on ``[lo_s, hi_s)`` seconds."""
    edges = (np.arange(size + 1) - 0.5) * step
    return np.diff(np.clip((edges - lo_s) / (hi_s - lo_s), 0.0, 1.0))


def point(at_s: float, size: int, step: int) -> np.ndarray:
    """A lag of exactly ``at_s`` seconds (rounded to the grid)."""
    out = np.zeros(size)
    out[int(round(at_s / step))] = 1.0
    return out


def capped(pmf: np.ndarray, cap_s: float, step: int) -> np.ndarray:
    """``min(X, cap_s)``: the mass beyond the cap moves onto it."""
    k = int(round(cap_s / step))
    out = pmf.copy()
    out[k] += out[k + 1 :].sum()
    out[k + 1 :] = 0.0
    return out


def chain(*pmfs: np.ndarray) -> np.ndarray:
    """The distribution of a sum of independent lags (same grid and size; the tail beyond is dropped)."""
    out = pmfs[0]
    for pmf in pmfs[1:]:
        out = np.clip(fftconvolve(out, pmf)[: out.size], 0.0, None)
    return out


def refund_fact_lag(window_s: float, size: int, step: int) -> np.ndarray:
    """Delay from delivery to the fact of a bad refund (``features.outcomes`` refund loss).

    The request comes ``min(lag, window)`` after delivery; then, for a return (72%): never
    shipped (60%), the fact at request + 14 days, or earlier if abuse is confirmed first (40% of
    those, ``ABUSE_LAG`` after the request); or shipped within 13 days, received after transit,
    and confirmed abusive ``ABUSE_LAG`` after receipt; for a refund-only claim, confirmed abusive
    ``ABUSE_LAG`` after the request.
    """
    a = aftersales
    request = capped(lognormal(*a.REQUEST_LAG, size, step), window_s, step)
    abuse = lognormal(*a.ABUSE_LAG, size, step)
    deadline = a.RETURN_DEADLINE_DAYS * DAY
    never_shipped = a.RETURN_KIND_SHARE * a.NO_RETURN_SHARE
    after = (
        never_shipped * (1 - a.NO_RETURN_ABUSE_SHARE) * point(deadline, size, step)
        + never_shipped * a.NO_RETURN_ABUSE_SHARE * capped(abuse, deadline, step)
        + a.RETURN_KIND_SHARE
        * (1 - a.NO_RETURN_SHARE)
        * chain(
            capped(lognormal(*a.RETURN_SHIP_LAG, size, step), deadline - DAY, step),
            lognormal(*a.RETURN_TRANSIT_LAG, size, step),
            abuse,
        )
        + (1 - a.RETURN_KIND_SHARE) * abuse
    )
    return chain(request, after)


def _in_window(pmf: np.ndarray, step: int, offset: int) -> np.ndarray:
    """``h(v) = P(v < X <= v + WINDOW)`` for ``v = (j - offset) step``, ``j = 0 .. size - 1``."""
    cdf = np.concatenate([[0.0], np.cumsum(pmf)])  # cdf[k] = P(X < k step) on the grid, k = 0..size
    v = np.arange(pmf.size) - offset
    w = WINDOW // step

    def below(k: np.ndarray) -> np.ndarray:  # P(X <= k step) = cdf[k + 1]
        return cdf[np.clip(k + 1, 0, pmf.size)]

    return below(v + w) - below(v)


@dataclass(frozen=True)
class OrderKernels:
    """Probabilities that an order's bad outcome becomes a fact in ``(T, T + 90 days]``.

    Index ``j`` of each kernel is an order created ``u = (j - offset) step`` seconds before
    ``T`` (negative: after ``T``). ``refund`` and ``both`` have one row per return window
    (0: 7 days, 1: 30 days for large appliances).

    Attributes:
        step: Grid step (seconds).
        offset: Index of ``u = 0``.
        refund: ``P(refund-loss fact in window | the order's refund is bad)``.
        dispute: ``P(dispute-lost fact in window | the order's dispute is lost)``.
        both: ``P(both facts in window | both bad)`` (they share the delivery instant).
    """

    step: int
    offset: int
    refund: np.ndarray
    dispute: np.ndarray
    both: np.ndarray

    def index(self, u: np.ndarray) -> np.ndarray:
        """Kernel index of orders created ``u`` seconds before ``T`` (nearest grid point, clipped)."""
        j = np.rint(np.asarray(u) / self.step).astype(np.int64) + self.offset
        return np.clip(j, 0, self.dispute.size - 1)


def order_kernels(step: int = STEP) -> OrderKernels:
    """Build the kernels of every regular order (delivery, then refund and dispute facts)."""
    size = (LOOKBACK_DAYS * DAY) // step + 1
    offset = WINDOW // step
    act, a = activity, aftersales
    delivery = chain(
        uniform(*act.PAY_DELAY_S, size, step),
        lognormal(*act.SHIP_LAG, size, step),
        lognormal(*act.DELIVERY_LAG, size, step),
    )
    dispute_lag = chain(
        lognormal(*a.DISPUTE_OPEN_LAG, size, step), lognormal(*a.DISPUTE_CLOSE_LAG, size, step)
    )
    # h(v) on v = -WINDOW .. LOOKBACK; the order's kernel is h shifted by its delivery delay
    h_dispute = _in_window(np.concatenate([dispute_lag, np.zeros(offset)]), step, offset)
    refund_rows, both_rows = [], []
    for days in a.RETURN_WINDOW_DAYS:
        lag = refund_fact_lag(days * DAY - HOUR, size, step)
        h_refund = _in_window(np.concatenate([lag, np.zeros(offset)]), step, offset)
        refund_rows.append(_after_delivery(delivery, h_refund, offset))
        both_rows.append(_after_delivery(delivery, h_refund * h_dispute, offset))
    return OrderKernels(
        step=step,
        offset=offset,
        refund=np.vstack(refund_rows),
        dispute=_after_delivery(delivery, h_dispute, offset),
        both=np.vstack(both_rows),
    )


def _after_delivery(delivery: np.ndarray, h: np.ndarray, offset: int) -> np.ndarray:
    """``K(u) = sum_d P(delivery delay = d) h(u - d)``: an order created ``u`` before ``T``."""
    # h is indexed by v + offset; K(u) needs h at u - d, i.e. index (j - d): a causal convolution
    return np.clip(fftconvolve(delivery, h)[: h.size], 0.0, 1.0)
