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


def request_lag(window_s: float, size: int, step: int) -> np.ndarray:
    """Delay from delivery to a refund request: ``min(lag, window)``."""
    return capped(lognormal(*aftersales.REQUEST_LAG, size, step), window_s, step)


def return_ship_lag(size: int, step: int) -> np.ndarray:
    """Delay from the request to the shipping of a return that ships (within 13 days)."""
    return capped(
        lognormal(*aftersales.RETURN_SHIP_LAG, size, step), (aftersales.RETURN_DEADLINE_DAYS - 1) * DAY, step
    )


def refund_fact_lag(window_s: float, size: int, step: int) -> np.ndarray:
    """Delay from delivery to the fact of a bad refund (``features.outcomes`` refund loss)."""
    return chain(request_lag(window_s, size, step), refund_fact_after_request(size, step))


def refund_fact_after_request(size: int, step: int) -> np.ndarray:
    """Delay from the request to the fact of a bad refund.

    For a return (72%): never shipped (60%), the fact at request + 14 days, or earlier if abuse
    is confirmed first (40% of those, ``ABUSE_LAG`` after the request); or shipped within 13
    days, received after transit, and confirmed abusive ``ABUSE_LAG`` after receipt; for a
    refund-only claim, confirmed abusive ``ABUSE_LAG`` after the request.
    """
    a = aftersales
    abuse = lognormal(*a.ABUSE_LAG, size, step)
    deadline = a.RETURN_DEADLINE_DAYS * DAY
    never_shipped = a.RETURN_KIND_SHARE * a.NO_RETURN_SHARE
    after = (
        never_shipped * (1 - a.NO_RETURN_ABUSE_SHARE) * point(deadline, size, step)
        + never_shipped * a.NO_RETURN_ABUSE_SHARE * capped(abuse, deadline, step)
        + a.RETURN_KIND_SHARE
        * (1 - a.NO_RETURN_SHARE)
        * chain(return_ship_lag(size, step), lognormal(*a.RETURN_TRANSIT_LAG, size, step), abuse)
        + (1 - a.RETURN_KIND_SHARE) * abuse
    )
    return after


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


def window_weights(then: np.ndarray, step: int) -> np.ndarray:
    """``w[j] = P(then <= WINDOW - j step)`` for ``j = 0 .. WINDOW / step`` (``w[0]`` unused, set 0)."""
    w = WINDOW // step
    cdf = np.cumsum(then)[: w + 1]
    cdf = np.concatenate([cdf, np.full(max(0, w + 1 - cdf.size), cdf[-1])])
    out = cdf[w - np.arange(w + 1)]
    out[0] = 0.0
    return out


def still_to_come(first: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``G[e] = P(first > e step and the fact falls in (T, T + WINDOW])`` when ``e`` steps have elapsed.

    The fact comes ``first`` after the start and then ``then`` later (``weights`` from
    ``window_weights(then)``): ``G[e] = sum_{j >= 1} P(first = e + j) P(then <= WINDOW - j)``.
    """
    conv = fftconvolve(first, weights[::-1])
    return np.clip(conv[weights.size - 1 : weights.size - 1 + first.size], 0.0, 1.0)


def survival(pmf: np.ndarray) -> np.ndarray:
    """``S[e] = P(X > e step)`` on the grid."""
    return np.clip(1.0 - np.cumsum(pmf), 0.0, 1.0)


@dataclass(frozen=True)
class PendingTables:
    """Functions of the elapsed time ``e`` (grid index) for triggers already under way at ``T``.

    ``*_next`` is ``G`` of ``still_to_come``: the next stage has not happened after ``e`` and the
    bad outcome's fact, if the outcome is bad, falls in the window; ``*_survival`` is the
    probability that the stage has not happened after ``e``. Rows of 2 are per return window
    (7 days, 30 days).

    Attributes:
        step: Grid step (seconds).
        undelivered_refund, undelivered_dispute, undelivered_both: from creation, delivery still
            to come, then the bad refund's / lost dispute's / both facts.
        delivery_survival: Delivery not yet after ``e`` from creation (neither canceled nor lost).
        cancel_survival: A canceled order not yet canceled after ``e`` from creation.
        request_next, request_survival: From delivery, the refund request still to come.
        ship_next, ship_survival: From a return request, shipping still to come (the bad-shipped
            branch's fact after transit and the abuse finding).
        transit_next, transit_survival: From a return's shipping, receipt still to come.
        abuse_next, abuse_survival: From the start of the abuse clock, the finding still to come.
        open_next, open_survival: From delivery, a dispute still to be opened.
        close_next, close_survival: From its opening, the dispute still to be closed.
    """

    step: int
    undelivered_refund: np.ndarray
    undelivered_dispute: np.ndarray
    undelivered_both: np.ndarray
    delivery_survival: np.ndarray
    cancel_survival: np.ndarray
    request_next: np.ndarray
    request_survival: np.ndarray
    ship_next: np.ndarray
    ship_survival: np.ndarray
    transit_next: np.ndarray
    transit_survival: np.ndarray
    abuse_next: np.ndarray
    abuse_survival: np.ndarray
    open_next: np.ndarray
    open_survival: np.ndarray
    close_next: np.ndarray
    close_survival: np.ndarray

    def index(self, elapsed: np.ndarray) -> np.ndarray:
        """Grid index of elapsed times in seconds (nearest point, clipped to the table)."""
        j = np.rint(np.asarray(elapsed) / self.step).astype(np.int64)
        return np.clip(j, 0, self.delivery_survival.size - 1)


def pending_tables(step: int = STEP) -> PendingTables:
    """Build the tables of ``PendingTables`` on a grid of ``step`` seconds over ``LOOKBACK_DAYS``."""
    size = (LOOKBACK_DAYS * DAY) // step + 1
    act, a = activity, aftersales
    delivery = chain(
        uniform(*act.PAY_DELAY_S, size, step),
        lognormal(*act.SHIP_LAG, size, step),
        lognormal(*act.DELIVERY_LAG, size, step),
    )
    cancel = 0.5 * chain(
        uniform(*act.PAY_DELAY_S, size, step), lognormal(*act.CANCEL_AFTER_PAY_LAG, size, step)
    )
    cancel += 0.5 * uniform(*act.CANCEL_UNPAID_S, size, step)
    after_request = refund_fact_after_request(size, step)
    opening, closing = lognormal(*a.DISPUTE_OPEN_LAG, size, step), lognormal(*a.DISPUTE_CLOSE_LAG, size, step)
    transit, abuse = lognormal(*a.RETURN_TRANSIT_LAG, size, step), lognormal(*a.ABUSE_LAG, size, step)
    ship = return_ship_lag(size, step)
    w_dispute = window_weights(chain(opening, closing), step)
    requests = [request_lag(days * DAY - HOUR, size, step) for days in a.RETURN_WINDOW_DAYS]
    w_refund = [window_weights(chain(r, after_request), step) for r in requests]
    w_after_request = window_weights(after_request, step)
    return PendingTables(
        step=step,
        undelivered_refund=np.vstack([still_to_come(delivery, w) for w in w_refund]),
        undelivered_dispute=still_to_come(delivery, w_dispute),
        undelivered_both=np.vstack([still_to_come(delivery, w * w_dispute) for w in w_refund]),
        delivery_survival=survival(delivery),
        cancel_survival=survival(cancel),
        request_next=np.vstack([still_to_come(r, w_after_request) for r in requests]),
        request_survival=np.vstack([survival(r) for r in requests]),
        ship_next=still_to_come(ship, window_weights(chain(transit, abuse), step)),
        ship_survival=survival(ship),
        transit_next=still_to_come(transit, window_weights(abuse, step)),
        transit_survival=survival(transit),
        abuse_next=still_to_come(abuse, window_weights(np.eye(1, size)[0], step)),
        abuse_survival=survival(abuse),
        open_next=still_to_come(opening, window_weights(closing, step)),
        open_survival=survival(opening),
        close_next=still_to_come(closing, window_weights(np.eye(1, size)[0], step)),
        close_survival=survival(closing),
    )
