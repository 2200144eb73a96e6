"""The train/serve skew of the service heads: the same opportunities priced as training prices them and
as the service prices them.

Training prices an opportunity row (``training.opportunities``) with the buyer's signals built as of
its ``signals_as_of`` (``features.pit.published_as_of``: the day's snapshot) and the context of
``training.heads.context_matrix``. The service publishes that day's snapshot
(``serving.publish.publish``), loads it with the model (``serving.live.load_live``), rates the buyer
from it and scores the head per request (``Live.rate``, ``Live.head_risk``) with the context
``serving.live.request_context`` computes from a request in minor units. The skew of one opportunity
is ``|log(p_served / p_trained)|``; the goal is a median at or below ``SKEW_GOAL``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import export_shared_devices
from features.io import load_tables, shard_parts
from features.signals_devices import SHARED_DEVICES
from serving.config import load_config
from serving.decide import DecisionRequest, Order, Refund
from serving.live import Live, Unrated, load_live, load_model
from serving.publish import publish
from training.dataset import with_signals
from training.evaluation.report import decision_ranking
from training.opportunities import FAST_REFUND, PRESALE, presale_rows, refund_rows

SKEW_GOAL = 0.02
"""Largest acceptable median ``|log(p_served / p_trained)|`` over opportunities."""
LARGE_SKEW = np.log(1.2)
"""A probability moved by more than 20% either way."""


@dataclass(frozen=True)
class Skew:
    """One service's skew on the opportunities measured."""

    service: str
    rows: int
    unrated: int  # buyers the snapshot does not hold (registered that day): no served price
    median: float  # of |log(p_served / p_trained)|
    p90: float
    large_share: float  # share moved by more than 20%

    def __str__(self) -> str:
        return (
            f"{self.service}: {self.rows:,} opportunities ({self.unrated:,} unrated), median |log(p_served/p_trained)| "
            f"{self.median:.2e}, 90th percentile {self.p90:.2e}, moved > 20%: {self.large_share:.2%}"
        )


def busiest_days(
    rows: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp, count: int
) -> list[pd.Timestamp]:
    """The ``count`` snapshot days (``signals_as_of``) in ``[first, last]`` holding the most opportunities."""
    day = rows["signals_as_of"]
    held = day[(day >= first) & (day <= last)].value_counts()
    return sorted(held.index[:count])


def _shards(data: Path):
    """Each shard's raw tables with its buyers' rows of the export's shared-device index (as assembly reads them)."""
    shared = export_shared_devices(data)
    for part in shard_parts(data):
        tables = load_tables(data, part=part)
        tables[SHARED_DEVICES.name] = shared[shared["buyer_id"].isin(tables["buyers"]["buyer_id"])]
        yield tables


def opportunity_rows(data: Path) -> dict[str, pd.DataFrame]:
    """Every opportunity of the export per service (``training.opportunities``), shard by shard."""
    parts = [(presale_rows(t), refund_rows(t)) for t in _shards(data)]
    return {
        PRESALE: pd.concat([p for p, _ in parts], ignore_index=True),
        FAST_REFUND: pd.concat([r for _, r in parts], ignore_index=True),
    }


def trained_probability(data: Path, model, rows: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """The head's probability per opportunity row as training computes it: signals as of each row's
    ``signals_as_of`` (``training.dataset.with_signals``, shard by shard), then
    ``training.evaluation.report.decision_ranking``."""
    out = {s: np.full(len(r), np.nan) for s, r in rows.items()}
    for tables in _shards(data):
        for service, r in rows.items():
            mine = np.flatnonzero(r["buyer_id"].isin(tables["buyers"]["buyer_id"]).to_numpy())
            if mine.size:
                framed = with_signals(tables, r.iloc[mine], processes=1)
                out[service][mine] = decision_ranking(model, service, framed)
    return out


def request_of(service: str, row: pd.Series, currency: str, decimals: int) -> tuple[DecisionRequest, object]:
    """The service's request for one opportunity row, and its decision instant (naive UTC)."""
    unit = 10**decimals
    now = row["as_of"].tz_convert("UTC").tz_localize(None).to_pydatetime()

    def minor(value: float) -> int:
        return int(round(float(value) * unit))

    if service == PRESALE:
        due = now + pd.Timedelta(days=float(row["due_in_days"])).to_pytimedelta()
        order = Order(int(row["order_id"]), minor(row["amount"]), currency, str(row["category"]),
                      minor(row["deposit"]), due)  # fmt: skip
        return DecisionRequest(service, f"skew-{row['order_id']}", int(row["buyer_id"]), order=order), now
    ordered = now - pd.Timedelta(days=float(row["order_age_days"])).to_pytimedelta()
    refund = Refund(
        int(row["refund_id"]), int(row["order_id"]), minor(row["amount"]), currency, str(row["reason"]),
        str(row["kind"]), int(row["photos"]), minor(row["order_amount"]), str(row["category"]), ordered,
    )  # fmt: skip
    return DecisionRequest(service, f"skew-{row['refund_id']}", int(row["buyer_id"]), refund=refund), now


def served_probability(live: Live, service: str, rows: pd.DataFrame) -> np.ndarray:
    """The head's probability per opportunity row as the service computes it from ``live``'s snapshot
    (NaN where the snapshot does not hold the buyer)."""
    out = np.full(len(rows), np.nan)
    for i, (_, row) in enumerate(rows.iterrows()):
        request, now = request_of(service, row, live.policy.currency, live.policy.decimals)
        try:
            rating = live.rate(request.buyer_id)
        except Unrated:
            continue
        risk = live.head_risk(request, rating, now)
        out[i] = np.nan if risk is None else risk.p_loss
    return out


def summarise(service: str, trained: np.ndarray, served: np.ndarray) -> Skew:
    """The skew figures of one service from both paths' probabilities (NaN served: unrated)."""
    ok = np.isfinite(served) & np.isfinite(trained)
    gap = np.abs(np.log(served[ok] / trained[ok]))
    return Skew(
        service=service,
        rows=int(ok.sum()),
        unrated=int((~ok).sum()),
        median=float(np.median(gap)) if gap.size else float("nan"),
        p90=float(np.percentile(gap, 90)) if gap.size else float("nan"),
        large_share=float((gap > LARGE_SKEW).mean()) if gap.size else float("nan"),
    )


def measure(
    data: Path,
    rows: dict[str, pd.DataFrame],
    days: list[pd.Timestamp],
    model_uri: str,
    tracking_uri: str,
    policy_path: Path,
    progress: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Skew], dict[str, pd.DataFrame]]:
    """Price the opportunities of ``days`` both ways and summarise the skew per service.

    Args:
        data: The raw export (published from, as the daily job does).
        rows: Per service, opportunity rows (``training.opportunities``).
        days: Snapshot days (``signals_as_of``) whose opportunities to price; one snapshot each.
        model_uri: The rating artifact, as the service loads it.
        tracking_uri: MLflow store resolving ``model_uri``.
        policy_path: The policy file the service loads (only its currency and reasons matter here).
        progress: Called with a line per published day.

    Returns:
        ``(skew per service, per service the rows priced with p_trained and p_served)``.
    """
    settings = {"model_uri": model_uri, "mlflow_tracking_uri": tracking_uri, "policy_path": str(policy_path),
                "watch_interval_s": 0, "max_snapshot_age_s": 0}  # fmt: skip
    model = load_model(load_config(settings)).model  # its signals, to publish; the service loads its own
    live = None
    chosen = {s: r[r["signals_as_of"].isin(days)].reset_index(drop=True) for s, r in rows.items()}
    trained = trained_probability(data, model, chosen)
    served = {s: np.full(len(r), np.nan) for s, r in chosen.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for day in days:
            path = Path(tmp) / f"snapshot-{day.date()}.parquet"
            publish(data, str(path), "skew", list(model.signal_names), day)
            config = load_config({**settings, "snapshot": str(path)})
            live = load_live(config) if live is None else load_live(config, live, frozenset({"snapshot"}))
            if live.rating is None:
                raise ValueError(f"model_uri: the service cannot load {model_uri}: {live.model_error}")
            for s, r in chosen.items():
                on_day = np.flatnonzero((r["signals_as_of"] == day).to_numpy())
                served[s][on_day] = served_probability(live, s, r.iloc[on_day])
            progress(f"snapshot as of {day.date()}: " + ", ".join(f"{(chosen[s]['signals_as_of'] == day).sum():,} {s}"
                                                              for s in chosen))  # fmt: skip
    priced = {s: chosen[s].assign(p_trained=trained[s], p_served=served[s]) for s in chosen}
    return {s: summarise(s, trained[s], served[s]) for s in chosen}, priced
