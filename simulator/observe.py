"""What the platform observes of a simulated world: the export as of an instant, and the product's decisions.

The world (``simulator/write.py``) is simulated once with history's decisions (the legacy rules
plus exploration) baked into its draws. When the product decides instead, only what a decision
changes is redrawn, from the simulator's own hazards and helpers:

* a presale: whether the balance is paid depends on the decision (moral hazard,
  ``hazards.presale_default_prob``). Where the product's decision differs from history's, the
  default is re-drawn *coupled* to history's (a buyer who paid when held still pays when
  shipped early unless the extra hazard strikes; one who defaulted when shipped early still
  defaults when held with probability ``p_held / p_shipped``), so each arm keeps its exact
  probability given the buyer's traits and the stress of the due month. Payment, shipping,
  delivery and cancellation are then drawn by ``payments.fulfil_presales``;
* a refund: whether it goes bad and whether the goods come back do not depend on the decision;
  only the handling does (``aftersales.handle_refunds``: paid at once when fast, else normal
  handling with its own outcome).

Everything else (reviews, VIP standing, disputes, bills) keeps history's draws; see
docs/simulator.md, "The product in the loop", for what that leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract
from features.outcomes import presale_outcomes
from simulator import hazards
from simulator.aftersales import handle_refunds
from simulator.calendar import NEVER, Calendar
from simulator.config import RunConfig
from simulator.export import KNOWN_FROM
from simulator.payments import BILL_DUE_AFTER_STATEMENT, fulfil_presales
from simulator.population import Population, draw_population

STREAM = 0xDE9107  # the deploy's own random stream, beside the world's (seed, part)
NOT_RECEIVED = "not_received"  # a lost parcel's request: always approved, fast or not


def as_of(tables: dict[str, pd.DataFrame], at: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The export as a platform would have taken it at ``at`` (``simulator.export`` semantics).

    Rows whose event time follows ``at`` are left out, instants after it become null (scheduled
    ones stay), and an outcome column is null while the instant that makes it known is.

    Args:
        tables: Typed contract tables (``features.io.load_tables``) of a later export.
        at: The export instant (UTC).

    Returns:
        New frames, one per contract table.
    """
    out = {}
    for spec in contract.TABLES:
        frame = tables[spec.name]
        if spec.event_time and not spec.column(spec.event_time).scheduled:
            frame = frame[frame[spec.event_time] <= at]
        elif spec.name == "credit_bills":  # a bill exists from its statement, a fixed time before it is due
            frame = frame[frame["due_at"] - pd.Timedelta(seconds=BILL_DUE_AFTER_STATEMENT) <= at]
        frame = frame.copy()
        for col in spec.columns:
            if col.kind == "timestamp" and not col.scheduled:
                frame[col.name] = frame[col.name].where(frame[col.name] <= at)
        for (table, column), gate in KNOWN_FROM.items():
            if table == spec.name:
                frame[column] = frame[column].where(frame[gate].notna())
        out[spec.name] = frame.reset_index(drop=True)
    return out


@dataclass(frozen=True)
class World:
    """The generative state the redraws need: configuration, calendar and each shard's buyers."""

    cfg: RunConfig
    cal: Calendar
    pops: tuple[Population, ...]

    @classmethod
    def of(cls, cfg: RunConfig, cal: Calendar) -> World:
        """Redraw each shard's population exactly as ``simulate_shard`` drew it (its first draws)."""
        pops = []
        for part in range(cfg.shards):
            lo, hi = cfg.shard_range(part)
            rng = np.random.default_rng((cfg.seed, part))
            pops.append(draw_population(rng, lo, hi - lo + 1, cal, cfg.params))
        return cls(cfg, cal, tuple(pops))

    def population(self, buyer_ids: np.ndarray) -> tuple[Population, np.ndarray]:
        """One population covering ``buyer_ids`` and each id's index in it (the ids' own shard)."""
        parts = (np.asarray(buyer_ids) - 1) // self.cfg.shard_size
        if len(set(parts.tolist())) > 1:
            raise ValueError("population: buyers of several shards; redraw per shard")
        part = int(parts[0]) if len(parts) else 0
        lo, _ = self.cfg.shard_range(part)
        return self.pops[part], np.asarray(buyer_ids, np.int64) - lo

    def rng(self, kind: int, ref: int) -> np.random.Generator:
        """The generator of one opportunity's redraw (kind 0 presale, 1 refund), from the seed and its id."""
        return np.random.default_rng((self.cfg.seed, STREAM, kind, int(ref)))


def _seconds(t: pd.Series) -> np.ndarray:
    values = t.to_numpy("datetime64[s]").astype(np.int64)
    return np.where(t.isna().to_numpy(), NEVER, values)


def _instants(s: np.ndarray, until: pd.Timestamp) -> pd.Series:
    """Seconds back to UTC timestamps; ``NEVER`` and anything after the world's export are null."""
    t = pd.Series(pd.to_datetime(np.where(s >= NEVER, 0, s), unit="s", utc=True)).astype(
        "datetime64[us, UTC]"
    )
    return t.where((s < NEVER) & (t <= until).to_numpy())


def _by_shard(buyers: np.ndarray, shard_size: int) -> list[np.ndarray]:
    parts = (buyers - 1) // shard_size
    return [np.flatnonzero(parts == p) for p in np.unique(parts)]


def decide_presales(
    tables: dict[str, pd.DataFrame], world: World, ship: pd.Series, until: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """The tables with presales ``ship`` (order_id -> shipped before balance) decided by the product.

    Only presales whose decision differs from the one the tables hold are redrawn (see the
    module docstring); the others, and every other table, are unchanged. Reviews of a presale
    that is no longer delivered are dropped.

    Args:
        tables: Typed contract tables (the world's, or already partly decided).
        world: The generative state.
        ship: The product's decision per presale order id.
        until: The world's export instant (later instants stay null).

    Returns:
        New frames for ``presales``, ``orders`` and ``reviews`` (the rest shared).
    """
    pre = tables["presales"]
    at = pd.Series(np.arange(len(pre)), index=pre["order_id"].to_numpy())
    rows = at.reindex(ship.index.to_numpy()).to_numpy()
    if np.isnan(rows.astype(np.float64)).any():
        raise ValueError("decide_presales: an order id is not a presale")
    differs = pre["shipped_before_balance"].to_numpy(bool)[rows] != ship.to_numpy(bool)
    change, decided = rows[differs], ship.to_numpy(bool)[differs]
    out = dict(tables)
    if change.size == 0:
        return out
    pre = pre.copy()
    orders = tables["orders"].copy()
    o_at = pd.Series(np.arange(len(orders)), index=orders["order_id"].to_numpy())
    fest = {f.due_at: f for f in world.cal.festivals}
    params = world.cfg.params
    bad = presale_outcomes(pre.iloc[change])["bad"].to_numpy(bool)
    ids = pre["order_id"].to_numpy(np.int64)[change]
    buyers = pre["buyer_id"].to_numpy(np.int64)[change]
    o = o_at.reindex(ids).to_numpy()
    due = _seconds(pre["balance_due_at"].iloc[change])
    opens = np.asarray([fest[d].deposit_end for d in due], np.int64)
    due_month = np.asarray([fest[d].due_month for d in due], np.int64)
    amount = orders["amount"].to_numpy(np.float64)[o]
    paid = np.empty(change.size, np.int64)
    drawn: dict[str, np.ndarray] = {}
    for shard in _by_shard(buyers, world.cfg.shard_size):
        pop, b = world.population(buyers[shard])
        state = pop.stress[b, due_month[shard]]
        s = decided[shard]
        p_new = hazards.presale_default_prob(pop, b, state, amount[shard], params, s)
        p_old = hazards.presale_default_prob(pop, b, state, amount[shard], params, ~s)
        p_late = hazards.late_but_paid_prob(pop, b, state)
        for j, i in enumerate(shard):  # one generator per presale: its redraw depends on it alone
            rng = world.rng(0, int(ids[i]))
            u = rng.random()
            # coupled to what the tables hold: shipping early only adds defaults, holding only removes them
            if s[j]:
                default = bad[i] or u < (p_new[j] - p_old[j]) / max(1.0 - p_old[j], 1e-12)
            else:
                default = bad[i] and u < p_new[j] / max(p_old[j], 1e-12)
            late = rng.random() < p_late[j]
            one_paid, one = fulfil_presales(
                rng, s[j : j + 1], np.array([default]), np.array([late]), opens[i : i + 1], due[i : i + 1]
            )
            paid[i] = one_paid[0]
            for column, values in one.items():
                drawn.setdefault(column, np.empty(change.size, np.int64))[i] = values[0]
    pre.loc[pre.index[change], "shipped_before_balance"] = decided
    pre.loc[pre.index[change], "balance_paid_at"] = _instants(paid, until).to_numpy()
    for column, values in drawn.items():
        orders.loc[orders.index[o], column] = _instants(values, until).to_numpy()
    out["presales"], out["orders"] = pre, orders
    undelivered = orders.loc[o_at.reindex(pre["order_id"]).to_numpy(), "delivered_at"].isna().to_numpy()
    gone = set(pre["order_id"].to_numpy()[undelivered].tolist())
    reviews = tables["reviews"]
    out["reviews"] = reviews[~reviews["order_id"].isin(gone)].reset_index(drop=True)
    return out


def decide_refunds(
    tables: dict[str, pd.DataFrame], world: World, fast: pd.Series, until: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """The tables with refunds ``fast`` (refund_id -> paid fast) decided by the product.

    Only requests whose decision differs from the one the tables hold are redrawn: the handling
    (``aftersales.handle_refunds``); badness, the return and abuse findings stay. A lost
    parcel's request is approved either way (at once when fast, as history handled it otherwise).

    Returns:
        New frames, ``refunds`` replaced.
    """
    ref = tables["refunds"]
    at = pd.Series(np.arange(len(ref)), index=ref["refund_id"].to_numpy())
    rows = at.reindex(fast.index.to_numpy()).to_numpy()
    if np.isnan(rows.astype(np.float64)).any():
        raise ValueError("decide_refunds: a refund id is not in the refunds table")
    want = fast.to_numpy(bool)
    change = rows[ref["fast_refund"].to_numpy(bool)[rows] != want]
    out = dict(tables)
    if change.size == 0:
        return out
    ref = ref.copy()
    sub = ref.iloc[change]
    f = want[ref["fast_refund"].to_numpy(bool)[rows] != want]
    kind = (sub["kind"] == "return_and_refund").to_numpy(np.int64)
    requested = _seconds(sub["requested_at"])
    received = _seconds(sub["return_received_at"])
    outcome = np.empty(change.size, np.int64)
    decided = np.empty(change.size, np.int64)
    refunded = np.empty(change.size, np.int64)
    for i, rid in enumerate(sub["refund_id"].to_numpy(np.int64)):  # one generator per request
        one = handle_refunds(
            world.rng(1, int(rid)), kind[i : i + 1], requested[i : i + 1], received[i : i + 1], f[i : i + 1]
        )
        outcome[i], decided[i], refunded[i] = (x[0] for x in one)
    lost = (sub["reason"] == NOT_RECEIVED).to_numpy()
    if lost.any():  # a lost parcel is refunded whatever the decision; only the timing changes
        outcome[lost] = 0
        history = _seconds(sub["decided_at"])
        slow = lost & ~f
        decided[slow] = np.where(history[slow] < NEVER, history[slow], requested[slow] + 86_400)
        refunded[lost] = decided[lost]
    idx = ref.index[change]
    ref.loc[idx, "fast_refund"] = f
    ref.loc[idx, "decided_at"] = _instants(decided, until).to_numpy()
    ref.loc[idx, "refunded_at"] = _instants(refunded, until).to_numpy()
    labels = np.asarray(contract.REFUND_OUTCOMES, dtype=object)[outcome]
    ref.loc[idx, "outcome"] = np.where(ref.loc[idx, "decided_at"].notna(), labels, None)
    out["refunds"] = ref
    return out
