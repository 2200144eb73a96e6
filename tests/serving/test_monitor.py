"""The daily monitor: drift on frozen bins, calibration of mature outcomes only, its gauges on
/metrics, its alert rules (promtool), and clear errors on bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rating import drift
from serving.monitor import measure
from serving.monitor.measure import MonitorError
from serving.monitor.metrics import samples
from serving.monitor.rules import alerts_yaml, breaches, firing
from serving.monitor.run import monitor_day
from serving.policy import load_policy
from training.reference import monitor_reference

from .conftest import SIGNALS, TEST_POLICY

SERVING = Path(__file__).resolve().parents[2] / "serving"
DAY = pd.Timestamp("2025-06-03")


# --- drift primitives against hand-computed values ------------------------------------------


def test_psi_of_hand_computed():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    assert drift.psi_of([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert drift.psi_of([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_jensen_shannon_hand_computed():
    assert drift.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    # m = (0.75, 0.25): KL(p||m) = 0.5 log2(2/3) + 0.5 log2(2); KL(q||m) = log2(4/3)
    expected = (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2
    assert drift.jensen_shannon([0.5, 0.5], [1, 0]) == pytest.approx(expected)
    assert drift.jensen_shannon([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)


def test_bins_are_frozen_at_the_reference():
    reference = np.arange(100, dtype=float)
    edges = drift.frozen_edges(reference, 10)
    assert edges.size == 9
    assert drift.proportions(reference, edges)[:10] == pytest.approx([0.1] * 10)
    # Today every value is beyond the reference's range: all in its last bin, none re-binned.
    today = np.full(50, 1000.0)
    props = drift.proportions(today, edges)
    assert props[9] == 1.0 and props.sum() == pytest.approx(1.0)
    assert drift.psi_of(drift.proportions(reference, edges), props) == pytest.approx(
        (1 - 0.1) * math.log(1 / 0.1) + 9 * (drift.FLOOR - 0.1) * math.log(drift.FLOOR / 0.1)
    )
    # Missing values have their own bin: a signal that goes missing drifts.
    assert drift.proportions([np.nan, 5.0], edges)[-1] == 0.5


def test_training_psi_is_the_shared_one():
    from training.evaluation.metrics import psi

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5000), rng.normal(0.3, 1, size=5000)
    assert psi(a, b) == drift.psi(a, b) > 0.05


def test_wilson_interval():
    lo, hi = measure.wilson(0, 50)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.0713, abs=1e-4)
    lo, hi = measure.wilson(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-4) and hi == pytest.approx(0.1744, abs=1e-4)


# --- calibration: immature outcomes are not good ---------------------------------------------


def _log(rows: list[dict]) -> pd.DataFrame:
    """A decision log as ``serving.offline.ope.read_log`` returns it."""
    out = []
    for i, r in enumerate(rows):
        out.append(
            {
                "buyer_id": i,
                "ref_id": i,
                "decision": "approve" if r.get("approved", True) else "decline",
                "approved": r.get("approved", True),
                "propensity": 1.0,
                "created_at": r["created_at"],
                "at_risk": 100.0,
                "head_loss": 100.0 * r["p"],
                "loss": 100.0 if r.get("bad") else 0.0,
                "inputs": {"order": {"amount": 110.0, "category": "beauty", "balance_due_at": r["due"]}},
                "outputs": {"star": r.get("star", 3), "score": 700, "p_loss": r["p"]},
            }
        )
    return pd.DataFrame(out)


def test_immature_approvals_are_counted_apart_not_as_good():
    end = pd.Timestamp("2025-06-04")
    log = _log(
        [
            {"created_at": pd.Timestamp("2025-04-01"), "due": "2025-04-20T00:00:00Z", "p": 0.1, "bad": True},
            {"created_at": pd.Timestamp("2025-04-01"), "due": "2025-04-20T00:00:00Z", "p": 0.1},
            # due in the future, no outcome yet: immature, not a good outcome
            {"created_at": pd.Timestamp("2025-06-01"), "due": "2025-06-30T00:00:00Z", "p": 0.1},
            {"created_at": pd.Timestamp("2025-06-01"), "due": "2025-06-30T00:00:00Z", "p": 0.1},
            # due 2025-05-30 + 7 days grace = 2025-06-06: still immature on 2025-06-04
            {"created_at": pd.Timestamp("2025-05-01"), "due": "2025-05-30T00:00:00Z", "p": 0.1},
        ]
    )
    cal = measure.calibration(measure.PRESALE, log, end)["3"]
    assert (cal["mature"], cal["immature"], cal["bad"]) == (2, 3, 1)
    assert cal["realised"] == 0.5 and cal["expected"] == pytest.approx(0.1)
    assert cal["excess"] is None  # fewer than MIN_MATURE mature approvals: not judged


def test_calibration_excess_when_a_band_loses_more_than_priced():
    rows = [
        {
            "created_at": pd.Timestamp("2025-03-01"),
            "due": "2025-03-20T00:00:00Z",
            "p": 0.02,
            "bad": i % 4 == 0,
        }
        for i in range(80)
    ]
    cal = measure.calibration(measure.PRESALE, _log(rows), pd.Timestamp("2025-06-04"))["3"]
    assert cal["realised"] == 0.25 and cal["excess"] > 0.1


# --- a record, its gauges and its alerts -----------------------------------------------------


class _Model:
    """Scores are the first signal; enough of a model for the reference."""

    signal_names = ("a", "b")

    def score(self, X):
        return SimpleNamespace(score=np.asarray(X)[:, 0] * 100 + 600)


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"a": rng.normal(size=4000), "b": rng.exponential(size=4000)})
    return json.loads(json.dumps(monitor_reference(_Model(), rows, {})))


def _record(reference, shift: float, day=DAY, history=()):
    rng = np.random.default_rng(int(day.day) + int(shift * 10))
    matrix = np.column_stack([rng.normal(shift, 1, 3000), rng.exponential(size=3000)])
    window = {measure.PRESALE: _log([{"created_at": day, "due": "2025-07-01T00:00:00Z", "p": 0.05}])}
    return measure.record(
        day, reference, ["a", "b"], matrix, matrix[:, 0] * 100 + 600, window, {}, {}, history,
        {"run_at": 1.0, "day_at": day.timestamp()},
    )  # fmt: skip


def test_a_shifted_signal_raises_its_gauge_and_alert(reference):
    calm = _record(reference, 0.0)
    shifted = _record(reference, 1.0)
    assert calm["signal_psi"]["a"] < 0.05 and calm["signal_psi"]["b"] < 0.05
    assert shifted["signal_psi"]["a"] > 0.25 and shifted["signal_psi"]["b"] < 0.05
    gauge = {(n, tuple(sorted(lab.items()))): v for n, _, lab, v in samples(shifted)}
    assert gauge[("buyer_trust_monitor_signal_psi", (("signal", "a"),))] == shifted["signal_psi"]["a"]
    assert breaches(shifted)["BuyerTrustScoreDrift"] == [{}]  # the score is signal a here
    assert not any(breaches(calm).values())
    # A week of calm runs, two shifted ones, a calm one: the signal's PSI rose within the week on two
    # consecutive runs, so its alert fires on the second; the score alert pages on the first.
    history: list[dict] = []
    for i, s in enumerate([0] * 7 + [1, 1, 0]):
        history.append(_record(reference, s, DAY + pd.Timedelta(days=i), history))
    assert history[7]["signal_psi_change"]["a"] > 0.25 > abs(history[7]["signal_psi_change"]["b"])
    assert breaches(history[7])["BuyerTrustSignalDrift"] == [{"signal": "a"}]
    raised = [(a["day"], a["alert"]) for a in firing(history)]
    assert raised == [("2025-06-10", "BuyerTrustScoreDrift"), ("2025-06-11", "BuyerTrustSignalDrift")]


def test_empty_day_is_a_clear_error(reference):
    with pytest.raises(MonitorError, match="no decision in the window ending 2025-06-04"):
        measure.record(DAY, reference, ["a", "b"], np.zeros((5, 2)), np.zeros(5), {}, {}, {})


def test_snapshot_signal_missing_from_reference_is_a_clear_error(reference):
    with pytest.raises(MonitorError, match=r"reference: no bins for signals \['c'\]"):
        measure.signal_drift(reference, ["a", "c"], np.zeros((5, 2)))


# --- the rule file and promtool ----------------------------------------------------------------


def test_alerts_yml_is_generated_from_the_rules():
    assert (SERVING / "alerts.yml").read_text() == alerts_yaml(), (
        "serving/alerts.yml is stale: python -m serving monitor --rules > serving/alerts.yml"
    )


def test_promtool_test_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (Debian), see README")
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- end to end: the service logs, the monitor reads the log, the service exposes the gauges ---


def _tiny_reference(rating, snapshot_rows) -> dict:
    rows = pd.DataFrame(snapshot_rows[1], columns=SIGNALS)
    opp = pd.DataFrame(snapshot_rows[1][:500], columns=SIGNALS).assign(amount=500.0, category="beauty")
    return json.loads(
        json.dumps(monitor_reference(rating.model, rows, {measure.PRESALE: SimpleNamespace(rows=opp)}))
    )


def test_monitor_reads_the_decision_log_and_the_service_exposes_it(
    ledger_app,
    client,
    buyer_with_star,
    presale_body,
    rating,
    snapshot_rows,
    snapshot_file,
    tmp_path,
    make_app,
    config,
):
    app = ledger_app()
    c = app.test_client()
    c.environ_base.update(client.environ_base)
    buyers = [buyer_with_star(s, n) for s in (3, 4, 5) for n in range(4)]
    for i, buyer in enumerate(buyers):
        answer = c.post("/v1/decisions", json=presale_body(buyer, 300.0, order_id=100 + i))
        assert answer.status_code == 200, answer.get_json()
    ledger = app.extensions["buyer_trust"].ledger
    today = pd.Timestamp.now("UTC").normalize().tz_localize(None)
    ids, X = snapshot_rows
    reference = _tiny_reference(rating, snapshot_rows)
    rec = monitor_day(
        ledger.engine.execution_options(schema_translate_map={None: ledger.schema}) if ledger.schema else ledger.engine,
        today, reference, SIGNALS, X, rating.model.score(X).score, load_policy(TEST_POLICY), (), 7, 150,
        {"run_at": 1.0, "model_version": "tiny", "reference_run": "r"},
    )  # fmt: skip
    presale = rec["services"][measure.PRESALE]
    assert presale["decisions"] == len(buyers)
    assert presale["bands"]["all"]["approvals"] == sum(
        presale["bands"][b]["approvals"] for b in presale["bands"] if b != "all"
    )
    assert rec["score_psi"] == pytest.approx(0.0, abs=1e-9)  # the snapshot is the reference's population
    assert presale["bands"]["all"]["approvals"] > 0
    cal = presale["calibration"]["all"]  # approvals due in 2030: every one immature, none counted as good
    assert cal["mature"] == 0 and cal["immature"] == presale["bands"]["all"]["approvals"]

    from serving.monitor.run import write_outputs

    write_outputs(tmp_path / "monitor", rec)
    assert rec["bills"] == {"read": False, "z": None, "why": "no credit_bills table read"}
    assert (tmp_path / "monitor" / "report.html").read_text().count("data:image/png;base64") == 7
    served = make_app(config | {"monitor_record": str(tmp_path / "monitor" / "latest.json")})
    text = served.test_client().get("/metrics").get_data(as_text=True)
    assert f'buyer_trust_monitor_decisions{{service="{measure.PRESALE}"}} {float(len(buyers))}' in text
    assert 'buyer_trust_monitor_signal_psi{signal="signal_0"}' in text
    assert "buyer_trust_monitor_record_error 0.0" in text


def test_unreadable_record_is_a_gauge_not_a_failed_scrape(make_app, config, tmp_path):
    bad = tmp_path / "latest.json"
    bad.write_text("{not json")
    text = make_app(config | {"monitor_record": str(bad)}).test_client().get("/metrics")
    assert text.status_code == 200
    assert "buyer_trust_monitor_record_error 1.0" in text.get_data(as_text=True)


def test_cli_bad_input_is_a_message_and_exit_2(tmp_path, model_uri, snapshot_file, capsys):
    from serving.__main__ import main

    common = ["monitor", "--out", str(tmp_path / "m"), "--snapshot", str(snapshot_file), "--model-uri", model_uri,
              "--policy", str(TEST_POLICY), "--database-url", f"sqlite:///{tmp_path / 'empty.db'}", "--day", "2025-06-03"]  # fmt: skip
    assert main([*common, "--reference", str(tmp_path / "absent.json")]) == 2
    assert "reference" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(common) == 2  # a model saved as a path has no training run to take a reference from
    assert "pass --reference FILE" in capsys.readouterr().err


def test_approval_rate_change_in_standard_errors():
    assert measure.trailing_change([0.4] * 6, 0.6) is None  # under a week of history
    change = measure.trailing_change([0.4] * 30, 0.6)
    assert change == pytest.approx(0.2)
    assert measure.rate_z(change, 0.6, 100) == pytest.approx(0.2 / math.sqrt(0.4 * 0.6 / 100))
    assert measure.rate_z(change, 0.6, measure.MIN_DECISIONS - 1) is None  # too few decisions to judge


def test_new_accounts_surge_and_calendar_signals_left_out_of_the_weekly_change():
    history = [{"population": 1000 + 8 * i, "new_buyers": None if i == 0 else 8} for i in range(10)]
    assert measure.new_accounts(history, history[-1]["population"] + 9)[1] == pytest.approx(1 / math.sqrt(8))
    new, z = measure.new_accounts(history, history[-1]["population"] + 30)
    assert new == 30 and z > 4
    assert measure.new_accounts([], 500) == (None, None)
    # a recency signal moves with the calendar: its PSI is kept, its weekly change is not alerted on
    week = [{"signal_psi": {"presales_days_since_last": 0.1, "presales_count_90d": 0.1}}] * measure.WEEK_RUNS
    change = measure.psi_change(week, {"presales_days_since_last": 2.0, "presales_count_90d": 0.5})
    assert change == {"presales_count_90d": pytest.approx(0.4)}


def test_a_signal_mean_that_leaves_its_daily_range_is_a_large_z():
    rng = np.random.default_rng(3)
    history = []
    for _ in range(measure.MOVE_RUNS):  # a mean that wanders by about 0.01 a day
        history.append({"signal_mean": {"a": 600 + 0.01 * rng.standard_normal()}})
    calm = np.full((50, 1), history[-1]["signal_mean"]["a"] + 0.01)
    moved = np.full((50, 1), history[-1]["signal_mean"]["a"] - 0.5)
    assert abs(measure.mean_moves(history, ["a"], calm)[1]["a"]) < 3
    assert measure.mean_moves(history, ["a"], moved)[1]["a"] < -10
    # under five weeks of runs (no month's due dates yet): not judged
    assert measure.mean_moves(history[1:], ["a"], moved)[1] == {}


def test_cli_judges_a_day_and_writes_record_latest_and_report(
    client, config, buyer_with_star, presale_body, rating, snapshot_rows, tmp_path, capsys
):
    from serving.__main__ import main

    for i in range(3):
        assert (
            client.post(
                "/v1/decisions", json=presale_body(buyer_with_star(4, i), 300.0, order_id=i)
            ).status_code
            == 200
        )
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(_tiny_reference(rating, snapshot_rows)))
    today = pd.Timestamp.now("UTC").strftime("%Y-%m-%d")
    out = tmp_path / "monitor"
    argv = ["monitor", "--day", today, "--out", str(out), "--snapshot", config["snapshot"], "--reference", str(reference),
            "--model-uri", config["model_uri"], "--policy", config["policy_path"], "--database-url", config["database_url"]]  # fmt: skip
    export = tmp_path / "export"
    export.mkdir()
    assert main([*argv, "--data", str(export)]) == 0, capsys.readouterr().err
    assert f"pay-later bills not judged: export {export} has no credit_bills table" in capsys.readouterr().out
    record = json.loads((out / "latest.json").read_text())
    assert record == json.loads((out / "records" / f"{today}.json").read_text())
    assert record["services"][measure.PRESALE]["decisions"] == 3 and record["buyers"] == len(snapshot_rows[0])
    assert record["bills"] == {"read": False, "z": None, "why": f"export {export} has no credit_bills table"}
    assert "<h2>Calibration per star band" in (out / "report.html").read_text()
    # an export with bills: the cycle is read (one cycle, so not judged yet)
    paid = [today, None]
    _bills({f"{pd.Timestamp(today) + pd.Timedelta(days=5):%Y-%m-%d}": paid}).assign(
        buyer_id=1, amount_due=10.0, amount_paid=[10.0, None]
    ).to_parquet(export / "credit_bills.parquet")
    assert main([*argv, "--data", str(export)]) == 0, capsys.readouterr().err
    bills = json.loads((out / "latest.json").read_text())["bills"]
    assert bills["read"] and (bills["bills"], bills["unpaid_share"], bills["z"]) == (2, 0.5, None)
    # a bill table that breaks the contract is bad input: exit 2, the message names the table
    pd.DataFrame({"bill_id": [1], "buyer_id": [1]}).to_parquet(export / "credit_bills.parquet")
    assert main([*argv, "--data", str(export)]) == 2
    assert "credit_bills" in capsys.readouterr().err


# --- the day's new rows of a source (a bureau that rescales its scores) -------------------------

_FRESH = (measure.Fresh("new_readings", "v", "since", "the day's readings"),)


def _fresh_matrix(fresh_values, stale_values) -> np.ndarray:
    """Columns ``v`` and ``since``: the fresh rows read 0.5 days ago, the stale ones 3 days ago, plus a
    buyer never read (``since`` NaN) and a fresh one whose value is missing: neither counts."""
    rows = (
        [(v, 0.5) for v in fresh_values] + [(v, 3.0) for v in stale_values] + [(900.0, np.nan), (np.nan, 0.1)]
    )
    return np.array(rows, dtype=np.float32)


def test_fresh_mean_reads_only_the_days_rows_hand_computed():
    fresh = [-10.0] * 12 + [20.0] * 12  # mean 5.0 over 24 fresh buyers
    matrix = _fresh_matrix(fresh, [400.0] * 30)
    out = measure.fresh_means([], ["v", "since"], matrix, _FRESH)["new_readings"]
    assert out == {"n": 24, "mean": pytest.approx(5.0), "z": None}  # no history: not judged
    # under MIN_FRESH buyers read that day: no mean, not judged
    few = measure.fresh_means([], ["v", "since"], _fresh_matrix([1.0] * 5, [2.0] * 50), _FRESH)
    assert few["new_readings"] == {"n": 5, "mean": None, "z": None}
    # a statistic whose signals the snapshot lacks is left out
    assert measure.fresh_means([], ["v", "other"], matrix, _FRESH) == {}


def test_fresh_mean_z_against_the_days_before_yesterday_hand_computed():
    past = [1.0, 3.0] * 5  # mean 2, sample standard deviation sqrt(10 / 9)
    history = [{"fresh": {"new_readings": {"mean": m}}} for m in past]
    history.append({"fresh": {"new_readings": {"mean": -50.0}}})  # yesterday: left out of the baseline
    matrix = _fresh_matrix([-6.0] * 30, [400.0] * 10)  # today's mean -6
    z = measure.fresh_means(history, ["v", "since"], matrix, _FRESH)["new_readings"]["z"]
    assert z == pytest.approx((-6.0 - 2.0) / math.sqrt(10 / 9))
    # fewer than MIN_TRAILING earlier days: not judged
    short = history[-measure.MIN_TRAILING :]
    assert measure.fresh_means(short, ["v", "since"], matrix, _FRESH)["new_readings"]["z"] is None


def test_a_calendar_days_usual_jump_is_not_a_move_a_larger_one_is_hand_computed():
    # five weeks of a count whose mean is flat but for last month's due date (+1), then yesterday
    values = [100.0] * 33 + [101.0] * 3
    history = [{"signal_mean": {"bills": v}} for v in values]
    steps = np.diff(values[:-1])  # yesterday's step is left out of the baseline
    centre = 1 / 34
    assert steps.size == 34 and steps.mean() == pytest.approx(centre)
    spread = math.sqrt(((33 / 34) ** 2 + 33 * (1 / 34) ** 2) / 33)  # 0.1715: the quiet days' spread
    largest = 33 / 34
    assert measure.LARGEST_SHARE * largest > spread  # the scale is a quarter of last month's jump
    scale = measure.LARGEST_SHARE * largest

    def z(today):
        return measure.mean_moves(history, ["bills"], np.full((10, 1), today))[1]["bills"]

    # this month's due date: 1.1 again; on the quiet days' spread alone it would read 6.2, an alert
    assert (1.1 - centre) / spread > 6
    assert z(101.0 + 1.1) == pytest.approx((1.1 - centre) / scale) and z(102.1) < 6
    # twice last month's jump is news
    assert z(103.0) == pytest.approx((2.0 - centre) / scale) and z(103.0) > 6


# --- a declared shift, end to end: simulated export -> daily snapshots -> records -> alerts ----


def _fresh_records(out, days: pd.DatetimeIndex) -> list[dict]:
    """The fresh-row part of the monitor's record for each day, on the snapshot published at its end."""
    from features.build import build_signals, make_spine
    from features.io import load_tables
    from features.registry import get

    names = [measure.FRESH[0].value, measure.FRESH[0].since]
    tables = load_tables(out, ["buyers", "credit_scores"])
    spine = make_spine(tables["buyers"], [(d + pd.Timedelta(days=1)).tz_localize("UTC") for d in days])
    frame = build_signals(tables, spine, [get(n) for n in names])
    history: list[dict] = []
    for as_of, rows in frame.groupby("as_of", sort=True):
        day = as_of.tz_convert("UTC").tz_localize(None) - pd.Timedelta(days=1)
        fresh = measure.fresh_means(history, names, rows[names].to_numpy(np.float32))
        history.append(
            {"day": f"{day:%Y-%m-%d}", "signal_psi": {}, "score_psi": 0.0, "services": {}, "fresh": fresh}
        )
    return history


def test_a_bureau_rescale_is_alerted_on_its_second_run_and_its_twin_stays_quiet(tmp_path):
    from serving.monitor.rules import RULES
    from simulator import shifts
    from simulator.config import RunConfig
    from simulator.write import write_export

    rule = [r for r in RULES if r.metric == "fresh_mean_z"]
    days = pd.date_range("2023-06-03", "2023-07-02")  # 28 runs before the rescale, its first 2 after
    raised = {}
    for name, declared in (("twin", ()), ("bureau", (shifts.parse("bureau@2023-07:0.8"),))):
        write_export(RunConfig(4000, 8, 11, shard_size=2000, shifts=declared), tmp_path / name)
        records = _fresh_records(tmp_path / name, days)
        assert all(r["fresh"]["credit_score_new_readings"]["n"] >= measure.MIN_FRESH for r in records)
        raised[name] = firing(records, rule)
    assert raised["twin"] == []
    assert raised["bureau"] == [
        {
            "day": "2023-07-02",
            "alert": "BuyerTrustNewReadingsMove",
            "labels": {"statistic": "credit_score_new_readings"},
        }
    ]


# --- the pay-later bill cycle: how much of it is unpaid against earlier cycles -------------------


def _bills(cycles: dict[str, list[str | None]]) -> pd.DataFrame:
    """A ``credit_bills`` table: per due date, the payment instants of its bills (None: unpaid)."""
    rows = [(due, paid) for due, paid_at in cycles.items() for paid in paid_at]
    return pd.DataFrame(
        {
            "bill_id": range(1, len(rows) + 1),
            "due_at": pd.to_datetime([due for due, _ in rows], utc=True, format="ISO8601"),
            "paid_at": pd.to_datetime([paid for _, paid in rows], utc=True, format="ISO8601"),
        }
    )


# Seven monthly cycles due on the 10th: four bills each, paid on the 2nd, the 5th and the 8th, one
# unpaid; in the fourth cycle the bill of the 8th is paid on the 9th (two unpaid on the 8th at noon).
_PAST = {
    f"2025-{m:02d}-10": [
        f"2025-{m:02d}-02",
        f"2025-{m:02d}-05",
        f"2025-{m:02d}-{9 if m == 4 else 8:02d}",
        None,
    ]
    for m in range(1, 8)
}


def test_bill_cycle_hand_computed_and_point_in_time():
    # the current cycle (due 08-10) at the end of 08-08 12:00: two of its four bills paid before it
    current = {"2025-08-10": ["2025-08-02", "2025-08-05", "2025-08-09", None]}
    end = pd.Timestamp("2025-08-08 12:00")
    out = measure.bill_cycle(_bills(_PAST | current), end)
    # earlier cycles at their due date minus 36 h: 1/4 unpaid in six of them, 2/4 in the fourth
    past = np.array([0.25, 0.25, 0.25, 0.5, 0.25, 0.25, 0.25])
    scale = max(past.std(ddof=1), math.sqrt(past.mean() * (1 - past.mean()) / 4))
    assert out["read"] and out["due_at"] == "2025-08-10T00:00:00Z" and out["hours_from_due"] == -36.0
    assert (out["bills"], out["cycles"], out["unpaid_share"]) == (4, 7, 0.5)
    assert out["expected"] == pytest.approx(past.mean()) and out["spread"] == pytest.approx(scale)
    assert out["z"] == pytest.approx((0.5 - past.mean()) / scale)
    # a payment before the day's end moves it; one after the end, or of a bill not yet due, does not
    paid_now = measure.bill_cycle(
        _bills(_PAST | {"2025-08-10": ["2025-08-02", "2025-08-05", "2025-08-08 11:00", None]}), end
    )
    assert paid_now["unpaid_share"] == 0.25 and paid_now["z"] < out["z"]
    later = measure.bill_cycle(
        _bills(_PAST | {"2025-08-10": ["2025-08-02", "2025-08-05", "2025-08-08 13:00", None]}), end
    )
    assert later["unpaid_share"] == 0.5 and later["z"] == pytest.approx(out["z"])
    # a cycle with no payment yet is not the current one: next month's bills change nothing today
    ahead = measure.bill_cycle(_bills(_PAST | current | {"2025-09-10": ["2025-09-02", None]}), end)
    assert ahead == out
    # fewer than MIN_BILL_CYCLES earlier cycles: figures, no judgement
    short = dict(list(_PAST.items())[-measure.MIN_BILL_CYCLES + 1 :]) | current
    few = measure.bill_cycle(_bills(short), end)
    assert few["z"] is None and few["unpaid_share"] == 0.5 and "earlier bill cycles" in few["why"]


def test_an_export_without_bills_is_judged_without_them_and_says_so(reference):
    day = DAY
    window = {measure.PRESALE: _log([{"created_at": day, "due": "2025-07-01T00:00:00Z", "p": 0.05}])}
    matrix = np.column_stack([np.zeros(50), np.ones(50)])
    rec = measure.record(day, reference, ["a", "b"], matrix, matrix[:, 0] + 600, window, {}, {}, (),
                         bills="export /x has no credit_bills table")  # fmt: skip
    assert rec["bills"] == {"read": False, "z": None, "why": "export /x has no credit_bills table"}
    gauges = {name: v for name, _, _, v in samples(rec) if "bills" in name}
    assert gauges == {"buyer_trust_monitor_bills_read": 0.0}
    from serving.monitor.report import render

    assert "not judged (export /x has no credit_bills table)" in render([rec])


def test_a_slower_bill_cycle_is_a_gauge_and_an_alert_on_the_run_beyond_its_bound():
    def rec(day: str, z: float) -> dict:
        return {"day": day, "signal_psi": {}, "score_psi": 0.0, "services": {},
                "bills": {"read": True, "unpaid_share": 0.3, "expected": 0.25, "z": z, "hours_from_due": -40.0}}  # fmt: skip

    gauge = {name: v for name, _, _, v in samples(rec("2025-03-07", 5.0)) if "bills" in name}
    assert (
        gauge["buyer_trust_monitor_bills_unpaid_z"] == 5.0 and gauge["buyer_trust_monitor_bills_read"] == 1.0
    )
    history = [
        rec("2025-03-05", 1.0),
        rec("2025-03-06", 3.3),
        rec("2025-03-07", 5.3),
        rec("2025-03-08", -6.0),
    ]
    assert [(a["day"], a["alert"]) for a in firing(history)] == [("2025-03-07", "BuyerTrustBillsUnpaid")]
    assert firing([rec("2025-03-06", 3.4)]) == []  # within the bound
    assert firing([rec("2025-03-06", -5.0), rec("2025-03-07", -6.0)]) == []  # paying faster is no alert


def test_a_stress_shock_shows_in_its_bill_cycle_and_its_twin_stays_quiet(tmp_path):
    from features.io import read_table
    from serving.monitor.rules import RULES
    from simulator import shifts
    from simulator.config import RunConfig
    from simulator.write import write_export

    rule = [r for r in RULES if r.metric == "bills_unpaid_z"]
    days = pd.date_range("2023-07-25", "2023-08-15")  # the end of July's cycle, August's from its statement
    z = {}
    for name, declared in (("twin", ()), ("stress", (shifts.parse("stress@2023-08:0.6"),))):
        write_export(RunConfig(4000, 8, 11, shard_size=2000, shifts=declared), tmp_path / name)
        bills = read_table(tmp_path / name, "credit_bills")
        records = [
            {"day": f"{d:%Y-%m-%d}", "signal_psi": {}, "score_psi": 0.0, "services": {},
             "bills": measure.bill_cycle(bills, d + pd.Timedelta(days=1))}
            for d in days
        ]  # fmt: skip
        z[name] = {r["day"]: r["bills"] for r in records}
        assert all(
            r["bills"]["cycles"] == measure.MIN_BILL_CYCLES for r in records if r["day"] >= "2023-08-01"
        )
        if name == "twin":
            assert firing(records, rule) == []
        else:
            raised = firing(records, rule)
            assert raised and "2023-08-01" < raised[0]["day"] <= "2023-08-10"  # by the cycle's due date
    assert z["twin"]["2023-07-25"]["z"] is None  # July's cycle has five earlier ones: not judged
    # from the due date on, the shocked cycle sits far above its twin
    assert z["stress"]["2023-08-12"]["z"] > z["twin"]["2023-08-12"]["z"] + 4
