"""Orders placed before an as-of instant: the chance that a bad outcome of theirs is still to come.

At ``T`` an order's follow-ups may be under way: delivered or not, a refund requested (with its
reason and photos) or not, a return shipped or received, a dispute opened or closed. Each bad
outcome (``features.outcomes`` refund loss, lost dispute) becomes a fact after further lags;
given what is observed at ``T`` the probability that the fact falls in ``(T, T + 90 days]`` is
Bayes' rule over the branches still possible, with the lag tables of ``timing.PendingTables``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import aftersales, hazards, stress, timing
from simulator.calendar import DAY, NEVER
from simulator.config import Params
from simulator.population import Population

Columns = dict[str, np.ndarray]
NO_RETURN = aftersales.NO_RETURN_SHARE * (1 - aftersales.NO_RETURN_ABUSE_SHARE)  # bad return: never ships
NO_RETURN_ABUSE = aftersales.NO_RETURN_SHARE * aftersales.NO_RETURN_ABUSE_SHARE  # never ships, found abusive
SHIPPED_ABUSE = 1 - aftersales.NO_RETURN_SHARE  # bad return: ships, found abusive after receipt
DEADLINE = aftersales.RETURN_DEADLINE_DAYS * DAY


@dataclass(frozen=True)
class OrderFactors:
    """Per-buyer probabilities of a regular order's bad outcomes.

    Attributes:
        refund: Refund probability per buyer and category (``n x categories``).
        q: Probability that a refund is bad, per stress state (``n x 3``).
        opened: Probability of a dispute.
        ruled_lost: Probability that a dispute is lost by the buyer.
        cancel: Probability that an order is canceled.
        lost_parcel: Probability that a non-canceled order's parcel is lost.
    """

    refund: np.ndarray
    q: np.ndarray
    opened: np.ndarray
    ruled_lost: np.ndarray
    cancel: float
    lost_parcel: float

    @classmethod
    def of(cls, pop: Population, params: Params) -> OrderFactors:
        """The factors of every buyer of ``pop`` (from ``simulator.hazards``)."""
        idx = np.arange(pop.n)
        cats = np.arange(len(params.category_weights))
        states = range(stress.STATES)
        return cls(
            refund=hazards.refund_prob(cats[None, :], pop.opportunism[:, None], params),
            q=np.column_stack([hazards.refund_bad_prob(pop, idx, np.full(pop.n, s), params) for s in states]),
            opened=hazards.dispute_prob(pop, idx, params),
            ruled_lost=hazards.dispute_lost_prob(pop, idx, params),
            cancel=params.cancel_rate,
            lost_parcel=params.lost_parcel_rate,
        )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


class KnownOrders:
    """Regular orders with their follow-ups, sorted by creation instant.

    Args:
        f: Per-buyer factors.
        pop: The shard's buyers (stress of each order's month).
        orders: All orders (``b``, ``month``, ``created_at``, ``category``, ``kind``,
            ``canceled_at``, ``delivered_at``).
        refunds: Refund requests (``o``, ``requested_at``, ``reason``, ``kind``,
            ``return_shipped_at``, ``return_received_at``, ``abuse_confirmed_at``,
            ``p_loss_if_fast``).
        disputes: Disputes (``o``, ``opened_at``, ``closed_at``).
    """

    def __init__(
        self, f: OrderFactors, pop: Population, orders: Columns, refunds: Columns, disputes: Columns
    ):
        self.f = f
        self.n = pop.n
        regular = np.flatnonzero(orders["kind"] == 0)
        regular = regular[np.argsort(orders["created_at"][regular], kind="stable")]
        position = np.full(orders["b"].size, -1)
        position[regular] = np.arange(regular.size)
        self.created = orders["created_at"][regular]
        self.b = orders["b"][regular]
        category = orders["category"][regular]
        self.wide = (category == aftersales.LARGE_APPLIANCE).astype(np.int64)
        self.rp = f.refund[self.b, category]
        self.q = f.q[self.b, pop.stress[self.b, orders["month"][regular]]]
        self.canceled = orders["canceled_at"][regular]
        self.delivered = orders["delivered_at"][regular]
        never = np.full(regular.size, NEVER)
        asked = refunds["reason"] < hazards.REASONS_GOOD.size  # lost-parcel requests are never bad
        at = position[refunds["o"][asked]]
        self.requested, self.shipped, self.received, self.abuse = (
            never.copy(),
            never.copy(),
            never.copy(),
            never.copy(),
        )
        self.is_return = np.zeros(regular.size, dtype=bool)
        self.post = np.zeros(regular.size)
        for name, field in (("requested", "requested_at"), ("shipped", "return_shipped_at"),
                            ("received", "return_received_at"), ("abuse", "abuse_confirmed_at")):  # fmt: skip
            getattr(self, name)[at] = refunds[field][asked]
        self.is_return[at] = refunds["kind"][asked] == 1
        self.post[at] = refunds["p_loss_if_fast"][asked]
        at = position[disputes["o"]]
        self.opened, self.closed = never.copy(), never.copy()
        self.opened[at], self.closed[at] = disputes["opened_at"], disputes["closed_at"]

    def log_survival(self, k: timing.PendingTables, t0: int) -> np.ndarray:
        """Log-probability, per buyer, that no known order's bad outcome becomes a fact in the window.

        Orders created in ``(t0 - LOOKBACK_DAYS, t0)``; what happened to them by ``t0`` is known.
        """
        lo = np.searchsorted(self.created, t0 - timing.LOOKBACK_DAYS * DAY, side="right")
        hi = np.searchsorted(self.created, t0, side="left")
        s = slice(lo, hi)
        p = np.zeros(hi - lo)
        undelivered = (self.canceled[s] > t0) & (self.delivered[s] > t0)
        delivered = self.delivered[s] <= t0
        p[undelivered] = self._undelivered(k, t0, np.arange(lo, hi)[undelivered])
        p[delivered] = self._delivered(k, t0, np.arange(lo, hi)[delivered])
        return np.bincount(self.b[s], weights=np.log(np.maximum(1.0 - p, 1e-300)), minlength=self.n)

    def _undelivered(self, k: timing.PendingTables, t0: int, i: np.ndarray) -> np.ndarray:
        """Neither canceled nor delivered yet: canceled later, lost, or delivered later."""
        f, e = self.f, k.index(t0 - self.created[i])
        b, wide, rp, q = self.b[i], self.wide[i], self.rp[i], self.q[i]
        bad_dispute = f.opened[b] * f.ruled_lost[b]
        later = (1 - f.cancel) * (1 - f.lost_parcel)
        weight = (
            f.cancel * k.cancel_survival[e] + (1 - f.cancel) * f.lost_parcel + later * k.delivery_survival[e]
        )
        fact = (
            rp * q * k.undelivered_refund[wide, e]
            + bad_dispute * k.undelivered_dispute[e]
            - rp * q * bad_dispute * k.undelivered_both[wide, e]
        )
        return _ratio(later * fact, weight)

    def _delivered(self, k: timing.PendingTables, t0: int, i: np.ndarray) -> np.ndarray:
        refund = self._refund(k, t0, i)
        dispute = self._dispute(k, t0, i)
        return 1 - (1 - refund) * (1 - dispute)

    def _refund(self, k: timing.PendingTables, t0: int, i: np.ndarray) -> np.ndarray:
        """Probability that the order's refund loss becomes a fact in the window, given its history."""
        out = np.zeros(i.size)
        asked = self.requested[i] <= t0
        # no request yet: a bad refund may still be asked for (the request lag is capped by the window)
        j = i[~asked]
        e, wide, rp, q = k.index(t0 - self.delivered[j]), self.wide[j], self.rp[j], self.q[j]
        out[~asked] = _ratio(rp * q * k.request_next[wide, e], 1 - rp * (1 - k.request_survival[wide, e]))
        # asked: the posterior given reason and photos, then the branches the history still allows
        j = i[asked]
        post, a = self.post[j], t0 - self.requested[j]
        p = np.zeros(j.size)
        open_ = self.abuse[j] > t0  # a confirmed abuse is already a fact
        only = open_ & ~self.is_return[j]
        ea = k.index(a)
        p[only] = _ratio(post * k.abuse_next[ea], post * k.abuse_survival[ea] + 1 - post)[only]
        shipped = self.shipped[j] <= t0
        received = self.received[j] <= t0
        ret = open_ & self.is_return[j]
        m = ret & received
        eb = k.index(t0 - self.received[j])
        bad = post * SHIPPED_ABUSE
        p[m] = _ratio(bad * k.abuse_next[eb], bad * k.abuse_survival[eb] + 1 - post)[m]
        m = ret & shipped & ~received
        ec = k.index(t0 - self.shipped[j])
        p[m] = _ratio(bad * k.transit_next[ec], (bad + 1 - post) * k.transit_survival[ec])[m]
        m = ret & ~shipped & (a < DEADLINE)  # past the deadline, the loss is already a fact
        stay = NO_RETURN + NO_RETURN_ABUSE * k.abuse_survival[ea]
        num = post * (stay + SHIPPED_ABUSE * k.ship_next[ea])
        den = (1 - post) * k.ship_survival[ea] + post * (stay + SHIPPED_ABUSE * k.ship_survival[ea])
        p[m] = _ratio(num, den)[m]
        out[asked] = p
        return out

    def _dispute(self, k: timing.PendingTables, t0: int, i: np.ndarray) -> np.ndarray:
        """Probability that the order's lost dispute becomes a fact in the window, given its history."""
        f, b = self.f, self.b[i]
        opened = self.opened[i] <= t0
        e = k.index(t0 - self.delivered[i])
        not_yet = _ratio(
            f.opened[b] * f.ruled_lost[b] * k.open_next[e], 1 - f.opened[b] * (1 - k.open_survival[e])
        )
        ea = k.index(t0 - self.opened[i])
        running = np.where(
            self.closed[i] > t0, f.ruled_lost[b] * _ratio(k.close_next[ea], k.close_survival[ea]), 0.0
        )
        return np.where(opened, running, not_yet)
