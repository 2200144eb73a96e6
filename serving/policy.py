"""The decision policy: a versioned YAML file, validated at load into frozen records.

Risk operations tune everything here without retraining: the stars each service needs,
amount caps and exposure limits per star, the minimum deposit ratio, fast-refund quotas,
evidence rules, hard declines and flags over snapshot signals. Amounts are written in
currency units and held as integer minor units (converted once, here, at load). Every
error names the offending key path (``services.fast_refund.amount_cap.6: ...``). See ``serving/policy.yaml``
for the shipped default and ``docs/serving.md`` for the meaning of each key.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from features.contract import REFUND_KINDS
from serving.money import MoneyError, currency_decimals, to_minor

PRESALE = "presale_ship_before_balance"
FAST_REFUND = "fast_refund"
SERVICES = (PRESALE, FAST_REFUND)
ALLOWANCE = "expected_loss_allowance"
EXPLORATION = "exploration"
STARS = (1, 2, 3, 4, 5)
PER_STAR = "per_star"
"""Field metadata key of a service's per-star tables (tuples indexed by ``star - 1``): a decision reads
them at the buyer's star only (``serving.decide.policy_read``)."""
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class PolicyError(ValueError):
    """An invalid policy file; the message starts with the offending key path."""


@dataclass(frozen=True)
class SignalRule:
    """A condition over one snapshot signal, used by hard declines and flags.

    Attributes:
        code: Stable reason or flag code returned to callers.
        signal: Signal name (must be one of the model's signals).
        op: Comparison operator, one of ``OPERATORS``.
        value: Threshold the signal is compared with.
        text: Human-readable explanation.
        services: Services the rule applies to.
    """

    code: str
    signal: str
    op: str
    value: float
    text: str
    services: tuple[str, ...]

    def fires(self, signal_value: float) -> bool:
        """Whether the rule holds for ``signal_value``; a missing (NaN) value never fires."""
        if math.isnan(signal_value):
            return False
        return OPERATORS[self.op](signal_value, self.value)


@dataclass(frozen=True)
class Exploration:
    """A budgeted share of would-be declines approved at random (``serving.decide.explore``).

    Attributes:
        share: Probability (0-1) that an eligible would-be decline is approved.
        monthly_loss_budget: Most expected loss (the head's, minor units) explored approvals may
            add per calendar month (UTC) and service; past it nothing is explored.
        seed: Seed of the draw (a replay with the same seed draws the same).
    """

    share: float
    monthly_loss_budget: int
    seed: int


@dataclass(frozen=True)
class PresalePolicy:
    """Ship-before-balance presale rules. Per-star tuples are indexed by ``star - 1``.

    Attributes:
        min_stars: Fewest stars eligible.
        amount_cap: Largest order amount per star (minor units).
        min_deposit_ratio: Smallest deposit / amount accepted (0-1).
        exposure_limit: Largest total outstanding balance shipped before payment, per star
            (minor units).
        expected_loss_allowance: Largest expected loss (the head's probability x the balance) per
            star, as a share of the balance (so a ceiling on the head's probability); None: no
            expected-loss check.
        exploration: The exploration share and its budget; None: no exploration.
    """

    min_stars: int
    amount_cap: tuple[int, ...] = field(metadata={PER_STAR: True})
    min_deposit_ratio: float
    exposure_limit: tuple[int, ...] = field(metadata={PER_STAR: True})
    expected_loss_allowance: tuple[float, ...] | None = field(default=None, metadata={PER_STAR: True})
    exploration: Exploration | None = None


@dataclass(frozen=True)
class FastRefundPolicy:
    """Fast-refund rules. Per-star tuples are indexed by ``star - 1``.

    Attributes:
        min_stars: Fewest stars eligible.
        amount_cap: Largest single fast refund per star (minor units).
        quota_count: Most fast refunds per quota window, per star.
        quota_amount: Largest total fast-refunded amount per quota window, per star (minor units).
        photos_required_above: Refunds above this amount (minor units) need ``min_photos`` photos.
        min_photos: Evidence photos required above ``photos_required_above``.
        kinds: Refund kinds eligible for a fast refund.
        expected_loss_allowance: Largest expected loss (the head's probability of the loss paying
            fast adds x the refund amount) per star, as a share of the refund amount; None: no
            expected-loss check.
        exploration: The exploration share and its budget; None: no exploration.
    """

    min_stars: int
    amount_cap: tuple[int, ...] = field(metadata={PER_STAR: True})
    quota_count: tuple[int, ...] = field(metadata={PER_STAR: True})
    quota_amount: tuple[int, ...] = field(metadata={PER_STAR: True})
    photos_required_above: int
    min_photos: int
    kinds: tuple[str, ...]
    expected_loss_allowance: tuple[float, ...] | None = field(default=None, metadata={PER_STAR: True})
    exploration: Exploration | None = None


@dataclass(frozen=True)
class ReviewPolicy:
    """Review screening (``POST /v1/reviews/assess``).

    Attributes:
        screened_max_rating: Reviews of at most this many stars are screened; others are published.
        moderation_capacity: Share of the screened reviews moderation can hold (declared; training
            proposes ``hold_above`` for it).
        hold_above: A screened review whose review-head probability reaches this is held for moderation.
    """

    screened_max_rating: int
    moderation_capacity: float
    hold_above: float


@dataclass(frozen=True)
class Policy:
    """The whole decision policy.

    Attributes:
        version: Reported with every decision.
        currency: ISO code all amounts are in; requests in another currency are rejected.
        decimals: The currency's decimals: an amount of ``n`` minor units is ``n / 10**decimals``.
        quota_window_days: Length of the fast-refund quota window, in days.
        max_reasons: Most reason codes returned per decision.
        presale: Ship-before-balance rules.
        fast_refund: Fast-refund rules.
        hard_declines: Signal rules that decline regardless of stars.
        flags: Signal rules reported as flags (they do not decline).
        reviews: Review screening; None when the file has no ``reviews`` section (every review is
            published).
    """

    version: str
    currency: str
    decimals: int
    quota_window_days: int
    max_reasons: int
    presale: PresalePolicy
    fast_refund: FastRefundPolicy
    hard_declines: tuple[SignalRule, ...]
    flags: tuple[SignalRule, ...]
    reviews: ReviewPolicy | None = None

    def signals(self) -> set[str]:
        """Names of every signal the policy reads."""
        return {rule.signal for rule in (*self.hard_declines, *self.flags)}


def _keys(value: Any, path: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{path}: expected a mapping, got {type(value).__name__}")
    required, optional = tuple(required), tuple(optional)
    for key in value:
        if key not in required and key not in optional:
            raise PolicyError(f"{path}.{key}: unknown key (expected one of {', '.join(required + optional)})")
    for key in required:
        if key not in value:
            raise PolicyError(f"{path}.{key}: required key missing")
    return dict(value)


def _number(value: Any, path: str, lo: float = 0.0, hi: float = math.inf, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{path}: expected a finite number, got {value!r}")
    if integer and value != int(value):
        raise PolicyError(f"{path}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise PolicyError(f"{path}: {value!r} is outside [{lo}, {hi}]")
    return int(value) if integer else float(value)


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{path}: expected a non-empty string, got {value!r}")
    return value


def _money(value: Any, path: str, decimals: int) -> int:
    """A non-negative amount in currency units from the file -> integer minor units, exactly."""
    _number(value, path)
    try:
        return to_minor(value if isinstance(value, int) else Decimal(repr(value)), decimals)
    except MoneyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


def _per_star(
    value: Any, path: str, min_stars: int, integer: bool = False, decimals: int | None = None
) -> tuple:
    """Read ``{star: value}``: every star from ``min_stars`` up is required, lower stars are 0.

    With ``decimals`` the values are amounts, returned in minor units.
    """
    if not isinstance(value, Mapping):
        raise PolicyError(f"{path}: expected a mapping of star (1-5) to a number")
    table = {}
    for star, amount in value.items():
        if isinstance(star, bool) or star not in STARS:
            raise PolicyError(f"{path}.{star}: star must be one of 1-5")
        if star < min_stars:
            raise PolicyError(f"{path}.{star}: star is below min_stars ({min_stars}); remove it")
        table[star] = (
            _number(amount, f"{path}.{star}", integer=integer)
            if decimals is None
            else _money(amount, f"{path}.{star}", decimals)
        )
    missing = [s for s in STARS if s >= min_stars and s not in table]
    if missing:
        raise PolicyError(f"{path}: missing stars {missing} (every star from min_stars up needs a value)")
    values = [table.get(s, 0) for s in STARS]
    if any(b < a for a, b in zip(values[min_stars - 1 :], values[min_stars:], strict=False)):
        raise PolicyError(f"{path}: values must not decrease as stars rise, got {values}")
    return tuple(values)


def _allowance(d: Mapping[str, Any], path: str, min_stars: int) -> tuple[float, ...] | None:
    """The optional per-star expected-loss allowance (a share of the money at risk, 0-1)."""
    if ALLOWANCE not in d:
        return None
    table = _per_star(d[ALLOWANCE], f"{path}.{ALLOWANCE}", min_stars)
    if any(v > 1 for v in table):
        raise PolicyError(f"{path}.{ALLOWANCE}: a share of the money at risk must be at most 1, got {table}")
    return table


def _exploration(d: Mapping[str, Any], path: str, decimals: int) -> Exploration | None:
    """The optional ``exploration: {share, monthly_loss_budget, seed}`` of a service."""
    if EXPLORATION not in d:
        return None
    path = f"{path}.{EXPLORATION}"
    e = _keys(d[EXPLORATION], path, ("share", "monthly_loss_budget", "seed"))
    return Exploration(
        share=_number(e["share"], f"{path}.share", hi=0.5),
        monthly_loss_budget=_money(e["monthly_loss_budget"], f"{path}.monthly_loss_budget", decimals),
        seed=int(_number(e["seed"], f"{path}.seed", hi=2**63 - 1, integer=True)),
    )


def _min_stars(value: Any, path: str) -> int:
    return int(_number(value, path, lo=1, hi=5, integer=True))


def _presale(raw: Any, path: str, decimals: int) -> PresalePolicy:
    d = _keys(
        raw,
        path,
        ("min_stars", "amount_cap", "min_deposit_ratio", "exposure_limit"),
        (ALLOWANCE, EXPLORATION),
    )
    min_stars = _min_stars(d["min_stars"], f"{path}.min_stars")
    return PresalePolicy(
        min_stars=min_stars,
        amount_cap=_per_star(d["amount_cap"], f"{path}.amount_cap", min_stars, decimals=decimals),
        min_deposit_ratio=_number(d["min_deposit_ratio"], f"{path}.min_deposit_ratio", hi=1.0),
        exposure_limit=_per_star(d["exposure_limit"], f"{path}.exposure_limit", min_stars, decimals=decimals),
        expected_loss_allowance=_allowance(d, path, min_stars),
        exploration=_exploration(d, path, decimals),
    )


def _fast_refund(raw: Any, path: str, decimals: int) -> FastRefundPolicy:
    d = _keys(
        raw,
        path,
        ("min_stars", "amount_cap", "quota_count", "quota_amount", "evidence", "kinds"),
        (ALLOWANCE, EXPLORATION),
    )
    min_stars = _min_stars(d["min_stars"], f"{path}.min_stars")
    evidence = _keys(d["evidence"], f"{path}.evidence", ("photos_required_above", "min_photos"))
    kinds = d["kinds"]
    if not isinstance(kinds, list) or not kinds:
        raise PolicyError(f"{path}.kinds: expected a non-empty list of refund kinds")
    for i, kind in enumerate(kinds):
        if kind not in REFUND_KINDS:
            raise PolicyError(
                f"{path}.kinds[{i}]: unknown refund kind {kind!r} (known: {', '.join(REFUND_KINDS)})"
            )
    return FastRefundPolicy(
        min_stars=min_stars,
        amount_cap=_per_star(d["amount_cap"], f"{path}.amount_cap", min_stars, decimals=decimals),
        quota_count=_per_star(d["quota_count"], f"{path}.quota_count", min_stars, integer=True),
        quota_amount=_per_star(d["quota_amount"], f"{path}.quota_amount", min_stars, decimals=decimals),
        photos_required_above=_money(
            evidence["photos_required_above"], f"{path}.evidence.photos_required_above", decimals
        ),
        min_photos=int(_number(evidence["min_photos"], f"{path}.evidence.min_photos", hi=100, integer=True)),
        kinds=tuple(kinds),
        expected_loss_allowance=_allowance(d, path, min_stars),
        exploration=_exploration(d, path, decimals),
    )


def _reviews(raw: Any, path: str) -> ReviewPolicy:
    d = _keys(raw, path, ("screened_max_rating", "moderation_capacity", "hold_above"))
    capacity = _number(d["moderation_capacity"], f"{path}.moderation_capacity", hi=1.0)
    if capacity <= 0:
        raise PolicyError(f"{path}.moderation_capacity: must be > 0, got {capacity!r}")
    return ReviewPolicy(
        screened_max_rating=int(_number(d["screened_max_rating"], f"{path}.screened_max_rating", 1, 5, True)),
        moderation_capacity=capacity,
        hold_above=_number(d["hold_above"], f"{path}.hold_above", hi=1.0),
    )


def _rules(raw: Any, path: str) -> tuple[SignalRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError(f"{path}: expected a list of rules")
    rules, codes = [], set()
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        d = _keys(item, p, ("code", "signal", "op", "value", "text"), ("services",))
        code = _text(d["code"], f"{p}.code")
        if code in codes:
            raise PolicyError(f"{p}.code: duplicate code {code!r}")
        codes.add(code)
        if d["op"] not in OPERATORS:
            raise PolicyError(f"{p}.op: unknown operator {d['op']!r} (known: {' '.join(OPERATORS)})")
        services = d.get("services", list(SERVICES))
        if not isinstance(services, list) or not services:
            raise PolicyError(f"{p}.services: expected a non-empty list of services")
        for j, service in enumerate(services):
            if service not in SERVICES:
                raise PolicyError(f"{p}.services[{j}]: unknown service {service!r}")
        rules.append(
            SignalRule(
                code=code,
                signal=_text(d["signal"], f"{p}.signal"),
                op=d["op"],
                value=_number(d["value"], f"{p}.value", lo=-math.inf),
                text=_text(d["text"], f"{p}.text"),
                services=tuple(services),
            )
        )
    return tuple(rules)


def parse_policy(raw: Any, signal_names: Iterable[str] | None = None) -> Policy:
    """Validate a parsed policy document.

    Args:
        raw: The document (as read from YAML).
        signal_names: The model's signals; when given, every rule's signal must be one.

    Returns:
        The frozen policy.

    Raises:
        PolicyError: Naming the first offending key.
    """
    top = ("version", "currency", "quota_window_days", "max_reasons", "services", "hard_declines", "flags")
    d = _keys(raw, "policy", top, ("reviews",))
    version = d["version"]
    if isinstance(version, bool) or not isinstance(version, str | int | float):
        raise PolicyError(f"version: expected a string, got {version!r}")
    currency = _text(d["currency"], "currency")
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise PolicyError(f"currency: expected a 3-letter ISO code, got {currency!r}")
    services = _keys(d["services"], "services", SERVICES)
    decimals = currency_decimals(currency)
    policy = Policy(
        version=str(version),
        currency=currency,
        decimals=decimals,
        quota_window_days=int(
            _number(d["quota_window_days"], "quota_window_days", lo=1, hi=365, integer=True)
        ),
        max_reasons=int(_number(d["max_reasons"], "max_reasons", lo=0, hi=10, integer=True)),
        presale=_presale(services[PRESALE], f"services.{PRESALE}", decimals),
        fast_refund=_fast_refund(services[FAST_REFUND], f"services.{FAST_REFUND}", decimals),
        hard_declines=_rules(d["hard_declines"], "hard_declines"),
        flags=_rules(d["flags"], "flags"),
        reviews=_reviews(d["reviews"], "reviews") if "reviews" in d else None,
    )
    if signal_names is not None:
        check_signals(policy, signal_names)
    return policy


def check_signals(policy: Policy, signal_names: Iterable[str]) -> None:
    """Raise ``PolicyError`` naming each rule whose signal the model does not have."""
    known = set(signal_names)
    for section, rules in (("hard_declines", policy.hard_declines), ("flags", policy.flags)):
        for i, rule in enumerate(rules):
            if rule.signal not in known:
                raise PolicyError(f"{section}[{i}].signal: {rule.signal!r} is not one of the model's signals")


def load_policy(path: str | Path, signal_names: Iterable[str] | None = None) -> Policy:
    """Read and validate the policy file at ``path`` (see ``parse_policy``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path}: not valid YAML: {exc}") from exc
    return parse_policy(raw, signal_names)
