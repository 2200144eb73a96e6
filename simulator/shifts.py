"""Declared shifts of the marketplace, each from the first day of a given month.

    stress@2024-09[:share]        a share of buyers (default 0.2) falls into distress that month and
                                  recovers as the stress chain lets it (months, not days)
    fraud_wave@2024-09[:share]    new fraudulent accounts (default 1% of the buyers) register in the
                                  month's first two weeks, in device-sharing groups
    category_mix@2024-09[:share]  that share (default 0.3) of everyday orders moves to electronics
    bureau@2024-09[:factor]       the bureau rescales its readings: ``score x factor + 500 x (1 -
                                  factor)`` (default 0.9: readings x 0.9 + 50)

``python -m simulator --shift KIND@YYYY-MM[:strength]`` (repeatable) or ``RunConfig(shifts=...)``.
A shift changes the latent state (stress, the population) or what the platform observes (order
categories, bureau readings) *before* the hazards read it, so the truth, computed from the same
hazards, stays the probability of what happened. Shifts draw from their own generator
(``default_rng((seed, part, SHIFT_STREAM))``): a run without shifts draws exactly what it drew
before they existed, and writes the same tables.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.contract import CATEGORIES

KINDS = {"stress": 0.2, "fraud_wave": 0.01, "category_mix": 0.3, "bureau": 0.9}
"""Each kind and its default strength."""
WAVE_DAYS = 14  # the wave's accounts register within this many days of the month's start
MIX_TARGET = "electronics"  # the category a mix shift moves orders to
BUREAU_PIVOT = 500.0  # the score a bureau rescale leaves unchanged
SHIFT_STREAM = 7_000_001  # the shifts' generator key beside (seed, part)
_SPEC = re.compile(r"^(?P<kind>[a-z_]+)@(?P<year>\d{4})-(?P<month>\d{2})(?::(?P<strength>[0-9.eE+-]+))?$")


@dataclass(frozen=True)
class Shift:
    """One declared shift: ``kind`` from the first day of ``start`` (a first of month), ``strength``."""

    kind: str
    start: dt.date
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"shift kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.start.day != 1:
            raise ValueError(f"shift {self.kind}: starts on the first of a month, got {self.start}")
        bounds = (0.0, 2.0) if self.kind == "bureau" else (0.0, 1.0)
        if not bounds[0] < self.strength <= bounds[1]:
            raise ValueError(
                f"shift {self.kind}: strength must be in ({bounds[0]}, {bounds[1]}], got {self.strength}"
            )

    def __str__(self) -> str:
        return f"{self.kind}@{self.start:%Y-%m}:{self.strength:g}"


def parse(spec: str) -> Shift:
    """``KIND@YYYY-MM[:strength]`` as a ``Shift``; ``ValueError`` naming what is wrong."""
    m = _SPEC.match(spec.strip())
    if m is None:
        raise ValueError(f"shift {spec!r}: expected KIND@YYYY-MM[:strength], KIND one of {', '.join(KINDS)}")
    try:
        start = dt.date(int(m["year"]), int(m["month"]), 1)
    except ValueError as exc:
        raise ValueError(f"shift {spec!r}: {exc}") from exc
    kind = m["kind"]
    if kind not in KINDS:
        raise ValueError(f"shift {spec!r}: kind one of {', '.join(KINDS)}")
    try:
        strength = float(m["strength"]) if m["strength"] else KINDS[kind]
    except ValueError as exc:
        raise ValueError(f"shift {spec!r}: strength is not a number") from exc
    return Shift(kind, start, strength)


def month_index(shift: Shift, start: dt.date, months: int) -> int:
    """The shift's month as an index of the simulated period; ``ValueError`` outside it."""
    m = (shift.start.year - start.year) * 12 + shift.start.month - start.month
    if not 0 <= m < months:
        raise ValueError(f"shift {shift}: outside the simulated period ({start:%Y-%m}, {months} months)")
    return m


def of_kind(shifts: Sequence[tuple[Shift, int]], kind: str) -> list[tuple[Shift, int]]:
    """The shifts of ``kind`` with their month index."""
    return [(s, m) for s, m in shifts if s.kind == kind]


def generator(seed: int, part: int) -> np.random.Generator:
    """The shifts' own generator for shard ``part``."""
    return np.random.default_rng((seed, part, SHIFT_STREAM))


def category_weights(
    weights: np.ndarray, month: np.ndarray, shifts: Sequence[tuple[Shift, int]]
) -> np.ndarray:
    """Per-order category weights with each mix shift applied from its month (``weights`` itself without)."""
    mixes = of_kind(shifts, "category_mix")
    if not mixes:
        return weights
    out = weights / weights.sum(axis=1, keepdims=True)
    target = np.zeros(out.shape[1])
    target[CATEGORIES.index(MIX_TARGET)] = 1.0
    for shift, m in mixes:
        after = month >= m
        out[after] = (1 - shift.strength) * out[after] + shift.strength * target
    return out


def bureau_scores(raw: np.ndarray, month: np.ndarray, shifts: Sequence[tuple[Shift, int]]) -> np.ndarray:
    """Bureau readings with each rescale applied to the readings of its month on (``raw`` itself without)."""
    for shift, m in of_kind(shifts, "bureau"):
        after = month >= m
        raw = np.where(after, raw * shift.strength + BUREAU_PIVOT * (1 - shift.strength), raw)
    return raw
