"""After the sale: refund requests (with the historical fast-refund decision), reviews and disputes."""

from __future__ import annotations

import numpy as np

from features.legacy import legacy_fast_refund
from features.outcomes import RETURN_GRACE
from simulator import hazards, standing
from simulator import reviews as rv
from simulator.calendar import DAY, HOUR, NEVER, Calendar, lag_days
from simulator.config import Params
from simulator.population import Population

Columns = dict[str, np.ndarray]
LARGE_APPLIANCE = 9  # index in contract.CATEGORIES; 30-day return window
RETURN_WINDOW_DAYS = (7, 30)  # days after delivery to ask for a refund: other categories, large appliances
RETURN_DEADLINE_DAYS = RETURN_GRACE.days  # a return not shipped this long after the request is a loss
NO_RETURN_SHARE = 0.6  # of bad returns, the goods never ship back (the rest ship and are found abusive)
NO_RETURN_ABUSE_SHARE = 0.4  # of never-shipped bad returns, also confirmed abusive
RETURN_KIND_SHARE = 0.72  # requests that are return_and_refund (else refund_only)
# Normal handling (not fast): the share of requests of each kind (refund_only, return_and_refund) that
# end approved (paid), rejected, withdrawn, the rest escalated; cumulative, drawn independently of badness.
# A return is decided once the goods are received (an unreturned one is closed as withdrawn).
NORMAL_OUTCOME_CUTS = ((0.85, 0.95, 0.98), (0.93, 0.98))
# lognormal lags (median days, sigma): request after delivery, return shipping, transit, abuse finding
REQUEST_LAG = (2.0, 0.8)
RETURN_SHIP_LAG = (1.5, 0.7)
RETURN_TRANSIT_LAG = (2.5, 0.4)
ABUSE_LAG = (25.0, 0.5)
DISPUTE_OPEN_LAG = (6.0, 0.6)  # after delivery
DISPUTE_CLOSE_LAG = (9.0, 0.7)  # after opening


def refunds(
    rng: np.random.Generator, pop: Population, cal: Calendar, orders: Columns, vip: np.ndarray, params: Params
) -> Columns:
    """Refund requests of regular orders: opportunism drives the rate, traits and stress the abuse.

    Returns:
        Columns of the refunds table (``o`` is the local order index) plus ``bad`` (truth flag),
        ``legacy``, ``explored`` and the truth of both arms: ``p_loss_if_fast`` (paid at once: a
        loss whenever the request is bad) and ``p_loss_if_normal`` (paid only if normal handling
        approves it: ``paid_if_normal``).
    """
    regular = (orders["kind"] == 0) & (orders["canceled_at"] == NEVER)
    lost = np.flatnonzero(regular & orders["lost"])
    ok = np.flatnonzero(regular & ~orders["lost"])
    b_ok = orders["b"][ok]
    asked = rng.random(ok.size) < hazards.refund_prob(orders["category"][ok], pop.opportunism[b_ok], params)
    o = ok[asked]
    b = orders["b"][o]
    state = pop.stress[b, orders["month"][o]]
    prior = hazards.refund_bad_prob(pop, b, state, params)
    bad = rng.random(o.size) < prior
    n = o.size
    reason = np.where(
        bad,
        rng.choice(6, n, p=hazards.refund_reason_probs(True)),
        rng.choice(6, n, p=hazards.refund_reason_probs(False)),
    )
    kind = (rng.random(n) < RETURN_KIND_SHARE).astype(np.int64)  # 1 return_and_refund, 0 refund_only
    window = np.where(orders["category"][o] == LARGE_APPLIANCE, *RETURN_WINDOW_DAYS[::-1]) * DAY - HOUR
    requested = orders["delivered_at"][o] + np.minimum(lag_days(rng, n, *REQUEST_LAG), window)
    photos = rng.poisson(hazards.refund_photo_rate(reason, bad))
    amount = np.where(
        kind == 1, orders["amount"][o], np.round(orders["amount"][o] * rng.uniform(0.2, 1.0, n), 2)
    )
    posterior = hazards.refund_loss_posterior(prior, reason, photos)
    legacy = legacy_fast_refund(standing.vip_at(cal, vip, b, requested), kind == 1, amount, photos)
    explored = ~legacy & (rng.random(n) < params.fast_refund_explore_share)
    fast = legacy | explored

    # the return: never shipped (bad, 60%), or shipped and later found abusive (bad, 40%), or normal
    no_return = bad & (kind == 1) & (rng.random(n) < NO_RETURN_SHARE)
    shipped = requested + np.minimum(lag_days(rng, n, *RETURN_SHIP_LAG), (RETURN_DEADLINE_DAYS - 1) * DAY)
    shipped = np.where((kind == 1) & ~no_return, shipped, NEVER)
    received = np.where(shipped < NEVER, shipped + lag_days(rng, n, *RETURN_TRANSIT_LAG), NEVER)
    confirm_abuse = bad & (~no_return | (rng.random(n) < NO_RETURN_ABUSE_SHARE))
    abuse_from = np.where(received < NEVER, received, requested)
    abuse_at = np.where(confirm_abuse, abuse_from + lag_days(rng, n, *ABUSE_LAG), NEVER)

    outcome, decided, refunded = handle_refunds(rng, kind, requested, received, fast)

    # lost parcels: the buyer asks for the money back as not received; never abusive
    nl = lost.size
    lost_req = orders["shipped_at"][lost] + lag_days(rng, nl, 10.0, 0.3)
    lost_dec = lost_req + lag_days(rng, nl, 1.0)
    return {
        "o": np.concatenate([o, lost]),
        "b": np.concatenate([b, orders["b"][lost]]),
        "requested_at": np.concatenate([requested, lost_req]),
        "amount": np.concatenate([amount, orders["amount"][lost]]),
        "reason": np.concatenate([reason, np.full(nl, 6)]),
        "kind": np.concatenate([kind, np.zeros(nl, dtype=np.int64)]),
        "evidence_photos": np.concatenate([photos, np.zeros(nl, dtype=np.int64)]),
        "fast_refund": np.concatenate([fast, np.zeros(nl, dtype=bool)]),
        "decided_at": np.concatenate([decided, lost_dec]),
        "outcome": np.concatenate([outcome, np.zeros(nl, dtype=np.int64)]),
        "refunded_at": np.concatenate([refunded, lost_dec]),
        "return_shipped_at": np.concatenate([shipped, np.full(nl, NEVER)]),
        "return_received_at": np.concatenate([received, np.full(nl, NEVER)]),
        "abuse_confirmed_at": np.concatenate([abuse_at, np.full(nl, NEVER)]),
        "bad": np.concatenate([bad, np.zeros(nl, dtype=bool)]),
        "legacy": np.concatenate([legacy, np.zeros(nl, dtype=bool)]),
        "explored": np.concatenate([explored, np.zeros(nl, dtype=bool)]),
        "p_loss_if_fast": np.concatenate([posterior, np.zeros(nl)]),
        "p_loss_if_normal": np.concatenate([posterior * paid_if_normal(kind), np.zeros(nl)]),
    }


def handle_refunds(
    rng: np.random.Generator, kind: np.ndarray, requested: np.ndarray, received: np.ndarray, fast: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How each refund request is handled: paid at once when fast, else normal handling.

    Normal handling draws its outcome independently of badness (``NORMAL_OUTCOME_CUTS``); a return
    is decided once its goods are received, and one never received is closed as withdrawn after
    the deadline.

    Args:
        rng: Generator.
        kind: 1 return_and_refund, 0 refund_only.
        requested: Request instants (seconds).
        received: Return receipt instants (``NEVER`` if the goods never came back or none was due).
        fast: Paid fast (the decision at the request).

    Returns:
        ``(outcome, decided_at, refunded_at)``: outcome index into the contract's outcomes.
    """
    n = kind.size
    u = rng.random(n)
    # approved, rejected, withdrawn, escalated; a shipped return is not withdrawn
    only, ret = NORMAL_OUTCOME_CUTS
    outcome = np.where(
        kind == 1,
        np.select([u < ret[0], u < ret[1]], [0, 1], 3),
        np.select([u < only[0], u < only[1], u < only[2]], [0, 1, 2], 3),
    )
    decided = np.where(kind == 1, received + lag_days(rng, n, 1.0), requested + lag_days(rng, n, 1.5))
    closed_unreturned = (kind == 1) & (received == NEVER)
    decided = np.where(
        closed_unreturned, requested + (RETURN_DEADLINE_DAYS + 1) * DAY + lag_days(rng, n, 0.5), decided
    )
    outcome = np.where(closed_unreturned, 2, outcome)
    decided = np.where(fast, requested + rng.integers(60, 2 * HOUR, n), decided)
    outcome = np.where(fast, 0, outcome)
    refunded = np.where(outcome == 0, decided, NEVER)
    return outcome, decided, refunded


def paid_if_normal(kind: np.ndarray) -> np.ndarray:
    """P(a bad request is paid under normal handling), by kind (1 return_and_refund, 0 refund_only).

    A bad return's goods never ship in ``NO_RETURN_SHARE`` of cases (closed unpaid after the
    deadline); otherwise they arrive and the request is approved like any other. A refund-only
    claim is approved with its kind's share. The outcome draw is independent of badness, so
    ``P(loss if normal) = P(bad) x paid_if_normal(kind)`` exactly (docs/simulator.md).
    """
    only, ret = NORMAL_OUTCOME_CUTS
    return np.where(np.asarray(kind) == 1, (1.0 - NO_RETURN_SHARE) * ret[0], only[0])


def unconfirm_returned(orders: Columns, refund: Columns) -> np.ndarray:
    """Orders' ``confirmed_at`` with receipt confirmation removed where a return was requested first."""
    confirmed = orders["confirmed_at"].copy()
    o = refund["o"]
    undo = (refund["kind"] == 1) & (refund["requested_at"] < confirmed[o])
    confirmed[o[undo]] = NEVER
    return confirmed


def reviews(
    rng: np.random.Generator, pop: Population, orders: Columns, confirmed: np.ndarray, params: Params
) -> Columns:
    """Reviews of delivered orders: hostile buyers write malicious 1-star reviews that sellers report.

    The constants are ``simulator.reviews``'s, which also derives the truth ``p_malicious`` (returned).
    """
    delivered = (orders["delivered_at"] < NEVER) & (orders["canceled_at"] == NEVER)
    b_all = orders["b"]
    fake = orders["kind"] == 2
    p = np.where(fake, 0.9, np.minimum(0.9, params.review_rate * (1 + 2 * pop.hostility[b_all])))
    o = np.flatnonzero(delivered & (rng.random(b_all.size) < p))
    b = b_all[o]
    n = o.size
    after = np.where(confirmed[o] < NEVER, confirmed[o], orders["delivered_at"][o])
    created = after + lag_days(rng, n, 2.0, 0.9)
    malicious = ~fake[o] & (rng.random(n) < rv.malice_prior(pop.hostility[b]))
    rating = rng.choice(np.arange(1, 6), n, p=rv.HONEST_RATINGS)
    rating = np.where(malicious, 1, np.where(fake[o], 5, rating))
    (m_median, m_sigma), (h_median, h_sigma) = rv.TEXT_MALICIOUS, rv.TEXT_HONEST
    text = np.where(
        malicious,
        m_median * np.exp(m_sigma * rng.standard_normal(n)),
        h_median * np.exp(h_sigma * rng.standard_normal(n)),
    )
    text = np.where(
        fake[o], rng.integers(0, rv.FAKE_TEXT_MAX, n), np.where(rng.random(n) < rv.NO_TEXT_P, 0, text)
    )
    text_length = np.round(text).astype(np.int64)
    report_p = np.where(malicious, rv.REPORT_P[0], rv.honest_report_prob(rating))
    reported = rng.random(n) < report_p
    reported_at = np.where(reported, created + lag_days(rng, n, *rv.REPORT_LAG), NEVER)
    removed = reported & (rng.random(n) < np.where(malicious, *rv.REMOVE_P))
    photos = ~fake[o] & (rng.random(n) < np.where(malicious, *rv.PHOTOS_P))
    return {
        "o": o,
        "b": b,
        "created_at": created,
        "rating": rating.astype(np.int64),
        "text_length": text_length,
        "has_photos": photos,
        "reported_by_seller_at": reported_at,
        "removed_as_malicious_at": np.where(removed, reported_at + lag_days(rng, n, *rv.REMOVAL_LAG), NEVER),
        "p_malicious": rv.malicious_posterior(pop.hostility[b], rating, text_length, photos, fake[o]),
    }


def disputes(rng: np.random.Generator, pop: Population, orders: Columns, params: Params) -> Columns:
    """Platform disputes of delivered regular orders; hostile, opportunistic buyers open more and lose more."""
    eligible = np.flatnonzero((orders["kind"] == 0) & (orders["canceled_at"] == NEVER) & ~orders["lost"])
    b_el = orders["b"][eligible]
    opened_mask = rng.random(eligible.size) < hazards.dispute_prob(pop, b_el, params)
    o = eligible[opened_mask]
    b = orders["b"][o]
    n = o.size
    lost = rng.random(n) < hazards.dispute_lost_prob(pop, b, params)
    opened = orders["delivered_at"][o] + lag_days(rng, n, *DISPUTE_OPEN_LAG)
    ruling = np.where(lost, 1, np.where(rng.random(n) < 0.65, 0, 2))  # buyer, seller, split
    return {
        "o": o,
        "b": b,
        "opened_at": opened,
        "closed_at": opened + lag_days(rng, n, *DISPUTE_CLOSE_LAG),
        "reason": rng.choice(5, n, p=[0.2, 0.35, 0.25, 0.1, 0.1]),
        "ruling": ruling,
        "lost": lost,
    }
