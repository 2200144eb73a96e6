"""The buyers' stress chain: a monthly Markov chain over normal, strained and distressed.

The population draws each buyer's path from it (``population.stress_path``), a declared stress
shift restarts a buyer's path from distress through it (``population.apply_shifts``), and the
hazards and the truth chain through the very same transitions.
"""

from __future__ import annotations

import numpy as np

from simulator.config import Params

STATES = 3  # stress: 0 normal, 1 strained, 2 distressed
DISTRESSED = 2


def stress_transitions(fragility: np.ndarray, params: Params) -> np.ndarray:
    """Per-buyer monthly transition matrices of the stress chain (``n x 3 x 3``, rows sum to 1)."""
    p = params
    n = fragility.size
    t = np.zeros((n, STATES, STATES))
    t[:, 0, 1] = np.minimum(0.5, p.stress_shock[0] * fragility)
    t[:, 0, 2] = np.minimum(0.2, p.stress_shock[1] * fragility)
    t[:, 1, 0] = p.stress_recover[0]
    t[:, 1, 2] = np.minimum(0.5, p.stress_worsen * fragility)
    t[:, 2, 1] = p.stress_recover[1]
    t[:, 2, 0] = p.stress_recover[2]
    for s in range(STATES):
        t[:, s, s] = 1.0 - t[:, s, :].sum(axis=1)
    return t
