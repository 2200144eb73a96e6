"""Declared shifts: an unshifted run writes the same tables as the simulator before shifts existed; each
shift changes what it declares from its month on and nothing before; the truth stays calibrated."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract
from simulator import realised, shifts
from simulator.__main__ import main
from simulator.config import RunConfig
from simulator.write import write_export

# What RunConfig(buyers=400, months=8, seed=5, shard_size=150) wrote on the simulator before shifts
# were added (commit 91c7d12), as _summary puts it: per file and column, a digest of the exact values
# (integers, strings, timestamps, flags; other files' bytes), and for a float column its count, sum
# and sum of magnitudes. Floats are compared to 1e-9, not bit for bit: a hash of the float values,
# correct on one machine, failed on another with the same libraries (most likely numpy's vectorised
# exp and log, which differ in the last bit by CPU features); parquet's own bytes name the writer.
UNSHIFTED_EXPORT = Path(__file__).with_name("unshifted_export.json")
BUYERS, MONTHS, SEED, SHIFT_MONTH = 3000, 12, 3, "2023-07"
AT = pd.Timestamp("2023-07-01", tz="UTC")


def _summary(out: Path) -> dict[str, list]:
    summary: dict[str, list] = {}
    for f in sorted(out.rglob("*")):
        if not f.is_file():
            continue
        name = str(f.relative_to(out))
        if f.suffix != ".parquet":
            summary[name] = ["exact", hashlib.sha256(f.read_bytes()).hexdigest()]
            continue
        table = pq.read_table(f)
        for column_name, column in zip(table.column_names, table.columns, strict=True):
            values = column.to_pylist()
            if pa.types.is_floating(column.type):
                present = [v for v in values if v is not None]
                summary[f"{name}:{column_name}"] = [
                    "float",
                    len(present),
                    math.fsum(present),
                    math.fsum(abs(v) for v in present),
                ]
            else:
                text = json.dumps(values, default=str).encode()
                summary[f"{name}:{column_name}"] = ["exact", hashlib.sha256(text).hexdigest()]
    return summary


def test_unshifted_run_writes_what_it_wrote_before_shifts(tmp_path: Path) -> None:
    write_export(RunConfig(buyers=400, months=8, seed=5, shard_size=150), tmp_path / "m")
    got, want = _summary(tmp_path / "m"), json.loads(UNSHIFTED_EXPORT.read_text())
    assert sorted(got) == sorted(want)
    for key, expected in want.items():
        if expected[0] == "exact":
            assert got[key] == expected, key
        else:
            assert got[key][1] == expected[1], key
            assert math.isclose(got[key][2], expected[2], rel_tol=1e-9, abs_tol=1e-9), key
            assert math.isclose(got[key][3], expected[3], rel_tol=1e-9, abs_tol=1e-9), key
    assert "shifts" not in json.loads((tmp_path / "m" / "manifest.json").read_text())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("stress-2024-01", "KIND@YYYY-MM"),
        ("bogus@2024-01", "kind one of stress"),
        ("stress@2024-13", "month must be in 1..12"),
        ("stress@2024-01:1.5", "strength must be in"),
        ("bureau@2024-01:x", "KIND@YYYY-MM"),
    ],
)
def test_bad_shift_spec_is_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shifts.parse(spec)


def test_shift_outside_the_period_is_an_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    assert (
        main(["--buyers", "50", "--months", "3", "--out", str(tmp_path / "x"), "--shift", "stress@2030-01"])
        == 2
    )
    assert "outside the simulated period" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert shifts.parse("bureau@2023-05") == shifts.Shift("bureau", dt.date(2023, 5, 1), 0.9)


def _export(tmp_path_factory, *specs: str) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("shift") / "m"
    cfg = RunConfig(BUYERS, MONTHS, SEED, shard_size=1500, shifts=tuple(shifts.parse(s) for s in specs))
    write_export(cfg, out)
    tables = {t: pd.read_parquet(out / t) for t in contract.TABLE_NAMES}
    for name in ("risk", "presale_opportunities", "refund_opportunities", "traits"):
        tables[f"truth_{name}"] = pd.read_parquet(out / "truth" / f"{name}.parquet")
    tables["exported_at"] = pd.Timestamp(json.loads((out / "manifest.json").read_text())["exported_at"])
    return tables


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _export(tmp_path_factory)


def test_bureau_rescales_readings_from_its_month_only(tmp_path_factory, base) -> None:
    shifted = _export(tmp_path_factory, f"bureau@{SHIFT_MONTH}:0.9")
    a, b = base["credit_scores"], shifted["credit_scores"]
    assert (a["ts"] == b["ts"]).all() and (a["buyer_id"] == b["buyer_id"]).all()
    before = a["ts"] < AT
    assert (a.loc[before, "score"] == b.loc[before, "score"]).all()
    inside = ~before & a["score"].between(360, 940)
    assert np.abs(b.loc[inside, "score"] - (a.loc[inside, "score"] * 0.9 + 50)).max() <= 1.0


def test_category_mix_moves_orders_to_electronics_from_its_month(tmp_path_factory, base) -> None:
    shifted = _export(tmp_path_factory, f"category_mix@{SHIFT_MONTH}:0.3")

    def share(t: pd.DataFrame, after: bool) -> float:
        rows = t[(t["created_at"] >= AT) == after]
        return float((rows["category"] == "electronics").mean())

    a, b = base["orders"], shifted["orders"]
    assert share(b, False) == pytest.approx(share(a, False), abs=0.002)
    assert share(b, True) > share(a, True) + 0.2


def test_fraud_wave_registers_new_fraudsters_in_its_month(tmp_path_factory, base) -> None:
    shifted = _export(tmp_path_factory, f"fraud_wave@{SHIFT_MONTH}:0.02")

    def wave(t: dict) -> pd.DataFrame:
        buyers = t["buyers"].merge(t["truth_traits"][["buyer_id", "fraudster"]], on="buyer_id")
        at = buyers["registered_at"]
        return buyers[(at >= AT) & (at < AT + pd.Timedelta(days=16))]

    assert wave(shifted)["fraudster"].sum() >= 0.02 * BUYERS * 0.9
    assert wave(base)["fraudster"].sum() < 0.02 * BUYERS * 0.3


def test_stress_shock_raises_the_truth_from_its_month_and_the_truth_stays_calibrated(
    tmp_path_factory, base
) -> None:
    shifted = _export(tmp_path_factory, f"stress@{SHIFT_MONTH}:0.3")

    def rows(t: dict, after: bool) -> pd.DataFrame:
        r = t["truth_risk"]
        # a label window that ends before the shift does not see it; one that starts after does
        shock = (r["as_of"] >= AT) & (r["as_of"] < AT + pd.DateOffset(months=3))
        return r[shock] if after else r[r["as_of"] + pd.Timedelta(days=90) < AT]

    before, before_base = rows(shifted, False), rows(base, False)
    assert (before["stress_state"].to_numpy() == before_base["stress_state"].to_numpy()).all()
    # Later draws of the shard's one generator move once the shifted months draw differently, so
    # the history before the shift is another draw of the same process, not the same bytes.
    assert before["p_bad_90d"].mean() == pytest.approx(before_base["p_bad_90d"].mean(), rel=0.1)
    assert rows(shifted, True)["stress_state"].mean() > rows(base, True)["stress_state"].mean() + 0.15
    assert rows(shifted, True)["p_bad_90d"].mean() > 1.2 * rows(base, True)["p_bad_90d"].mean()
    # The truth is the probability of what happened, shift or not: the shock months' realised
    # 90-day bad outcomes agree with the truth's expected count.
    events = realised.bad_events(shifted, shifted["exported_at"])
    labels = realised.realised_labels(rows(shifted, True), events, shifted["exported_at"])
    expected, sd, real = realised.expected_vs_realised(labels["p_bad_90d"], labels["bad_90d"])
    assert expected > 100 and abs(real - expected) <= 3 * sd
