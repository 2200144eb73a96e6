"""The signal builder: hand-computed values, leakage, shard equivalence, serving parity."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import build, build_cli, contract, pit, registry, signals_devices
from features.signal_types import Cond, Signal, Source

sys.path.insert(0, str(Path(__file__).parent))
from signal_fixtures import concat_tables, random_tables  # noqa: E402

T = pd.Timestamp("2024-06-01", tz="UTC")
D = pd.Timedelta(days=1)


def _ts(*values) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True)).astype("datetime64[us, UTC]")


def _hand_tables() -> dict[str, pd.DataFrame]:
    """Buyer 1: five orders around T; buyer 2: one; buyer 3: none."""
    orders = pd.DataFrame(
        {
            "order_id": [1, 2, 3, 4, 5, 6],
            "buyer_id": [1, 1, 1, 1, 1, 2],
            "seller_id": [5, 5, 6, 7, 8, 5],
            "created_at": _ts(T - 40 * D, T - 30 * D, T - 5 * D, T, T + 3 * D, T - 10 * D),
            "category": ["apparel", "beauty", "apparel", "luxury", "books", "food"],
            "amount": [100.0, 50.0, 30.0, 1000.0, 9.0, 7.0],
            "channel": ["app"] * 6,
            "device_id": pd.array([1, 1, 2, 3, 4, 9], dtype="Int64"),
            "payment_method": ["wallet"] * 6,
            "paid_at": _ts(T - 39.5 * D, None, T - 2 * D, T, None, T - 10 * D),
            "shipped_at": _ts(*[None] * 6),
            "delivered_at": _ts(*[None] * 6),
            "confirmed_at": _ts(*[None] * 6),
            "canceled_at": _ts(None, T - 29 * D, T + D, None, None, None),
        }
    )
    buyers = pd.DataFrame(
        {
            "buyer_id": [1, 2, 3],
            "registered_at": _ts(T - 100 * D, T - 50 * D, T - 20 * D),
            "city_tier": [1, 2, 3],
            "real_name_verified_at": _ts(T - 90 * D, T, None),
            "phone_verified_at": _ts(None, None, None),
        }
    )
    refunds = pd.DataFrame(
        {
            "refund_id": [1, 2],
            "order_id": [1, 2],
            "buyer_id": [1, 1],
            "requested_at": _ts(T - 10 * D, T - 20 * D),
            "amount": [10.0, 20.0],
            "reason": ["damaged", "damaged"],
            "kind": ["return_and_refund", "return_and_refund"],
            "evidence_photos": [1, 1],
            "fast_refund": [True, True],
            "decided_at": _ts(T + 2 * D, T - 15 * D),
            "outcome": ["rejected", "rejected"],
            "refunded_at": _ts(None, None),
            "return_shipped_at": _ts(None, T - 1 * D),
            "return_received_at": _ts(None, None),
            "abuse_confirmed_at": _ts(None, None),
        }
    )
    return {"buyers": buyers, "orders": orders, "refunds": refunds}


def _sig(name: str, source: Source, aggregation: str, window: int | None = None, **extra) -> Signal:
    return Signal(name, source, aggregation, window, 0, "test", "test", **extra)


ORDERS = Source("orders", "created_at")
AMOUNT = Source("orders", "created_at", measure="amount")
HAND = [
    (_sig("count_30", ORDERS, "count", 30), [2, 1, 0]),
    (_sig("count_7", ORDERS, "count", 7), [1, 0, 0]),
    (_sig("count_all", ORDERS, "count"), [3, 1, 0]),
    (_sig("sum_30", AMOUNT, "sum", 30), [80, 7, 0]),
    (_sig("sum_all", AMOUNT, "sum"), [180, 7, 0]),
    (_sig("mean_all", AMOUNT, "mean"), [60, 7, np.nan]),
    (_sig("min_30", AMOUNT, "min", 30), [30, 7, np.nan]),
    (_sig("max_30", AMOUNT, "max", 30), [50, 7, np.nan]),
    (_sig("last", AMOUNT, "last"), [30, 7, np.nan]),
    (_sig("change_all", AMOUNT, "change"), [-70, 0, np.nan]),
    (_sig("since_last", ORDERS, "days_since_last"), [5, 10, np.nan]),
    (_sig("since_first", ORDERS, "days_since_first"), [40, 10, np.nan]),
    (_sig("categories_all", Source("orders", "created_at", measure="category"), "distinct"), [2, 1, 0]),
    (_sig("categories_7", Source("orders", "created_at", measure="category"), "distinct", 7), [1, 0, 0]),
    (_sig("canceled_all", Source("orders", "canceled_at"), "count"), [1, 0, 0]),
    (_sig("cancel_rate", Source("orders", "canceled_at"), "ratio", per=ORDERS), [1 / 3, 0, np.nan]),
    (_sig("trend", ORDERS, "trend", 7, baseline_days=30), [(1 / 7) / (2 / 30), 0, np.nan]),
    (_sig("open", ORDERS, "open", end="canceled_at"), [2, 1, 0]),
    (_sig("open_sum", AMOUNT, "open", end="canceled_at"), [130, 7, 0]),
    (
        _sig(
            "unpaid_1d",
            Source("orders", "created_at", (Cond("paid_at", "missed", ("created_at", 1)),), lag_days=1),
            "count",
        ),
        [2, 0, 0],
    ),
    (
        _sig("new_sellers_all", Source("orders", "created_at", (Cond("seller_id", "first"),)), "count"),
        [2, 1, 0],
    ),
    (
        _sig("new_sellers_30", Source("orders", "created_at", (Cond("seller_id", "first"),)), "count", 30),
        [1, 1, 0],
    ),
    (
        _sig("wallet_apparel", Source("orders", "created_at", (Cond("category", "==", "apparel"),)), "count"),
        [2, 0, 0],
    ),
    (
        _sig("rejected", Source("refunds", "requested_at", (Cond("outcome", "==", "rejected"),)), "count"),
        [1, 0, 0],
    ),
    (
        _sig(
            "not_returned_14d",
            Source(
                "refunds",
                "requested_at",
                (Cond("return_shipped_at", "missed", ("requested_at", 14)),),
                lag_days=14,
            ),
            "count",
        ),
        [1, 0, 0],
    ),
    (_sig("verified", Source("buyers", "real_name_verified_at"), "count"), [1, 0, 0]),
    (_sig("tenure", Source("buyers", "registered_at"), "days_since_first"), [100, 50, 20]),
    (_sig("deviation_all", AMOUNT, "deviation"), [30 - 60, 0, np.nan]),
    (_sig("dips_all", AMOUNT, "dips", threshold=40.0), [1, 0, 0]),  # 100 -> 50 is one, 50 -> 30 is not
    (_sig("dips_30", AMOUNT, "dips", 30, threshold=40.0), [1, 0, 0]),  # its previous row precedes the window
    (_sig("dips_7", AMOUNT, "dips", 7, threshold=40.0), [0, 0, 0]),
    (_sig("decayed_10", ORDERS, "decayed", half_life_days=10), [2**-4 + 2**-3 + 2**-0.5, 2**-1, 0]),
    (
        _sig(
            "refunds_per_expected",
            Source("refunds", "requested_at"),
            "ratio",
            per=Source("orders", "created_at", measure="category ~ refund_base_rate"),
        ),
        [2 / (0.140 + 0.060 + 0.140), 0, np.nan],  # apparel, beauty, apparel (specs.MAPPINGS)
    ),
]


def test_each_aggregation_by_hand():
    spine = pd.DataFrame({"buyer_id": [1, 2, 3], "as_of": [T, T, T]})
    got = build.build_signals(_hand_tables(), spine, [s for s, _ in HAND])
    for signal, expected in HAND:
        np.testing.assert_allclose(got[signal.name].to_numpy(), expected, rtol=1e-6, err_msg=signal.name)


NEW_FAMILIES = (
    "credit_score_deviation_all",
    "credit_score_dips_365d",
    "refund_rate_adjusted_all",
    "refund_photos_damaged_sum_all",
    "refunds_damaged_rejected_count_all",
    "refunds_damaged_count_all",
    "bills_late_decayed_90d",
    "balances_late_decayed_365d",
)


def _family_tables(extra: dict[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """Buyer 1 with credit readings, a rejected refund, a late bill and a late presale balance, all
    before T; ``extra`` rows are appended to their tables."""
    tables = _hand_tables()
    tables["credit_scores"] = pd.DataFrame(
        {"buyer_id": [1, 1, 1], "ts": _ts(T - 90 * D, T - 60 * D, T - 30 * D), "score": [700, 640, 650]}
    )
    tables["credit_bills"] = pd.DataFrame(
        {
            "bill_id": [1],
            "buyer_id": [1],
            "due_at": _ts(T - 50 * D),
            "amount_due": [100.0],
            "paid_at": _ts(T - 40 * D),
            "amount_paid": [100.0],
        }
    )
    tables["presales"] = pd.DataFrame(
        {
            "order_id": [1],
            "buyer_id": [1],
            "deposit_amount": [10.0],
            "deposit_paid_at": _ts(T - 80 * D),
            "balance_amount": [90.0],
            "balance_due_at": _ts(T - 60 * D),
            "balance_paid_at": _ts(T - 55 * D),
            "shipped_before_balance": [False],
        }
    )
    for name, rows in (extra or {}).items():
        tables[name] = pd.concat([tables[name], rows], ignore_index=True)
    return tables


def _new_families(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp = T) -> pd.Series:
    spine = pd.DataFrame({"buyer_id": [1], "as_of": [as_of]})
    return build.build_signals(tables, spine, [registry.get(n) for n in NEW_FAMILIES]).iloc[0][
        list(NEW_FAMILIES)
    ]


def test_new_families_by_hand():
    got = _new_families(_family_tables())
    assert got["credit_score_deviation_all"] == pytest.approx(650 - (700 + 640 + 650) / 3)
    assert got["credit_score_dips_365d"] == 1  # 700 -> 640; 640 -> 650 is a rise
    assert got["refund_rate_adjusted_all"] == pytest.approx(2 / (0.140 + 0.060 + 0.140))
    assert got["refund_photos_damaged_sum_all"] == 2
    assert got["refunds_damaged_rejected_count_all"] == 1  # the other is decided only after T
    assert got["bills_late_decayed_90d"] == pytest.approx(2 ** (-50 / 90))  # known at its due date
    assert got["balances_late_decayed_365d"] == pytest.approx(2 ** (-60 / 365))


def _future_and_past(days: float) -> dict[str, pd.DataFrame]:
    """One more event of each new family, ``days`` from T (negative: before T)."""
    at = T + days * D
    return {
        "credit_scores": pd.DataFrame({"buyer_id": [1], "ts": _ts(at), "score": [520]}),
        "credit_bills": pd.DataFrame(
            {
                "bill_id": [2],
                "buyer_id": [1],
                "due_at": _ts(at),
                "amount_due": [50.0],
                "paid_at": _ts(None),
                "amount_paid": [np.nan],
            }
        ),
        "presales": pd.DataFrame(
            {
                "order_id": [2],
                "buyer_id": [1],
                "deposit_amount": [5.0],
                "deposit_paid_at": _ts(at - 20 * D),
                "balance_amount": [45.0],
                "balance_due_at": _ts(at),
                "balance_paid_at": _ts(None),
                "shipped_before_balance": [False],
            }
        ),
        "refunds": pd.DataFrame(
            {
                "refund_id": [3],
                "order_id": [3],
                "buyer_id": [1],
                "requested_at": _ts(at),
                "amount": [5.0],
                "reason": ["damaged"],
                "kind": ["refund_only"],
                "evidence_photos": [3],
                "fast_refund": [False],
                "decided_at": _ts(at),
                "outcome": ["rejected"],
                "refunded_at": _ts(None),
                "return_shipped_at": _ts(None),
                "return_received_at": _ts(None),
                "abuse_confirmed_at": _ts(None),
            }
        ),
    }


def test_a_past_event_moves_each_new_family():
    before, after = _new_families(_family_tables()), _new_families(_family_tables(_future_and_past(-3)))
    moved = [n for n in NEW_FAMILIES if before[n] != after[n]]
    assert moved == list(NEW_FAMILIES)


@pytest.mark.parametrize("days", [0, 2])
def test_an_event_at_or_after_as_of_moves_no_new_family(days):
    before, after = _new_families(_family_tables()), _new_families(_family_tables(_future_and_past(days)))
    pd.testing.assert_series_equal(before, after)


def test_output_is_aligned_with_an_unsorted_spine_and_float32():
    spine = pd.DataFrame({"buyer_id": [3, 1, 2, 1], "as_of": [T, T, T, T - 35 * D]}, index=[10, 11, 12, 13])
    got = build.build_signals(_hand_tables(), spine, [s for s, _ in HAND[:3]])
    assert list(got.columns) == ["buyer_id", "as_of", "count_30", "count_7", "count_all"]
    assert got.index.tolist() == [10, 11, 12, 13]
    assert got["count_all"].tolist() == [0, 3, 1, 1]
    assert got["count_30"].dtype == np.float32
    assert str(got["as_of"].dtype) == "datetime64[us, UTC]"


def test_make_spine_takes_buyers_registered_strictly_before():
    buyers = _hand_tables()["buyers"]
    spine = build.make_spine(buyers, [T - 50 * D, T])
    assert spine["buyer_id"].tolist() == [1, 1, 2, 3]
    assert build.make_spine(buyers, [T], limit=2)["buyer_id"].tolist() == [1, 2]


def test_registry_signals_build_on_the_hand_tables():
    spine = pd.DataFrame({"buyer_id": [1, 2, 3], "as_of": [T, T, T]})
    got = build.build_signals(_hand_tables(), spine)
    assert list(got.columns[2:]) == registry.signal_names()
    assert got["orders_count_all"].tolist() == [3, 1, 0]
    assert got["refunds_rejected_count_all"].tolist() == [1, 0, 0]
    assert not np.isinf(got.iloc[:, 2:].to_numpy()).any()


# --- leakage -------------------------------------------------------------------------------


def _days(days: np.ndarray) -> pd.TimedeltaIndex:
    return pd.to_timedelta(np.round(np.asarray(days) * 86400), unit="s").as_unit("us")


def _shift(frame: pd.DataFrame, rows: np.ndarray, days: np.ndarray) -> None:
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            frame.loc[rows, col] = frame.loc[rows, col] + _days(days)


def _perturb_after(
    tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, seed: int
) -> dict[str, pd.DataFrame]:
    """Change every fact not known before ``as_of`` and add events at or after it."""
    rng = np.random.default_rng(seed)
    donor = random_tables(seed, 10, first_id=900_000, rows_per_buyer=4)
    spine_buyers = tables["buyers"]["buyer_id"].to_numpy()
    out = {}
    for name, frame in tables.items():
        table = contract.table(name)
        frame = frame.copy()
        future = (frame[table.event_time] >= as_of).to_numpy()
        rows = frame.index[future]
        _shift(frame, rows, rng.uniform(0, 20, len(rows)))
        for col in table.columns:
            if col.allowed and len(rows):
                frame.loc[rows, col.name] = rng.choice(col.allowed, len(rows))
            elif col.kind == "float" and not col.nullable and len(rows):
                frame.loc[rows, col.name] = frame.loc[rows, col.name] * rng.uniform(0.5, 3, len(rows))
        past = ~future
        for col in table.columns:
            if pit.state_time(name, col.name) == col.name and col.name != table.event_time:
                unknown = past & (frame[col.name].isna() | (frame[col.name] >= as_of)).to_numpy()
                later = as_of + _days(rng.uniform(0, 30, unknown.sum()))
                frame.loc[unknown, col.name] = pd.Series(later, index=frame.index[unknown]).where(
                    rng.random(unknown.sum()) < 0.5
                )
        for (tname, col), governing in pit.STATE_TIMES.items():
            if tname == name:
                unknown = past & (frame[governing].isna() | (frame[governing] >= as_of)).to_numpy()
                if contract.table(name).column(col).allowed:
                    new = pd.Series(rng.choice(contract.table(name).column(col).allowed, unknown.sum()))
                else:
                    new = pd.Series(rng.uniform(0, 500, unknown.sum()))
                new.index = frame.index[unknown]
                frame.loc[unknown, col] = new.where(frame.loc[unknown, governing].notna())
        if name != "buyers":
            extra = donor[name].copy()
            delta = (as_of - extra[table.event_time].min()).ceil("D") if len(extra) else pd.Timedelta(0)
            _shift(extra, extra.index, np.full(len(extra), max(delta / D, 0)))
            extra["buyer_id"] = rng.choice(spine_buyers, len(extra))
            frame = pd.concat([frame, extra], ignore_index=True)
        out[name] = frame
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    as_of=st.sampled_from(["2023-09-15", "2024-01-01", "2024-03-17T13:45:10.5"]),
)
def test_changing_or_adding_anything_at_or_after_as_of_changes_nothing(seed, as_of):
    as_of = pd.Timestamp(as_of, tz="UTC")
    tables = random_tables(seed, 12, rows_per_buyer=6)
    spine = build.make_spine(tables["buyers"], [as_of])
    before = build.build_signals(tables, spine)
    after = build.build_signals(_perturb_after(tables, as_of, seed + 1), spine)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_perturbation_does_change_later_snapshots():
    """Guard against a vacuous leakage test: the perturbation is visible later on."""
    as_of = pd.Timestamp("2024-01-01", tz="UTC")
    tables = random_tables(5, 12, rows_per_buyer=6)
    spine = build.make_spine(tables["buyers"], [as_of + pd.Timedelta(days=60)])
    before = build.build_signals(tables, spine)
    after = build.build_signals(_perturb_after(tables, as_of, 6), spine)
    assert not before.equals(after)


# --- shards and serving --------------------------------------------------------------------


def _shards() -> list[dict[str, pd.DataFrame]]:
    return [random_tables(11, 25, first_id=1), random_tables(12, 25, first_id=1001)]


DATES = [pd.Timestamp(d, tz="UTC") for d in ("2023-07-01", "2024-01-01", "2024-05-20")]


def test_shard_builds_concatenate_to_the_whole_build():
    shards = _shards()
    whole = concat_tables(*shards)
    expected = build.build_signals(whole, build.make_spine(whole["buyers"], DATES))
    first_use = pd.concat([signals_devices.device_first_use(s) for s in shards], ignore_index=True)
    shared = signals_devices.shared_devices(first_use)
    assert shared["buyer_id"].isin(shards[0]["buyers"]["buyer_id"]).any()
    assert shared["buyer_id"].isin(shards[1]["buyers"]["buyer_id"]).any()
    parts = []
    for shard in shards:
        spine = build.make_spine(shard["buyers"], DATES)
        parts.append(build.build_signals({**shard, "shared_devices": shared}, spine))
    got = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("processes", [2, 3])
def test_a_build_split_over_forked_processes_equals_the_single_process_build(processes):
    tables = concat_tables(*_shards())
    spine = build.make_spine(tables["buyers"], DATES).sample(frac=1.0, random_state=0)  # unsorted
    one = build.build_signals(tables, spine)
    split = build.build_signals(tables, spine, processes=processes)
    pd.testing.assert_frame_equal(split, one, check_exact=True)
    groups = build._signal_groups(tables, registry.signals(), processes)
    assert len(groups) == processes and sum(map(len, groups)) == len(registry.signals())


def test_a_failed_build_process_fails_the_build(monkeypatch):
    tables = concat_tables(*_shards())
    spine = build.make_spine(tables["buyers"], DATES)
    last = build._signal_groups(tables, registry.signals(), 2)[1][-1].name
    evaluate = build.signals_eval.evaluate

    def broken(tables, buyer, as_of, signals):  # fails in the forked child only: it has the last group
        if any(s.name == last for s in signals):
            raise MemoryError("killed")
        return evaluate(tables, buyer, as_of, signals)

    monkeypatch.setattr(build.signals_eval, "evaluate", broken)
    with pytest.raises(RuntimeError, match="1 of 2 processes failed; nothing was built"):
        build.build_signals(tables, spine, processes=2)


def test_single_buyer_path_equals_batch():
    tables = concat_tables(*_shards())
    spine = build.make_spine(tables["buyers"], DATES)
    batch = build.build_signals(tables, spine)
    rows = np.random.default_rng(0).choice(len(spine), 25, replace=False)
    shared = signals_devices.shared_devices(signals_devices.device_first_use(tables))
    for i in rows:
        one = build.build_buyer({**tables, "shared_devices": shared}, int(spine.buyer_id[i]), spine.as_of[i])
        np.testing.assert_allclose(one, batch.iloc[i, 2:].to_numpy(dtype=np.float32), equal_nan=True)


def _write_parts(shards: list[dict[str, pd.DataFrame]], root: Path) -> None:
    for k, shard in enumerate(shards):
        for name, frame in shard.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            frame.to_parquet(root / name / f"part-{k:05d}.parquet", index=False)


@pytest.mark.skipif(importlib.util.find_spec("features.io") is None, reason="features.io not landed")
def test_cli_builds_shard_by_shard_like_the_whole(tmp_path):
    shards = _shards()
    _write_parts(shards, tmp_path / "data")
    args = argparse.Namespace(
        data=tmp_path / "data", as_of="2023-07-01,2024-01-01", out=tmp_path / "out.parquet", buyers_limit=None
    )
    assert build_cli.run(args) == 0
    got = pd.read_parquet(args.out)
    whole = concat_tables(*shards)
    expected = build.build_signals(whole, build.make_spine(whole["buyers"], DATES[:2]))
    assert list(got.columns) == ["buyer_id", "as_of", *registry.signal_names()]
    got = got.sort_values(["buyer_id", "as_of"]).reset_index(drop=True)
    expected = expected.sort_values(["buyer_id", "as_of"]).reset_index(drop=True)
    np.testing.assert_allclose(got.iloc[:, 2:].to_numpy(), expected.iloc[:, 2:].to_numpy(), equal_nan=True)

    limited = argparse.Namespace(
        data=args.data, as_of="2024-06-01", out=tmp_path / "few.parquet", buyers_limit=30
    )
    assert build_cli.run(limited) == 0
    few = pd.read_parquet(limited.out)
    assert few["buyer_id"].nunique() == len(few) == 30
    bad = argparse.Namespace(
        data=args.data, as_of="not-a-date", out=tmp_path / "bad.parquet", buyers_limit=None
    )
    assert build_cli.run(bad) == 2


@pytest.mark.skipif(
    not (Path(__file__).parents[2] / "simulator" / "__main__.py").exists(), reason="simulator not landed"
)
def test_simulated_market(tmp_path):
    data = tmp_path / "market"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--buyers",
            "500",
            "--months",
            "12",
            "--seed",
            "3",
            "--out",
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    from features import io

    tables = io.load_tables(data)
    dates = [tables["orders"]["created_at"].max().normalize() - pd.Timedelta(days=d) for d in (0, 120)]
    spine = build.make_spine(tables["buyers"], dates)
    got = build.build_signals(tables, spine)
    assert len(got) == len(spine) > 0
    values = got.iloc[:, 2:].to_numpy()
    assert not np.isinf(values).any()
    assert (np.nanstd(values, axis=0) > 0).sum() > 200, "most signals should vary on a simulated market"
    orders = tables["orders"]
    for row in got.sample(20, random_state=0).itertuples():
        mine = orders[(orders.buyer_id == row.buyer_id) & (orders.created_at < row.as_of)]
        assert row.orders_count_all == len(mine)
        assert row.spend_sum_365d == pytest.approx(
            mine.loc[mine.created_at >= row.as_of - pd.Timedelta(days=365), "amount"].sum(), rel=1e-5
        )
