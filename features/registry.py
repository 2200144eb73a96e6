"""The signal registry: every buyer signal declared once, as data.

A :class:`~features.signal_types.Signal` (declared with the types of
:mod:`features.signal_types`) says which rows of which table it reads, how it aggregates
them, over which window, which way it moves risk, and how to explain it. The ~300 signals are generated
from compact specs in :mod:`features.specs`; training columns, monotone constraints,
the serving schema and ``docs/signals.md`` all derive from :func:`signals`.

Point in time: a signal as of ``T`` reads rows known strictly before ``T`` (in a window
of ``w`` days: known in ``[T - w days, T)``); when a row is known is decided by
:func:`features.pit.known_at` from the source's time column, lag, the state columns
its filter and measure read, and its deadlines.
"""

from __future__ import annotations

import functools

from features import contract, specs
from features.signal_types import Signal


def table_columns(name: str) -> tuple[str, ...]:
    """Columns of a contract table or a derived table."""
    from features import signals_devices

    if name == signals_devices.SHARED_DEVICES.name:
        return signals_devices.SHARED_DEVICES.column_names
    return contract.table(name).column_names


@functools.cache
def signals() -> tuple[Signal, ...]:
    """Every signal, in registry (column) order."""

    return specs.generate()


def mapping(name: str) -> dict[str, float]:
    """The declared value table ``name`` a ``mapped`` measure reads (``features.specs.MAPPINGS``).

    Raises:
        KeyError: No such table (named in the message).
    """

    if name not in specs.MAPPINGS:
        raise KeyError(f"unknown mapping {name!r}; declared: {sorted(specs.MAPPINGS)}")
    return specs.MAPPINGS[name]


def signal_names() -> list[str]:
    """Signal names in registry order: the feature-matrix columns and the serving schema."""
    return [s.name for s in signals()]


def get(name: str) -> Signal:
    """The signal called ``name``.

    Raises:
        KeyError: If there is none.
    """
    for signal in signals():
        if signal.name == name:
            return signal
    raise KeyError(f"unknown signal {name!r}")


def monotone_constraints(names: list[str] | None = None) -> list[int]:
    """LightGBM ``monotone_constraints`` for ``names`` (default: all signals), from risk_direction.

    The model predicts the probability of a bad outcome, so +1 (more is riskier) maps
    to an increasing constraint, -1 to decreasing, 0 to none.

    Raises:
        KeyError: If a name is not a signal.
    """
    by_name = {s.name: s.risk_direction for s in signals()}
    if names is None:
        return list(by_name.values())
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(f"not signals: {missing[:5]}")
    return [by_name[n] for n in names]


def activity_signals(names: list[str] | None = None) -> list[bool]:
    """Per name (default: all signals), whether it measures the volume of activity (``Signal.activity``)."""
    by_name = {s.name: s.activity for s in signals()}
    return list(by_name.values()) if names is None else [by_name[n] for n in names]


def reason_catalogue(names: list[str] | None = None) -> dict[str, str]:
    """The fixed reason catalogue (``features.specs.CATALOGUE``): code -> buyer-facing text, for the
    codes the signals ``names`` speak for (default: every signal), in catalogue order. Activity
    signals have no code and are not in it."""

    used = {s.reason_code for s in (signals() if names is None else [get(n) for n in names])}
    return {code: text for code, text in specs.CATALOGUE.items() if code in used}


def reason_codes(names: list[str] | None = None) -> list[str]:
    """Per name (default: all signals), its reason code ('' for a signal that is never a reason)."""
    by_name = {s.name: s.reason_code for s in signals()}
    return list(by_name.values()) if names is None else [by_name[n] for n in names]


def reasons(names: list[str] | None = None) -> dict[str, str]:
    """Buyer-facing reason text per signal name (default: all)."""
    by_name = {s.name: s.reason for s in signals()}
    return by_name if names is None else {n: by_name[n] for n in names}
