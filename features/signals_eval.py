"""Evaluate registry signals for a sorted spine: the vectorised engine behind the builder.

Signals are grouped by *event set* (table, time column, lag, and the state columns and
deadlines that decide when a row is known). Each set is located once by
:func:`features.pit.locate` (one sort, one ``searchsorted`` per window bound); each
signal is then a windowed reduction over positions ``[lower, end)`` of the sorted rows:
counts from one cumulative sum, sums, minima, maxima and distinct-value bitmasks from
one ``reduceat``, latest/earliest rows from running indices. Filters on columns that do
not move the known time are masks inside a set, so e.g. all per-category order counts
share one sort. Columns are encoded once per table as numbers (:func:`_encode`).

Every reduction reads a buyer's own contiguous rows only, so values do not depend on
which other buyers are present (shard builds equal the whole build bit for bit).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import contract, pit, registry, signals_devices
from features.signal_types import Cond, Signal, Source, parse_measure


def evaluate(
    tables: dict[str, pd.DataFrame], buyer: np.ndarray, as_of: np.ndarray, signals: Sequence[Signal]
) -> Iterator[tuple[str, np.ndarray]]:
    """Signal values (float64) for spine rows sorted by (buyer, as_of), one signal at a time
    (the caller keeps what it needs: a build holds one float64 column at a time).

    Args:
        tables: Raw (and derived) tables by name; a missing table counts as empty.
        buyer: Spine buyer ids, sorted.
        as_of: Spine instants in microseconds, sorted within each buyer.
        signals: The signals to evaluate.

    Yields:
        ``(signal name, values aligned with the spine)``, grouped by the event sets they read
        (``evaluation_order``); each event set's cached arrays (sized by its table, not the spine)
        are freed after its last signal, so few sets are alive at once.
    """
    signals = evaluation_order(signals)
    context = _Context(tables, buyer, as_of, _windows_by_set(signals))
    keys = [sorted({_set_key(source) for source, _ in _sources(signal)}) for signal in signals]
    last = {key: i for i, signal_keys in enumerate(keys) for key in signal_keys}
    tables_last: dict[str, int] = {}
    for key, i in last.items():
        tables_last[key[0]] = max(i, tables_last.get(key[0], i))
    try:
        for i, signal in enumerate(signals):
            yield signal.name, _compute(context, signal)
            for key in keys[
                i
            ]:  # an event set's cached arrays (sized by its table) go after their last signal
                if last[key] == i:
                    context.sets.pop(key, None)
                    if tables_last[key[0]] == i:
                        context.drop_columns(key[0])
    finally:  # event sets refer back to the context (its column cache): free them now, not at the next GC
        context.sets.clear()
        context.columns.clear()


def evaluation_order(signals: Sequence[Signal]) -> list[Signal]:
    """``signals`` reordered so that those reading the same table, then the same event sets, come
    together (stable otherwise), so that each table's encoded columns and event sets are freed before
    the next table's are made (the default marketplace's assembly peaked 60 MB lower)."""
    return sorted(signals, key=lambda signal: sorted(map(repr, (_set_key(s) for s, _ in _sources(signal)))))


# --- event sets ------------------------------------------------------------------------


def _set_key(source: Source) -> tuple:
    """What decides when a source's rows are known: rows sharing it share one sort."""
    states, deadlines = [], []
    for cond in source.filter:
        if cond.op == "missed":
            deadlines.append(cond.value)
        elif cond.op != "first":
            states += [col for col in cond.columns if pit.state_time(source.table, col)]
    states += [col for col in source.measure_columns if pit.state_time(source.table, col)]
    return (
        source.table,
        source.time,
        source.lag_days,
        tuple(sorted(set(states))),
        tuple(sorted(set(deadlines))),
    )


def _sources(signal: Signal) -> list[tuple[Source, int | None]]:
    """Sources a signal reads and the windows it reads them over."""
    if signal.aggregation == "open":
        return [(source, None) for source in _open_sources(signal)]
    out = [(signal.source, signal.window_days)]
    if signal.per is not None:
        out.append((signal.per, signal.window_days))
    if signal.baseline_days is not None:
        out.append((signal.source, signal.baseline_days))
    return out


def _open_sources(signal: Signal) -> tuple[Source, Source]:
    """Start and end rows of an ``open`` signal; rows ending before they start never open."""
    valid = (*signal.source.filter, Cond(signal.end, "missed", (signal.source.time, 0)))
    start = Source(signal.table, signal.source.time, valid, signal.measure, signal.source.lag_days)
    return start, Source(signal.table, signal.end, valid, signal.measure, signal.source.lag_days)


def _windows_by_set(signals: Sequence[Signal]) -> dict[tuple, set[int]]:
    windows: dict[tuple, set[int]] = {}
    for signal in signals:
        for source, window in _sources(signal):
            windows.setdefault(_set_key(source), set())
            if window is not None:
                windows[_set_key(source)].add(window)
    return windows


@dataclass
class _EventSet:
    """One sorted, located event set and the per-build caches of its arrays."""

    table: str
    encoded: object  # (table, column) -> the column as numbers, unsorted
    located: pit.Located
    n: int
    arrays: dict = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """A column as numbers (see :func:`_encode`), in sorted order."""

        def make() -> np.ndarray:
            values = self.encoded(self.table, name)
            order = self.located.order
            identity = len(order) == len(values) and (len(order) == 0 or order[-1] == len(order) - 1)
            return values if identity and np.array_equal(order, np.arange(len(order))) else values[order]

        return self.cached(("column", name), make)

    def cached(self, key: tuple, make):
        if key not in self.arrays:
            self.arrays[key] = make()
        return self.arrays[key]


class _Context:
    """Inputs of one build: tables, sorted spine, encoded columns and event sets made on first use."""

    def __init__(
        self, tables: dict[str, pd.DataFrame], buyer: np.ndarray, as_of: np.ndarray, windows: dict
    ) -> None:
        self.tables, self.buyer, self.as_of, self.windows = tables, buyer, as_of, windows
        self.sets: dict[tuple, _EventSet] = {}
        self.columns: dict[tuple[str, str], np.ndarray] = {}

    def frame(self, table: str) -> pd.DataFrame:
        frame = self.tables.get(table)
        if frame is None:
            kinds = {"int": "int64", "float": "float64", "str": "str", "bool": "bool"}
            return pd.DataFrame(
                {
                    col: pd.Series([], dtype=kinds.get(_column(table, col).kind, "datetime64[us, UTC]"))
                    for col in registry.table_columns(table)
                }
            )
        return frame

    def drop_columns(self, table: str) -> None:
        """Forget ``table``'s encoded columns (no event set of it is needed any more)."""
        for key in [k for k in self.columns if k[0] == table]:
            del self.columns[key]

    def encoded(self, table: str, column: str) -> np.ndarray:
        if (table, column) not in self.columns:
            self.columns[(table, column)] = _encode(self.frame(table)[column], _column(table, column))
        return self.columns[(table, column)]

    def events(self, source: Source) -> _EventSet:
        key = _set_key(source)
        if key not in self.sets:
            frame = self.frame(source.table)
            _, time, lag, states, deadlines = key
            known = pit.known_at(frame, source.table, time, lag, states, deadlines)
            located = pit.locate(
                self.encoded(source.table, "buyer_id"),
                known,
                self.buyer,
                self.as_of,
                sorted(self.windows.get(key, ())),
            )
            self.sets[key] = _EventSet(source.table, self.encoded, located, len(located.order))
        return self.sets[key]


def _column(table: str, column: str) -> contract.Column:
    if table == signals_devices.SHARED_DEVICES.name:
        return signals_devices.SHARED_DEVICES.column(column)
    return contract.table(table).column(column)


def _encode(series: pd.Series, column: contract.Column) -> np.ndarray:
    """A column as numbers: timestamps as int64 microseconds (NAT if null), enums as int64
    codes in contract order (-1 if null), ints without nulls as int64, the rest float64
    (NaN if null; booleans 1.0/0.0)."""
    if column.kind == "timestamp":
        return pit.micros(series)
    if column.allowed:
        codes = pc.index_in(pa.array(series, type=pa.string()), value_set=pa.array(column.allowed))
        return pc.fill_null(codes, -1).to_numpy().astype(np.int64)
    if column.kind == "int" and not column.nullable and series.dtype == np.int64:
        return series.to_numpy()
    return series.to_numpy(dtype=float, na_value=np.nan)


def _present(values: np.ndarray, column: contract.Column) -> np.ndarray:
    if column.kind == "timestamp":
        return values != pit.NAT
    if column.allowed:
        return values >= 0
    return ~np.isnan(values) if values.dtype == float else np.ones(len(values), dtype=bool)


def _code(column: contract.Column, value: object) -> float | int:
    """A filter value in the encoding of :func:`_encode`."""
    if column.allowed:
        return column.allowed.index(value) if value in column.allowed else -2
    return float(value)


# --- filters and measures (sorted order) -------------------------------------------------


def _mask(events: _EventSet, source: Source) -> np.ndarray:
    mask = np.ones(events.n, dtype=bool)
    for cond in source.filter:
        mask &= events.cached(("cond", cond), lambda cond=cond: _condition(events, cond))
    return mask


def _condition(events: _EventSet, cond: Cond) -> np.ndarray:
    column = _column(events.table, cond.column)
    values = events.column(cond.column)
    present = _present(values, column)
    if cond.op == "first":
        pairs = pd.DataFrame({"b": events.column("buyer_id"), "v": values})
        return present & ~pairs.duplicated().to_numpy()
    if cond.op in ("missed", "by"):
        ref, days = cond.value
        limit = events.column(ref) + np.int64(days) * pit.DAY
        return ~present | (values > limit) if cond.op == "missed" else present & (values <= limit)
    if cond.op == "notna":
        return present
    if cond.op == "in":
        return np.isin(values, [_code(column, v) for v in cond.value]) & present
    compare = {"==": np.equal, "!=": np.not_equal, ">=": np.greater_equal, "<": np.less}[cond.op]
    return compare(values, _code(column, cond.value)) & present


def _measure(events: _EventSet, source: Source) -> np.ndarray:
    """Measure values in sorted order, NaN where null or filtered out."""
    kind, columns, value = parse_measure(source.measure)

    def make() -> np.ndarray:
        if kind == "rows":
            return np.ones(events.n)
        specs = [_column(source.table, col) for col in columns]
        values = [events.column(col) for col in columns]
        present = np.logical_and.reduce([_present(v, c) for v, c in zip(values, specs, strict=True)])
        if kind == "equals":
            raw = (values[0] == _code(specs[0], value)).astype(float)
        elif kind == "mapped":
            table = registry.mapping(value)
            lookup = np.array([table.get(v, 0.0) for v in specs[0].allowed] + [0.0])
            raw = lookup[np.where(values[0] >= 0, values[0], len(lookup) - 1)]
        elif kind == "difference":
            scale = pit.DAY if specs[0].kind == "timestamp" else 1
            raw = (values[0] - values[1]) / scale
        else:
            raw = values[0].astype(float)
        return np.where(present, raw, np.nan)

    base = events.cached(("measure", source.measure), make)
    return np.where(_mask(events, source), base, np.nan)


def _codes(events: _EventSet, source: Source) -> np.ndarray:
    """Bit per enum value (for distinct counts), 0 where null or filtered out."""
    codes = events.column(source.measure_columns[0])
    bits = np.where(codes >= 0, np.left_shift(np.uint64(1), codes.clip(0).astype(np.uint64)), np.uint64(0))
    return np.where(_mask(events, source), bits, np.uint64(0))


# --- windowed reductions -------------------------------------------------------------------


def _reduce(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty) -> np.ndarray:
    """``ufunc`` over ``values[lo:hi]`` per row (``empty`` where the range is empty)."""
    if len(values) == 0:
        return np.full(len(lo), empty, dtype=np.result_type(values, type(empty)))
    padded = np.append(values, values[:1])
    bounds = np.empty(2 * len(lo), dtype=np.int64)
    bounds[0::2], bounds[1::2] = lo, hi
    return np.where(hi > lo, ufunc.reduceat(padded, bounds)[0::2], empty)


def _total(events: _EventSet, source: Source, window: int | None) -> np.ndarray:
    """Count of rows (no measure) or sum of the measure in the window."""
    loc = events.located
    lo, hi = loc.window_start(window), loc.end
    if source.measure is None:
        cum = events.cached(("cumcount", source.filter), lambda: np.r_[0, np.cumsum(_mask(events, source))])
        return (cum[hi] - cum[lo]).astype(float)
    values = np.nan_to_num(_measure(events, source), nan=0.0)
    return _reduce(np.add, values, lo, hi, 0.0)


def _extreme(events: _EventSet, source: Source, window: int | None, which: str) -> np.ndarray:
    values = _measure(events, source)
    fill = np.inf if which == "min" else -np.inf
    ufunc = np.minimum if which == "min" else np.maximum
    out = _reduce(
        ufunc,
        np.where(np.isnan(values), fill, values),
        events.located.window_start(window),
        events.located.end,
        fill,
    )
    return np.where(np.isinf(out), np.nan, out)


def _edge_rows(events: _EventSet, source: Source, window: int | None, which: str) -> np.ndarray:
    """Position of the latest (``last``) or earliest (``first``) valid row in the window; -1 if none."""
    valid = ~np.isnan(_measure(events, source)) if source.measure is not None else _mask(events, source)
    lo, hi, n = events.located.window_start(window), events.located.end, events.n
    if n == 0:
        return np.full(len(lo), -1)
    positions = np.arange(n)
    if which == "last":
        latest = np.maximum.accumulate(np.where(valid, positions, -1))
        row = latest[np.maximum(hi - 1, 0)]
        return np.where((hi > lo) & (row >= lo), row, -1)
    earliest = np.minimum.accumulate(np.where(valid, positions, n)[::-1])[::-1]
    row = earliest[np.minimum(lo, n - 1)]
    return np.where((hi > lo) & (row < hi), row, -1)


def _pick(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.where(rows >= 0, values[rows.clip(0)] if len(values) else np.nan, np.nan)


def _compute(context: _Context, signal: Signal) -> np.ndarray:
    """One signal's values for the sorted spine."""
    source, window, agg = signal.source, signal.window_days, signal.aggregation
    events = context.events(source)
    if agg in ("count", "sum"):
        return _total(events, source, window)
    if agg == "mean":
        count = _count_valid(events, source, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, _total(events, source, window) / count, np.nan)
    if agg in ("min", "max"):
        return _extreme(events, source, window, agg)
    if agg in ("last", "change"):
        last = _pick(_measure(events, source), _edge_rows(events, source, window, "last"))
        if agg == "last":
            return last
        return last - _pick(_measure(events, source), _edge_rows(events, source, window, "first"))
    if agg in ("days_since_last", "days_since_first"):
        rows = _edge_rows(events, source, window, agg.rsplit("_", 1)[1])
        return np.where(rows >= 0, (context.as_of - _pick(events.located.time, rows)) / pit.DAY, np.nan)
    if agg == "distinct":
        bits = _reduce(
            np.bitwise_or,
            _codes(events, source),
            events.located.window_start(window),
            events.located.end,
            np.uint64(0),
        )
        return np.bitwise_count(bits.astype(np.uint64)).astype(float)
    if agg == "ratio":
        num, den = _total(events, source, window), _total(context.events(signal.per), signal.per, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den != 0, num / den, np.nan)
    if agg == "trend":
        recent, base = _total(events, source, window), _total(events, source, signal.baseline_days)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(base != 0, (recent / window) / (base / signal.baseline_days), np.nan)
    if agg == "deviation":
        count = _count_valid(events, source, window)
        last = _pick(_measure(events, source), _edge_rows(events, source, window, "last"))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, last - _total(events, source, window) / count, np.nan)
    if agg == "dips":
        return _dips(events, source, window, signal.threshold)
    if agg == "decayed":
        return _decayed(events, source, window, signal.half_life_days, context.as_of)
    start, end = _open_sources(signal)
    return _total(context.events(start), start, None) - _total(context.events(end), end, None)


def _dips(events: _EventSet, source: Source, window: int | None, threshold: float) -> np.ndarray:
    """Rows of the window whose measure fell by at least ``threshold`` from the buyer's previous valid
    row (known earlier, so it is seen whenever the row is)."""
    values = _measure(events, source)
    valid = np.flatnonzero(~np.isnan(values))
    buyer = events.column("buyer_id")[valid]
    dip = np.zeros(events.n, dtype=bool)
    same = buyer[1:] == buyer[:-1]
    dip[valid[1:]] = same & (values[valid[1:]] <= values[valid[:-1]] - threshold)
    cum = np.r_[0, np.cumsum(dip)]
    loc = events.located
    return (cum[loc.end] - cum[loc.window_start(window)]).astype(float)


def _decayed(
    events: _EventSet, source: Source, window: int | None, half_life_days: int, as_of: np.ndarray
) -> np.ndarray:
    """Sum of ``2^(-age / half_life)`` over the window's rows (see ``AGGREGATIONS``). Each row's weight
    is taken relative to its buyer's first event and summed per spine row by ``reduceat`` (no
    differences of large sums), then moved to the spine row's instant."""
    loc = events.located
    if events.n == 0:
        return np.zeros(len(as_of))
    half_life = np.float64(half_life_days) * pit.DAY
    buyer = events.column("buyer_id")
    first = np.maximum.accumulate(np.where(np.r_[True, buyer[1:] != buyer[:-1]], np.arange(events.n), 0))
    weight = np.where(_mask(events, source), np.exp2((loc.time - loc.time[first]) / half_life), 0.0)
    total = _reduce(np.add, weight, loc.window_start(window), loc.end, 0.0)
    origin = loc.time[np.minimum(loc.start, events.n - 1)]
    with np.errstate(over="ignore"):
        return np.where(total > 0, total * np.exp2((origin - as_of) / half_life), 0.0)


def _count_valid(events: _EventSet, source: Source, window: int | None) -> np.ndarray:
    loc = events.located
    valid = events.cached(("valid", source), lambda: np.r_[0, np.cumsum(~np.isnan(_measure(events, source)))])
    return (valid[loc.end] - valid[loc.window_start(window)]).astype(float)
