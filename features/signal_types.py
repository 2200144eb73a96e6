"""What a buyer signal is made of: the types and vocabularies every signal is declared with.

A :class:`Signal` says which rows of which table it reads (:class:`Source`: table, time
column, filter of :class:`Cond`, measure), how it aggregates them (:data:`AGGREGATIONS`),
over which window, which way it moves risk, and how to explain it. The signals themselves
are generated in :mod:`features.specs` and looked up through :mod:`features.registry`;
this module knows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

AGGREGATIONS: dict[str, str] = {
    "count": "number of rows; 0 when there are none",
    "sum": "sum of the measure; 0 when there are no rows",
    "mean": "mean of the measure over rows where it is not null; NaN when there are none",
    "min": "smallest measure; NaN when there are no rows",
    "max": "largest measure; NaN when there are no rows",
    "last": "measure of the latest row (by known time); NaN when there are no rows",
    "change": "measure of the latest row minus that of the earliest row in the window; NaN when none",
    "days_since_last": "days from the latest row's known time to as_of; NaN when there are no rows",
    "days_since_first": "days from the earliest row's known time to as_of; NaN when there are no rows",
    "distinct": "number of distinct values of an enum measure; 0 when there are no rows",
    "ratio": "sum of the measure (count if none) over that of `per` in the same window; NaN when the denominator is 0",
    "trend": "rows per day in the window over rows per day in the baseline window (sums if a measure); "
    "NaN when the baseline has none",
    "open": "rows started before as_of and not ended before it (sum of the measure if any); 0 when none",
    "deviation": "measure of the latest row minus the mean measure of the window (the buyer's own baseline); "
    "NaN when there are no rows",
    "dips": "number of rows in the window whose measure is at least `threshold` below that of the buyer's "
    "previous row (which may precede the window); 0 when there are none",
    "decayed": "sum over the rows of the window of 2^(-age / half_life_days), age in days from the row's known "
    "time to as_of (each row counts 1 when new, 1/2 one half-life later); 0 when there are none",
}
"""Aggregation kinds and their missing-value semantics."""

OPS: dict[str, str] = {
    "==": "equals the value",
    "!=": "differs from the value",
    "in": "is one of the values",
    ">=": "is at least the value",
    "<": "is below the value",
    "notna": "is not null (for a state column: has happened)",
    "missed": "is null or later than `ref + days`: did not happen by that deadline (known at the deadline)",
    "by": "is not null and at or before `ref + days`: happened by that deadline",
    "first": "is the buyer's first row with this value (by known time)",
}
"""Filter operators. ``missed`` and ``by`` take ``(ref_column, days)`` as value."""

WINDOW_WORDS = {
    7: "in the past week",
    30: "in the past month",
    90: "in the past 3 months",
    180: "in the past 6 months",
    365: "in the past year",
    None: "ever",
}


@dataclass(frozen=True)
class Cond:
    """One filter condition on a source row.

    Attributes:
        column: Column tested.
        op: One of :data:`OPS`.
        value: Scalar for comparisons, tuple for ``in``, ``(ref_column, days)`` for
            ``missed``/``by``, ``None`` for ``notna``/``first``.
    """

    column: str
    op: str
    value: object = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {tuple(OPS)}, got {self.op!r}")

    def __str__(self) -> str:
        if self.op in ("notna", "first"):
            return f"{self.column} {self.op}"
        if self.op in ("missed", "by"):
            ref, days = self.value
            return f"{self.column} {self.op} {ref}+{days}d"
        return f"{self.column} {self.op} {self.value!r}"

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the condition reads."""
        return (self.column, self.value[0]) if self.op in ("missed", "by") else (self.column,)


@dataclass(frozen=True)
class Source:
    """The rows a signal reads.

    Attributes:
        table: Contract table (or derived table, see :mod:`features.signals_devices`).
        time: Timestamp column from which a row counts (before state columns and
            deadlines push it later, see :func:`features.pit.known_at`).
        filter: Conditions, all of which a row must meet.
        measure: ``None`` (rows are counted), a column, ``"a - b"`` (difference; days
            for timestamps) or ``"column == value"`` (1.0 / 0.0).
        lag_days: Rows count from ``time + lag_days``.
    """

    table: str
    time: str
    filter: tuple[Cond, ...] = ()
    measure: str | None = None
    lag_days: int = 0

    @property
    def measure_columns(self) -> tuple[str, ...]:
        """Columns the measure reads."""
        return parse_measure(self.measure)[1]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the source reads, deduplicated."""
        cols = [self.time, *self.measure_columns]
        for cond in self.filter:
            cols += cond.columns
        return tuple(dict.fromkeys(cols))

    def __str__(self) -> str:
        text = f"{self.table} @ {self.time}" + (f"+{self.lag_days}d" if self.lag_days else "")
        if self.filter:
            text += " where " + " and ".join(str(c) for c in self.filter)
        return text + (f" : {self.measure}" if self.measure else "")


def parse_measure(measure: str | None) -> tuple[str, tuple[str, ...], object]:
    """Split a measure expression into ``(kind, columns, value)``.

    Kinds: ``rows`` (``None``), ``column``, ``difference`` (``"a - b"``: a minus b) and
    ``equals`` (``"column == value"``) and ``mapped`` (``"column ~ mapping"``: each value of an enum
    column read through the declared table ``mapping``, :func:`features.registry.mapping`; 0 for a value it lacks).
    """
    if measure is None:
        return "rows", (), None
    if " - " in measure:
        a, b = (part.strip() for part in measure.split(" - "))
        return "difference", (a, b), None
    if " == " in measure:
        column, value = (part.strip() for part in measure.split(" == "))
        return "equals", (column,), value
    if " ~ " in measure:
        column, mapping = (part.strip() for part in measure.split(" ~ "))
        return "mapped", (column,), mapping
    return "column", (measure.strip(),), None


@dataclass(frozen=True)
class Signal:
    """One buyer signal.

    Attributes:
        name: Column name in the feature matrix and the serving schema.
        source: The rows it reads.
        aggregation: One of :data:`AGGREGATIONS`.
        window_days: Look-back window in days, ``None`` for all time.
        risk_direction: +1 if a higher value means more risk, -1 if less, 0 if either.
        description: What the value is, for analysts.
        reason: Buyer-facing reason text, e.g. "Presale balances paid late in the past year".
        per: Denominator rows of a ``ratio``.
        baseline_days: Baseline window of a ``trend`` (longer than ``window_days``).
        end: For ``open``: column from whose instant a row stops counting.
        group: Catalog section (account, shopping, presales, ...).
        activity: The signal measures the volume of what the buyer does (logins, orders, spend,
            contacts...): more of it can never lower the rating (its direction is -1, a monotone
            constraint the rating keeps whatever the data say) and it is never a reason.
        reason_code: The entry of the reason catalogue the signal speaks for (its family; see
            :func:`reason_catalogue`); empty for activity signals, which are never reasons.
        threshold: For ``dips``: the fall from the previous row that counts as a dip.
        half_life_days: For ``decayed``: days after which a row counts half.
    """

    name: str
    source: Source
    aggregation: str
    window_days: int | None
    risk_direction: int
    description: str
    reason: str
    per: Source | None = None
    baseline_days: int | None = None
    end: str | None = None
    group: str = ""
    activity: bool = False
    reason_code: str = ""
    threshold: float | None = None
    half_life_days: int | None = None

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"{self.name}: aggregation must be one of {tuple(AGGREGATIONS)}")
        if self.risk_direction not in (-1, 0, 1):
            raise ValueError(f"{self.name}: risk_direction must be -1, 0 or +1")
        if (self.aggregation == "ratio") != (self.per is not None):
            raise ValueError(f"{self.name}: `per` is required for, and only for, ratio")
        if (self.aggregation == "trend") != (self.baseline_days is not None):
            raise ValueError(f"{self.name}: `baseline_days` is required for, and only for, trend")
        if self.aggregation == "trend" and (self.window_days or 0) >= self.baseline_days:
            raise ValueError(f"{self.name}: trend window must be shorter than its baseline")
        if (self.aggregation == "open") != (self.end is not None):
            raise ValueError(f"{self.name}: `end` is required for, and only for, open")
        if self.aggregation == "open" and self.window_days is not None:
            raise ValueError(f"{self.name}: open is a state as of the date; it takes no window")
        if self.window_days is not None and self.window_days <= 0:
            raise ValueError(f"{self.name}: window_days must be positive or None")
        if (self.aggregation == "dips") != (self.threshold is not None):
            raise ValueError(f"{self.name}: `threshold` is required for, and only for, dips")
        if (self.aggregation == "decayed") != (self.half_life_days is not None):
            raise ValueError(f"{self.name}: `half_life_days` is required for, and only for, decayed")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError(f"{self.name}: half_life_days must be positive")
        if self.aggregation in ("deviation", "dips") and self.measure is None:
            raise ValueError(f"{self.name}: {self.aggregation} needs a measure")
        if self.activity and (self.risk_direction != -1 or self.reason_code):
            raise ValueError(f"{self.name}: an activity signal has direction -1 and no reason code")

    @property
    def table(self) -> str:
        """Source table."""
        return self.source.table

    @property
    def measure(self) -> str | None:
        """Source measure (``None``: rows are counted)."""
        return self.source.measure

    @property
    def filter(self) -> tuple[Cond, ...]:
        """Source filter conditions."""
        return self.source.filter

    @property
    def definition(self) -> tuple:
        """Everything that determines the value (not the name or texts)."""
        return (
            self.source,
            self.aggregation,
            self.window_days,
            self.per,
            self.baseline_days,
            self.end,
            self.threshold,
            self.half_life_days,
        )

    @property
    def window_text(self) -> str:
        """The window in words ("in the past month", "ever")."""
        return WINDOW_WORDS.get(self.window_days, f"in the past {self.window_days} days")
