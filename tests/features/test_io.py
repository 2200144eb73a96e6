"""Reading exports: parquet, CSV and folders of parts; all-or-nothing loading; the CLI."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract, io, validate_cli
from features.validate import ContractError

DTYPES = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "bool": "bool",
    "timestamp": "datetime64[us, UTC]",
}
NULLABLE_DTYPES = {**DTYPES, "int": "Int64", "bool": "boolean"}


def _problems(err: pytest.ExceptionInfo) -> dict[tuple, object]:
    return {(p.table, p.column, p.check): p for p in err.value.problems}


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    validate_cli.add_arguments(parser)
    return validate_cli.run(parser.parse_args(list(argv)))


@pytest.mark.parametrize("layout", ["parquet", "csv", "parts"])
def test_every_layout_loads_the_same_typed_frames(tmp_path, make_export, contract_frames, layout):
    frames = io.load_tables(make_export(tmp_path, layout=layout))
    assert list(frames) == list(contract.TABLE_NAMES)
    for t in contract.TABLES:
        expected = {c.name: (NULLABLE_DTYPES if c.nullable else DTYPES)[c.kind] for c in t.columns}
        assert frames[t.name].dtypes.astype(str).to_dict() == expected, t.name
        pd.testing.assert_frame_equal(frames[t.name], contract_frames[t.name])


def test_csv_naive_timestamps_are_utc(tmp_path, make_export):
    def naive(frame):
        return frame.assign(
            created_at=frame["created_at"].dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S")
        )

    orders = io.read_table(make_export(tmp_path, layout="csv", orders=naive), "orders")
    assert str(orders["created_at"].dtype) == "datetime64[us, UTC]"
    assert orders.loc[orders["order_id"] == 101, "created_at"].item() == pd.Timestamp("2024-01-11T10:00Z")


def test_csv_unparseable_timestamp_names_the_row(tmp_path, make_export):
    def garble(frame):
        frame["created_at"] = frame["created_at"].astype(str)
        frame.loc[frame["order_id"] == 203, "created_at"] = "next tuesday"
        return frame

    with pytest.raises(ContractError) as err:
        io.load_tables(make_export(tmp_path, layout="csv", orders=garble))
    (problem,) = err.value.problems
    assert (problem.table, problem.column, problem.check) == ("orders", "created_at", "unparseable_timestamp")
    assert problem.examples == ("order_id=203",) and problem.count == 1


@pytest.mark.parametrize("layout", ["csv", "parquet"])
def test_wrong_type_is_a_problem_not_a_pandas_error(tmp_path, make_export, layout):
    def text_amount(frame):
        return frame.assign(amount=frame["amount"].astype(str).where(frame["order_id"] != 502, "lots"))

    def fractional_rating(frame):
        return frame.assign(rating=frame["rating"].astype(float).where(frame["review_id"] != 8004, 2.5))

    with pytest.raises(ContractError) as err:
        io.load_tables(make_export(tmp_path, layout=layout, orders=text_amount, reviews=fractional_rating))
    found = _problems(err)
    assert set(found) == {("orders", "amount", "wrong_type"), ("reviews", "rating", "wrong_type")}
    assert found["orders", "amount", "wrong_type"].examples == ("order_id=502",)
    assert found["reviews", "rating", "wrong_type"].examples == ("review_id=8004",)


def test_nothing_is_loaded_partially(tmp_path, make_export):
    def orphan(frame):
        frame.loc[frame["refund_id"] == 7005, "order_id"] = 999
        return frame

    data_dir = make_export(tmp_path, refunds=orphan, disputes=None)
    with pytest.raises(ContractError) as err:
        io.load_tables(data_dir)
    assert set(_problems(err)) == {
        ("refunds", "order_id", "orphan_reference"),
        ("disputes", None, "missing_table"),
    }
    assert "refund_id=7005" in str(err.value)
    assert set(io.load_tables(data_dir, names=["orders", "cs_contacts"])) == {
        "buyers",
        "orders",
        "cs_contacts",
    }


def test_requested_tables_bring_their_references(tmp_path, make_export):
    frames = io.load_tables(make_export(tmp_path, disputes=None, reviews=None), names=["refunds"])
    assert list(frames) == ["buyers", "orders", "refunds"]


def test_read_table_raises_for_a_missing_or_unreadable_table(tmp_path, make_export):
    data_dir = make_export(tmp_path, disputes=None)
    (data_dir / "orders.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ContractError, match="disputes: missing_table"):
        io.read_table(data_dir, "disputes")
    with pytest.raises(ContractError, match="orders: unreadable"):
        io.load_tables(data_dir, names=["orders"])


def test_export_time_prefers_argument_then_manifest_then_now(tmp_path, make_export):
    data_dir = make_export(tmp_path)
    assert io.export_time(data_dir) == pd.Timestamp("2024-12-31T00:00Z")
    assert io.export_time(data_dir, "2024-06-01T08:00:00+08:00") == pd.Timestamp("2024-06-01T00:00Z")
    assert io.export_time(tmp_path / "nowhere") > pd.Timestamp("2025-01-01T00:00Z")
    with pytest.raises(ValueError, match="not an ISO-8601"):
        io.export_time(data_dir, "yesterday-ish")
    with pytest.raises(ContractError) as err:
        io.load_tables(data_dir, exported_at="2024-03-01T00:00:00Z")
    assert ("orders", "created_at", "after_export") in _problems(err)


def test_parts_are_listed_and_read_one_at_a_time(tmp_path, make_export):
    data_dir = make_export(tmp_path, layout="parts")
    assert io.shard_parts(data_dir) == [0, 1]
    assert io.shard_parts(make_export(tmp_path / "single")) == [0]
    assert set(io.read_table(data_dir, "orders", part=1)["buyer_id"]) == {4, 5, 6}
    shard = io.load_tables(data_dir, part=0)
    assert set(shard["buyers"]["buyer_id"]) == {1, 2, 3}
    assert sum(len(io.read_table(data_dir, "refunds", part=p)) for p in (0, 1)) == 3


def test_a_missing_part_file_is_an_empty_typed_table(tmp_path, make_export):
    data_dir = make_export(tmp_path, layout="parts")
    (data_dir / "disputes" / "part-00000.parquet").unlink()
    disputes = io.read_table(data_dir, "disputes", part=0)
    assert disputes.empty and str(disputes["opened_at"].dtype) == "datetime64[us, UTC]"


def test_single_file_tables_are_cut_by_manifest_shard_ranges(tmp_path, make_export):
    data_dir = make_export(tmp_path, layout="parts")
    orders = pa.concat_tables([pq.read_table(p) for p in sorted((data_dir / "orders").iterdir())])
    for p in (data_dir / "orders").iterdir():
        p.unlink()
    (data_dir / "orders").rmdir()
    pq.write_table(orders, data_dir / "orders.parquet")
    assert set(io.load_tables(data_dir, part=1)["orders"]["buyer_id"]) == {4, 5, 6}


def test_a_part_without_a_column_is_a_missing_column_not_nulls(tmp_path, make_export, capsys):
    data_dir = make_export(tmp_path, layout="parts")
    part = data_dir / "orders" / "part-00001.parquet"
    pq.write_table(pq.read_table(part).drop(["buyer_id"]), part)
    with pytest.raises(ContractError) as err:
        io.load_tables(data_dir)  # the whole export at once: part 1 would otherwise read as nulls
    assert [(p.table, p.column, p.check) for p in err.value.problems] == [
        ("orders", "buyer_id", "missing_column")
    ]
    assert "part-00001.parquet" in str(err.value)
    with pytest.raises(ContractError) as err:
        io.validate_export(data_dir)  # shard by shard: part 1's own table lacks it
    assert [(p.table, p.column, p.check) for p in err.value.problems] == [
        ("orders", "buyer_id", "missing_column")
    ]
    assert io.validate_export(data_dir, parts=[0])["orders"] > 0


def _negative_amount_for_buyer_5(frame):
    frame.loc[frame["order_id"].isin([502, 503]), "amount"] = -3.0
    return frame


def test_shard_wise_validation_finds_a_problem_in_part_1_only(tmp_path, make_export, capsys):
    data_dir = make_export(tmp_path, layout="parts", orders=_negative_amount_for_buyer_5)
    assert set(io.load_tables(data_dir, part=0)) == set(contract.TABLE_NAMES)
    with pytest.raises(ContractError) as err:
        io.load_tables(data_dir, part=1)
    assert [(p.table, p.column, p.check, p.examples) for p in err.value.problems] == [
        ("orders", "amount", "below_min", ("order_id=502", "order_id=503"))
    ]
    assert _cli(str(data_dir), "--part", "0") == 0
    assert _cli(str(data_dir)) == 2
    out = capsys.readouterr().out
    assert "orders.amount: below_min" in out and "order_id=502, order_id=503" in out


def test_shard_rows_outside_the_manifest_range_are_reported(tmp_path, make_export):
    data_dir = make_export(tmp_path, layout="parts")
    path = data_dir / "account_events" / "part-00001.parquet"
    events = pq.read_table(path)
    buyers = [2, *events["buyer_id"].to_pylist()[1:]]
    pq.write_table(events.set_column(0, "buyer_id", pa.array(buyers, pa.int64())), path)
    with pytest.raises(ContractError) as err:
        io.load_tables(data_dir, part=1)
    found = _problems(err)
    assert found["account_events", "buyer_id", "outside_shard"].examples == ("row 0",)
    assert ("account_events", "buyer_id", "orphan_reference") in found  # buyer 2 lives in part 0


def test_cli_ok_line_and_problem_listing(tmp_path, make_export, capsys):
    assert _cli(str(make_export(tmp_path / "good", layout="parts"))) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("OK ") and "11 tables" in out and "2 shard(s)" in out and "\n" not in out

    def late(frame):
        frame.loc[frame["contact_id"] == 6003, "ts"] = pd.Timestamp("2025-03-01", tz="UTC")
        return frame

    assert _cli(str(make_export(tmp_path / "bad", cs_contacts=late, violations=None))) == 2
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "cs_contacts.ts: after_export" in out and "contact_id=6003" in out
    assert "violations: missing_table" in out


def test_cli_refuses_a_missing_dir_an_unknown_part_and_a_bad_time(tmp_path, make_export, capsys):
    data_dir = make_export(tmp_path, layout="parts")
    assert _cli(str(tmp_path / "nowhere")) == 2
    assert _cli(str(data_dir), "--part", "7") == 2
    assert _cli(str(data_dir), "--exported-at", "soon") == 2
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"FAILED {tmp_path / 'nowhere'}: not a directory",
        f"FAILED {data_dir}: no part 7; parts are [0, 1]",
        f"FAILED {data_dir}: exported_at 'soon' is not an ISO-8601 time",
    ]


def test_python_dash_m_features_validate(tmp_path, make_export):
    """The documented command line, end to end in a subprocess."""
    good = make_export(tmp_path / "good")
    bad = make_export(
        tmp_path / "bad", credit_scores=lambda f: f.assign(score=f["score"].where(f["buyer_id"] != 3, 960))
    )
    ok = subprocess.run(
        [sys.executable, "-m", "features", "validate", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK ")
    failed = subprocess.run(
        [sys.executable, "-m", "features", "validate", str(bad), "--exported-at", "2025-01-01T00:00:00Z"],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2, failed.stderr
    assert (
        "credit_scores.score: above_max" in failed.stdout
        and "buyer_id=3,ts=2024-03-01T00:00:00Z" in failed.stdout
    )
