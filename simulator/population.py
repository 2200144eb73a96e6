"""Draw the buyers of one shard: latent traits, groups, registration and the stress path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from simulator import shifts
from simulator.calendar import DAY, NEVER, Calendar, uniform_between
from simulator.config import Params
from simulator.shifts import Shift
from simulator.stress import DISTRESSED, stress_transitions

BURN_IN_MONTHS = 24
# A fraudster's traits (draw_population, fraud_wave): reliability z ~ N(mean, sd), opportunism
# ~ Beta, activity jitter, spend multiplier, and the chances of a credit file, a real name, a
# pay-later line.
FRAUD_REL_Z = (-2.0, 0.5)
FRAUD_OPPORTUNISM_BETA = (4, 3)
FRAUD_ACTIVITY_SD = 0.3
FRAUD_SPEND = 1.5
FRAUD_CREDIT_FILE = 0.5
FRAUD_REAL_NAME = 0.4
FRAUD_PAY_LATER = 0.8


@dataclass(frozen=True)
class Population:
    """Buyers of one shard. Arrays are aligned on the buyer (length ``n``).

    Attributes:
        buyer_id: Global buyer ids (contiguous).
        city_tier: 1 (largest cities) to 5.
        registered_at: Registration instant (seconds).
        reg_month: Month index of registration (-1 if before the period).
        real_name_at: Real-name verification instant or ``NEVER``.
        phone_at: Phone verification instant or ``NEVER``.
        rel_z: Standard-normal reliability factor (higher pays more reliably).
        reliability: ``sigmoid(mean + sd * rel_z)``, the probability-like trait written to truth.
        fragility: Multiplier of the stress shock probabilities.
        opportunism: Refund opportunism in [0, 1].
        hostility: Hostility in [0, 1] (malicious reviews, abusive contacts, frivolous disputes).
        activity: Regular orders per month before season (heavy-tailed, by tier).
        spend: Price-level multiplier of the buyer's orders.
        pay_later: Holds a pay-later credit line.
        credit_file: The external bureau can score the buyer.
        bureau_bias: Persistent error of the bureau's view (score points).
        fraudster: Member of a fraud group.
        fraud_group: Local fraud-group index or -1.
        ring: Member of a fake-order ring.
        ring_id: Local ring index or -1.
        active_until: First month index in which the buyer is no longer active
            (fraudsters abandon their accounts; ``months + 3`` otherwise).
        stress: Stress state per month (``n x (months + 3)``), 0 normal, 1 strained, 2 distressed.
    """

    buyer_id: np.ndarray
    city_tier: np.ndarray
    registered_at: np.ndarray
    reg_month: np.ndarray
    real_name_at: np.ndarray
    phone_at: np.ndarray
    rel_z: np.ndarray
    reliability: np.ndarray
    fragility: np.ndarray
    opportunism: np.ndarray
    hostility: np.ndarray
    activity: np.ndarray
    spend: np.ndarray
    pay_later: np.ndarray
    credit_file: np.ndarray
    bureau_bias: np.ndarray
    fraudster: np.ndarray
    fraud_group: np.ndarray
    ring: np.ndarray
    ring_id: np.ndarray
    active_until: np.ndarray
    stress: np.ndarray

    @property
    def n(self) -> int:
        """Number of buyers."""
        return self.buyer_id.size


def _groups(rng: np.random.Generator, members: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Split ``members`` (buyer indices) into consecutive groups of random size; return group per member."""
    group = np.empty(members.size, dtype=np.int64)
    pos, g = 0, 0
    while pos < members.size:
        k = int(rng.integers(size[0], size[1] + 1))
        group[pos : pos + k] = g
        pos, g = pos + k, g + 1
    return group


def stress_path(rng: np.random.Generator, fragility: np.ndarray, steps: int, params: Params) -> np.ndarray:
    """Monthly stress states after a burn-in from "normal" (``n x steps``, int8)."""
    trans = stress_transitions(fragility, params)
    cum = np.cumsum(trans, axis=2)
    n = fragility.size
    state = np.zeros(n, dtype=np.int64)
    out = np.empty((n, steps), dtype=np.int8)
    rows = np.arange(n)
    for k in range(BURN_IN_MONTHS + steps):
        u = rng.random(n)
        state = (u[:, None] > cum[rows, state, :2]).sum(axis=1)
        if k >= BURN_IN_MONTHS:
            out[:, k - BURN_IN_MONTHS] = state
    return out


def draw_population(
    rng: np.random.Generator, first_id: int, n: int, cal: Calendar, params: Params
) -> Population:
    """Draw ``n`` buyers with ids ``first_id..first_id + n - 1``.

    Args:
        rng: The shard's generator.
        first_id: Id of the first buyer of the shard.
        n: Buyers in the shard.
        cal: The calendar (period and horizon).
        params: Generative constants.

    Returns:
        The shard's population, traits never written to the raw tables.
    """
    p = params
    months = cal.months
    tier = rng.choice(5, size=n, p=np.array(p.tier_shares) / sum(p.tier_shares)) + 1
    rel_z = rng.standard_normal(n)
    spend_z = p.spend_reliability_corr * rel_z + np.sqrt(
        1 - p.spend_reliability_corr**2
    ) * rng.standard_normal(n)
    spend = np.asarray(p.tier_spend)[tier - 1] * np.exp(p.spend_sigma * spend_z - p.spend_sigma**2 / 2)
    activity = (
        p.orders_median
        * np.asarray(p.tier_activity)[tier - 1]
        * np.exp(p.orders_sigma * rng.standard_normal(n))
    )
    opportunism = rng.beta(*p.opportunism_beta, size=n)
    hostility = rng.beta(*p.hostility_beta, size=n)
    fragility = np.exp(p.fragility_sd * rng.standard_normal(n) - 0.3 * rel_z - p.fragility_sd**2 / 2)

    # registration: most accounts predate the period, a share registers during it
    new_share = min(p.max_new_buyer_share, p.new_buyer_share_per_month * months)
    is_new = rng.random(n) < new_share
    period_start = int(cal.month_start[0])
    registered_at = np.where(
        is_new,
        uniform_between(rng, np.full(n, period_start), np.full(n, cal.export_at)),
        period_start - (rng.random(n) * p.account_age_years * 365 * DAY).astype(np.int64) - 1,
    )

    # fraud groups: new accounts registering together, low reliability, high-value and pay-later
    fraudster = rng.random(n) < p.fraud_share
    fraud_idx = np.flatnonzero(fraudster)
    rng.shuffle(fraud_idx)
    fraud_group = np.full(n, -1, dtype=np.int64)
    active_until = np.full(n, months + 3, dtype=np.int64)
    if fraud_idx.size:
        groups = _groups(rng, fraud_idx, p.fraud_group_size)
        fraud_group[fraud_idx] = groups
        n_groups = groups.max() + 1
        group_start = uniform_between(rng, np.full(n_groups, period_start), np.full(n_groups, cal.export_at))
        registered_at[fraud_idx] = group_start[groups] + (rng.random(fraud_idx.size) * 14 * DAY).astype(
            np.int64
        )
        registered_at[fraud_idx] = np.minimum(registered_at[fraud_idx], cal.export_at - 1)
        rel_z[fraud_idx] = FRAUD_REL_Z[0] + FRAUD_REL_Z[1] * rng.standard_normal(fraud_idx.size)
        opportunism[fraud_idx] = rng.beta(*FRAUD_OPPORTUNISM_BETA, size=fraud_idx.size)
        activity[fraud_idx] = p.fraud_orders * np.exp(FRAUD_ACTIVITY_SD * rng.standard_normal(fraud_idx.size))
        spend[fraud_idx] *= FRAUD_SPEND
    ring = (rng.random(n) < p.ring_share) & ~fraudster
    ring_idx = np.flatnonzero(ring)
    rng.shuffle(ring_idx)
    ring_id = np.full(n, -1, dtype=np.int64)
    if ring_idx.size:
        ring_id[ring_idx] = _groups(rng, ring_idx, p.ring_size)
        rel_z[ring_idx] -= 0.5

    reg_month = cal.month_index(registered_at)
    reg_month = np.where(registered_at < period_start, -1, reg_month)
    if fraud_idx.size:
        life = rng.integers(p.fraud_active_months[0], p.fraud_active_months[1] + 1, size=fraud_idx.size)
        active_until[fraud_idx] = reg_month[fraud_idx] + life

    pay_later = (rng.random(n) < p.pay_later_share) | (fraudster & (rng.random(n) < FRAUD_PAY_LATER))
    credit_file = rng.random(n) < np.where(fraudster, FRAUD_CREDIT_FILE, p.credit_file_share)
    real_name = rng.random(n) < np.where(fraudster, FRAUD_REAL_NAME, p.real_name_share)
    phone = rng.random(n) < p.phone_verified_share
    real_name_at = np.where(real_name, registered_at + (rng.exponential(20, n) * DAY).astype(np.int64), NEVER)
    phone_at = np.where(phone, registered_at + (rng.exponential(0.02, n) * DAY).astype(np.int64), NEVER)

    return Population(
        buyer_id=np.arange(first_id, first_id + n, dtype=np.int64),
        city_tier=tier.astype(np.int64),
        registered_at=registered_at.astype(np.int64),
        reg_month=reg_month.astype(np.int64),
        real_name_at=real_name_at.astype(np.int64),
        phone_at=phone_at.astype(np.int64),
        rel_z=rel_z,
        reliability=1 / (1 + np.exp(-(p.reliability_mean_logit + p.reliability_sd_logit * rel_z))),
        fragility=fragility,
        opportunism=opportunism,
        hostility=hostility,
        activity=activity,
        spend=spend,
        pay_later=pay_later,
        credit_file=credit_file,
        bureau_bias=30.0 * rng.standard_normal(n),
        fraudster=fraudster,
        fraud_group=fraud_group,
        ring=ring,
        ring_id=ring_id,
        active_until=active_until,
        stress=stress_path(rng, fragility, months + 3, params),
    )


def fraud_wave(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    params: Params,
    month: int,
    share: float,
    days: int,
) -> Population:
    """The population with ``share`` of its ordinary buyers replaced by fraudsters registering in groups
    within ``days`` of month ``month``'s start (``simulator.shifts``: a fraud-ring wave).

    The replaced buyers keep their ids; everything about them is a new fraudulent account's: the
    registration, the traits ``draw_population`` gives fraudsters, a short active life.
    """
    idx = np.flatnonzero(~pop.fraudster & ~pop.ring)
    idx = np.sort(rng.choice(idx, size=min(idx.size, round(share * pop.n)), replace=False))
    if idx.size == 0:
        return pop
    k, p = idx.size, params
    a = {f: getattr(pop, f).copy() for f in Population.__dataclass_fields__}
    groups = _groups(rng, idx, p.fraud_group_size)
    start = int(cal.month_start[month])
    group_start = start + (rng.random(groups.max() + 1) * days * DAY).astype(np.int64)
    registered = np.minimum(
        group_start[groups] + (rng.random(k) * 2 * DAY).astype(np.int64), cal.export_at - 1
    )
    a["registered_at"][idx] = registered
    a["reg_month"][idx] = cal.month_index(registered)
    a["fraudster"][idx] = True
    a["fraud_group"][idx] = (a["fraud_group"].max() + 1) + groups
    a["rel_z"][idx] = FRAUD_REL_Z[0] + FRAUD_REL_Z[1] * rng.standard_normal(k)
    a["reliability"] = 1 / (1 + np.exp(-(p.reliability_mean_logit + p.reliability_sd_logit * a["rel_z"])))
    a["opportunism"][idx] = rng.beta(*FRAUD_OPPORTUNISM_BETA, size=k)
    a["activity"][idx] = p.fraud_orders * np.exp(FRAUD_ACTIVITY_SD * rng.standard_normal(k))
    a["spend"][idx] *= FRAUD_SPEND
    a["active_until"][idx] = month + rng.integers(
        p.fraud_active_months[0], p.fraud_active_months[1] + 1, size=k
    )
    a["pay_later"][idx] = rng.random(k) < FRAUD_PAY_LATER
    a["credit_file"][idx] = rng.random(k) < FRAUD_CREDIT_FILE
    real_name = rng.random(k) < FRAUD_REAL_NAME
    a["real_name_at"][idx] = np.where(
        real_name, registered + (rng.exponential(20, k) * DAY).astype(np.int64), NEVER
    )
    a["phone_at"][idx] = np.where(
        a["phone_at"][idx] < NEVER, registered + (rng.exponential(0.02, k) * DAY).astype(np.int64), NEVER
    )
    return Population(**a)


def apply_shifts(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    params: Params,
    declared: Sequence[tuple[Shift, int]],
) -> Population:
    """The population with the declared stress shocks and fraud waves (``simulator.shifts``; the same
    object without any). ``declared``: each shift with its month index (``RunConfig.declared_shifts``)."""
    for shift, m in shifts.of_kind(declared, "stress"):
        stress = pop.stress.copy()
        hit = np.flatnonzero(rng.random(pop.n) < shift.strength)
        # Distressed at month m, then the chain's own transitions (what the truth chains through).
        cum = np.cumsum(stress_transitions(pop.fragility[hit], params), axis=2)
        rows, state = np.arange(hit.size), np.full(hit.size, DISTRESSED)
        stress[hit, m] = DISTRESSED
        for k in range(m + 1, stress.shape[1]):
            state = (rng.random(hit.size)[:, None] > cum[rows, state, :2]).sum(axis=1)
            stress[hit, k] = state
        pop = replace(pop, stress=stress)
    for shift, m in shifts.of_kind(declared, "fraud_wave"):
        pop = fraud_wave(rng, pop, cal, params, m, shift.strength, shifts.WAVE_DAYS)
    return pop
