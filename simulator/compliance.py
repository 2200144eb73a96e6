"""Compliance findings: abusive language, ring fake orders and scalping, confirmed fraud."""

from __future__ import annotations

import numpy as np

from features import contract
from simulator import hazards
from simulator.activity import Columns, expand_counts
from simulator.calendar import Calendar, sample_in_month
from simulator.config import Params
from simulator.population import Population


def violations(rng: np.random.Generator, pop: Population, cal: Calendar, params: Params) -> Columns:
    """Findings per kind: Poisson per buyer-month at ``hazards.violation_rates``, severity by kind."""
    parts = []
    for kind, rate, severity in hazards.violation_rates(pop, cal, params):
        b, m = expand_counts(rng, rate[:, : cal.months])
        parts.append(
            {
                "b": b,
                "ts": sample_in_month(cal, rng, m, pop.registered_at[b]),
                "kind": np.full(b.size, contract.VIOLATION_KINDS.index(kind)),
                "severity": rng.choice(3, b.size, p=np.asarray(severity) / sum(severity)) + 1,
            }
        )
    return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}
