"""Typed configuration of a simulation run and of the generative process.

``RunConfig`` says what to generate (size, period, seed, sharding); ``Params``
holds every behavioural constant of the generative process, with units.
``docs/simulator.md`` explains each value and why it is plausible.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

from simulator.shifts import Shift, month_index

ID_STRIDE = 10**10
"""Ids of every table are ``part * ID_STRIDE + local index + 1``: unique without coordination."""


@dataclass(frozen=True)
class Params:
    """Constants of the generative process (rates are per buyer per month unless stated)."""

    # --- population -----------------------------------------------------------------------
    tier_shares: tuple[float, ...] = (0.15, 0.25, 0.25, 0.20, 0.15)
    tier_activity: tuple[float, ...] = (1.35, 1.15, 1.0, 0.85, 0.7)
    tier_spend: tuple[float, ...] = (1.4, 1.2, 1.0, 0.85, 0.7)
    new_buyer_share_per_month: float = 0.012  # share of buyers registering in each simulated month
    max_new_buyer_share: float = 0.45
    account_age_years: float = 6.0  # pre-period buyers registered uniformly this far back
    reliability_mean_logit: float = 3.0  # reliability = sigmoid(mean + sd * z)
    reliability_sd_logit: float = 1.1
    fragility_sd: float = 0.6  # lognormal multiplier of stress shock probabilities
    opportunism_beta: tuple[float, float] = (0.6, 8.0)
    hostility_beta: tuple[float, float] = (0.5, 9.0)
    orders_median: float = 0.9  # median regular orders per month (before tier and season)
    orders_sigma: float = 0.9  # lognormal sigma of the activity level
    spend_sigma: float = 0.45  # lognormal sigma of the buyer's price level multiplier
    spend_reliability_corr: float = 0.25
    pay_later_share: float = 0.32  # buyers with a pay-later credit line
    credit_file_share: float = 0.85  # buyers the external bureau can score
    real_name_share: float = 0.8
    phone_verified_share: float = 0.95
    fraud_share: float = 0.003  # fraudsters (new accounts in device-sharing groups)
    fraud_group_size: tuple[int, int] = (4, 12)
    fraud_active_months: tuple[int, int] = (1, 4)
    ring_share: float = 0.005  # members of fake-order rings
    ring_size: tuple[int, int] = (8, 25)

    # --- financial stress: 3-state monthly Markov chain (normal, strained, distressed) ----
    stress_shock: tuple[float, float] = (0.03, 0.006)  # normal -> strained, normal -> distressed
    stress_worsen: float = 0.08  # strained -> distressed
    stress_recover: tuple[float, float, float] = (0.25, 0.15, 0.05)  # 1->0, 2->1, 2->0

    # --- activity -------------------------------------------------------------------------
    category_weights: tuple[float, ...] = (0.22, 0.14, 0.10, 0.13, 0.15, 0.08, 0.07, 0.05, 0.03, 0.03)
    category_median_price: tuple[float, ...] = (120, 150, 1500, 200, 60, 150, 250, 45, 3000, 3500)
    category_price_sigma: tuple[float, ...] = (0.6, 0.6, 0.7, 0.7, 0.5, 0.6, 0.6, 0.4, 0.6, 0.5)
    category_return_rate: tuple[float, ...] = (0.12, 0.05, 0.06, 0.05, 0.02, 0.04, 0.08, 0.02, 0.05, 0.04)
    fraud_category_weights: tuple[float, ...] = (0.02, 0.05, 0.45, 0.03, 0.0, 0.0, 0.0, 0.0, 0.3, 0.15)
    channel_weights: tuple[float, ...] = (0.62, 0.10, 0.18, 0.10)
    payment_weights: tuple[float, ...] = (0.45, 0.25, 0.12, 0.18)  # wallet, bank, credit card, pay later
    month_season: tuple[float, ...] = (0.9, 0.8, 0.95, 0.95, 1.0, 1.25, 0.95, 0.95, 1.0, 1.05, 1.5, 1.15)
    weekend_factor: float = 1.15
    festival_day_factor: float = 6.0  # regular-order intensity on June 18 and November 11
    cancel_rate: float = 0.03
    lost_parcel_rate: float = 0.008
    sellers: int = 20000
    logins_per_order: float = 1.0
    cs_rate: float = 0.12
    cs_per_order: float = 0.04
    review_rate: float = 0.35
    vip_spend_12m: float = 15000.0  # trailing 12-month spend that makes a buyer VIP
    credit_reading_rate: float = 0.8  # probability of a monthly score reading

    # --- presales (two-stage, June 18 and November 11) ------------------------------------
    presales_per_festival: float = 0.18  # mean presale orders per buyer and festival
    presale_nov_factor: float = 1.6
    presale_category_weights: tuple[float, ...] = (0.15, 0.30, 0.25, 0.05, 0.0, 0.05, 0.0, 0.0, 0.1, 0.1)
    deposit_share: tuple[float, float] = (0.10, 0.20)

    # --- historical decisions: the legacy rules (features.legacy) plus random exploration -
    presale_explore_share: float = 0.03  # share of presales the rule declines that ship early anyway
    fast_refund_explore_share: float = 0.03  # share of other refund requests (not lost parcels) paid fast

    # --- outcome logits (the hazard functions; see simulator.hazards) --------------------
    presale_default_base: float = -4.6
    presale_default_rel: float = 1.1  # per unit of -z_reliability
    presale_default_stress: tuple[float, float] = (1.4, 2.8)  # strained, distressed
    presale_default_amount: float = 0.35  # per log unit of amount over 1000
    presale_moral_hazard: float = 10.0  # logit shift per unit of opportunism when shipped before the balance
    refund_opportunism: float = 3.0  # refund probability multiplier is 1 + this * opportunism
    refund_bad_base: float = -4.0
    refund_bad_opportunism: float = 10.0
    refund_bad_rel: float = 0.5
    refund_bad_stress: tuple[float, float] = (0.6, 1.2)
    dispute_base: float = 0.004  # per order
    dispute_hostility: float = 12.0
    dispute_opportunism: float = 6.0
    dispute_lost_base: float = -1.4
    dispute_lost_traits: float = 6.0  # per unit of hostility + opportunism
    bill_bad_base: float = -5.0
    bill_bad_rel: float = 1.3
    bill_bad_stress: tuple[float, float] = (1.6, 3.2)
    pay_later_heavy: float = 0.45  # pay-later share of orders for credit-line holders
    violation_hostile_rate: float = 0.25  # abusive-language findings per unit of hostility^2
    severe_share_hostile: float = 0.05
    fraud_confirm_rate: float = 0.35  # confirmed-fraud findings per active month of a fraudster
    fraud_default: float = 0.9  # presale default / bill delinquency probability for fraudsters
    fraud_orders: float = 3.0  # extra high-value orders per active month
    ring_violation_rate: float = 0.10
    ring_severe_share: float = 0.35
    ring_fake_orders: float = 3.0


@dataclass(frozen=True)
class RunConfig:
    """What one simulator run generates.

    Attributes:
        buyers: Number of buyer accounts (ids 1..buyers).
        months: Simulated calendar months; the export is taken at the end of the last.
        seed: Master seed; shard k draws from ``numpy.random.default_rng((seed, k))``.
        start: First day of the simulated period (UTC midnight, first of a month).
        shard_size: Buyers per shard (and per parquet part).
        params: Generative-process constants.
        shifts: Declared shifts of the marketplace (``simulator.shifts``), each from its month.
    """

    buyers: int
    months: int
    seed: int = 0
    start: dt.date = dt.date(2023, 1, 1)
    shard_size: int = 50_000
    params: Params = field(default_factory=Params)
    shifts: tuple[Shift, ...] = ()

    def __post_init__(self) -> None:
        if self.buyers < 1:
            raise ValueError(f"buyers must be >= 1, got {self.buyers}")
        if self.months < 1:
            raise ValueError(f"months must be >= 1, got {self.months}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.start.day != 1:
            raise ValueError(f"start must be the first day of a month, got {self.start}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not isinstance(self.shifts, tuple) or not all(isinstance(s, Shift) for s in self.shifts):
            raise TypeError("shifts must be a tuple of simulator.shifts.Shift")
        self.declared_shifts  # noqa: B018 - each shift's month must lie in the period

    @property
    def declared_shifts(self) -> tuple[tuple[Shift, int], ...]:
        """Each shift with its month index in the period (``ValueError`` for one outside it)."""
        return tuple((s, month_index(s, self.start, self.months)) for s in self.shifts)

    @property
    def shards(self) -> int:
        """Number of shards (parts)."""
        return -(-self.buyers // self.shard_size)

    def shard_range(self, part: int) -> tuple[int, int]:
        """Inclusive buyer id range of shard ``part``."""
        lo = part * self.shard_size + 1
        return lo, min(self.buyers, lo + self.shard_size - 1)


def params_dict(params: Params) -> dict:
    """The parameters as a JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}
