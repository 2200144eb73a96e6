"""``python -m serving monitor``: judge one day against the champion's reference; write the outputs.

    python -m serving monitor --day 2025-03-02 --out data/monitor

reads the champion (``--model-uri``) and its reference (the run's ``monitor/reference.json``
artifact, logged by training; or ``--reference FILE``), the snapshot published for that day
(``--snapshot``, the parquet file ``serving.publish`` writes), the decision log and its outcomes
(``--database-url``: the ledger, SQLite or PostgreSQL), the policy (exploration budgets) and, with
``--data``, the raw export's pay-later bills (``credit_bills``: an export without that table is judged
without them, and the record says so), and writes into ``--out``:

    records/YYYY-MM-DD.json   the run's record (``serving.monitor.measure``)
    latest.json               the same, replaced atomically: the service exposes it on /metrics
                              (``SERVING_MONITOR_RECORD``)
    report.html               the report over every record in ``records/``

It prints the alerts the run's figures breach (``serving.monitor.rules``). Exit codes: 0 done,
2 bad input (the message names it; nothing is written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from serving.config import load_config
from serving.ledger.tables import DECISIONS
from serving.monitor import measure
from serving.monitor.measure import SERVICES, MonitorError
from serving.policy import Policy

REFERENCE_ARTIFACT = "monitor/reference.json"  # where training logs it (training.reference)
DAY = pd.Timedelta(days=1)
WINDOW_DAYS = 3
"""Days of decisions (ending with the day judged) a run's request drift and approvals read: one day
of a small marketplace is too few requests to tell drift from chance, a week dilutes a new shift."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``python -m serving monitor`` options."""
    defaults = load_config({"watch_interval_s": 0})
    parser.add_argument("--day", default=None, help="the UTC day to judge, YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (records, latest.json, report)")
    parser.add_argument("--rules", action="store_true", help="print the Prometheus alert rules and exit")
    parser.add_argument(
        "--window-days",
        type=int,
        default=WINDOW_DAYS,
        help=f"days of decisions request drift reads ({WINDOW_DAYS})",
    )
    parser.add_argument(
        "--calibration-days", type=int, default=150, help="days of approvals calibration reads (150)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the raw export the snapshot was published from: its credit_bills table gives the bill "
        "cycle's payments (without it, or without the table, the run says so and judges the rest)",
    )
    parser.add_argument("--snapshot", default=defaults.snapshot, help=f"snapshot file ({defaults.snapshot})")
    parser.add_argument(
        "--reference", type=Path, default=None, help="reference JSON (default: the model's run)"
    )
    parser.add_argument("--database-url", default=defaults.database_url, help="the decision log's database")
    parser.add_argument("--database-schema", default=defaults.database_schema, help="its PostgreSQL schema")
    parser.add_argument("--policy", type=Path, default=Path(defaults.policy_path), help="the policy in force")
    parser.add_argument("--model-uri", default=defaults.model_uri, help=f"model ({defaults.model_uri})")
    parser.add_argument("--tracking-uri", default=defaults.mlflow_tracking_uri, help="MLflow tracking URI")


def load_reference(path: Path | None, run_id: str | None) -> dict[str, Any]:
    """The reference from ``path``, else the ``REFERENCE_ARTIFACT`` of the model's training run.

    Raises:
        MonitorError: Neither exists, or it is not a reference.
    """
    if path is not None:
        try:
            reference = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise MonitorError(f"reference {path}: {exc}") from exc
        where = str(path)
    else:
        if run_id is None:
            raise MonitorError("reference: the model has no training run; pass --reference FILE")
        import mlflow

        where = f"runs:/{run_id}/{REFERENCE_ARTIFACT}"
        try:
            reference = mlflow.artifacts.load_dict(where)
        except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for an absent artifact
            raise MonitorError(
                f"reference {where}: not found ({type(exc).__name__}); a model trained before the monitor "
                "existed has none: retrain, or pass --reference FILE"
            ) from exc
    if not isinstance(reference, dict) or not {"signals", "score", "services"} <= set(reference):
        raise MonitorError(f"reference {where}: not a monitor reference (needs signals, score, services)")
    return reference


def aligned(snapshot_names: Sequence[str], matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The snapshot's columns in the model's signal order.

    Raises:
        MonitorError: A model signal the snapshot lacks.
    """
    where = {n: j for j, n in enumerate(snapshot_names)}
    missing = [n for n in names if n not in where]
    if missing:
        raise MonitorError(
            f"snapshot: lacks the model's signals {missing[:5]} (published for another model?)"
        )
    return matrix[:, [where[n] for n in names]]


def exploration_spent(engine: Any, service: str, start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Expected loss explored approvals spent in ``[start, end)`` (minor units), from the decision log."""
    d = DECISIONS.c
    query = select(func.coalesce(func.sum(d.explored_minor), 0)).where(
        d.service == service, d.created_at >= start, d.created_at < end
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _naive(t: pd.Timestamp) -> pd.Timestamp:
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo else t


def monitor_day(
    engine: Any,
    day: pd.Timestamp,
    reference: Mapping[str, Any],
    names: Sequence[str],
    matrix: np.ndarray,
    scores: np.ndarray,
    policy: Policy,
    history: Sequence[Mapping[str, Any]] = (),
    window_days: int = WINDOW_DAYS,
    calibration_days: int = 150,
    meta: Mapping[str, Any] | None = None,
    population: int | None = None,
    bills: pd.DataFrame | str | None = None,
) -> dict[str, Any]:
    """The record of ``day``: the snapshot's drift, and the decision log read as it was at the day's end.

    Args:
        engine: The ledger's SQLAlchemy engine.
        day: The day judged (UTC midnight).
        reference, names, matrix, scores, history, meta, population, bills: As
            ``serving.monitor.measure.record``.
        policy: The policy in force (currency decimals, exploration budgets).
        window_days: Days of decisions (ending with ``day``) the request drift and approvals read.
        calibration_days: Days of approvals (ending with ``day``) calibration reads.
    """
    from serving.offline.ope import read_log

    day = _naive(day)
    end = day + DAY
    window, calibration, exploration = {}, {}, {}
    month = day.replace(day=1)
    unit = 10.0**policy.decimals
    for service in SERVICES:
        window[service] = read_log(engine, service, policy.decimals, end - window_days * DAY, end, end)
        calibration[service] = read_log(
            engine, service, policy.decimals, end - calibration_days * DAY, end, end
        )
        rules = policy.presale if service == SERVICES[0] else policy.fast_refund
        budget = rules.exploration.monthly_loss_budget if rules.exploration is not None else 0
        exploration[service] = (exploration_spent(engine, service, month, end) / unit, budget / unit)
    meta = {
        "day_at": day.tz_localize("UTC").timestamp(),
        "window_days": window_days,
        "calibration_days": calibration_days,
        **dict(meta or {}),
    }
    return measure.record(
        day, reference, names, matrix, scores, window, calibration, exploration, history, meta, population, bills
    )  # fmt: skip


def read_bills(data: Path | None) -> pd.DataFrame | str:
    """The export's ``credit_bills`` table, or why there is none to read (no ``--data``, no table).

    Raises:
        MonitorError: The table is there but breaks the contract (the message names the problems).
    """
    from features.io import export_time, read_table
    from features.validate import ContractError, validate

    if data is None:
        return "no export given (--data)"
    if not Path(data).is_dir():
        raise MonitorError(f"--data {data}: not an export directory")
    try:
        bills = read_table(data, "credit_bills")
        problems = validate({"credit_bills": bills}, export_time(data), ["credit_bills"])
        if problems:
            raise ContractError(problems)
    except ContractError as exc:
        if [p.check for p in exc.problems] == ["missing_table"]:
            return f"export {data} has no credit_bills table"
        raise MonitorError(f"--data {data}: {exc}") from exc
    except ValueError as exc:  # an unreadable manifest or export time
        raise MonitorError(f"--data {data}: {exc}") from exc
    return bills


def clean(value: Any) -> Any:
    """``value`` with NaN as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return clean(value.item())
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_history(out: Path, before: str | None = None) -> list[dict[str, Any]]:
    """The records in ``out/records``, oldest first (only days before ``before`` when given)."""
    folder = out / "records"
    if not folder.is_dir():
        return []
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [r for r in records if before is None or r["day"] < before]


def write_outputs(out: Path, record: Mapping[str, Any], report: bool = True) -> None:
    """The record (by day and as ``latest.json``) and, with ``report``, the report over all records."""
    text = json.dumps(clean(record), indent=1, allow_nan=False)
    write_atomic(out / "records" / f"{record['day']}.json", text)
    write_atomic(out / "latest.json", text)
    if report:
        from serving.monitor.report import render

        write_atomic(out / "report.html", render(read_history(out)))


def run(args: argparse.Namespace) -> int:
    """``python -m serving monitor``: exit 0, or 2 with a message naming the bad input."""
    from serving.monitor.rules import alerts_yaml, breaches

    if args.rules:
        sys.stdout.write(alerts_yaml())
        return 0
    if args.out is None:
        print("monitor: --out is required", file=sys.stderr)
        return 2
    try:
        day = (
            pd.Timestamp(args.day)
            if args.day
            else pd.Timestamp.now("UTC").normalize().tz_localize(None) - DAY
        )
    except ValueError as exc:
        print(f"monitor: --day: {exc}", file=sys.stderr)
        return 2
    try:
        record = _judge(args, day.normalize())
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 2
    write_outputs(args.out, record)
    raised = {name: labels for name, labels in breaches(record).items() if labels}
    print(f"monitor {record['day']}: {record['buyers']:,} buyers, score PSI {record['score_psi']:.4f}; "
          f"wrote {args.out / 'latest.json'} and {args.out / 'report.html'}")  # fmt: skip
    if not record["bills"]["read"]:
        print(f"  pay-later bills not judged: {record['bills']['why']}")
    for name, labels in raised.items():
        print(f"  breach {name}: {len(labels)} series, e.g. {labels[0]}")
    return 0


def _judge(args: argparse.Namespace, day: pd.Timestamp) -> dict[str, Any]:
    """Read the inputs named by ``args`` and measure ``day``; ``MonitorError`` on bad input."""
    from serving.ledger.engine import make_engine
    from serving.live import load_model
    from serving.policy import PolicyError, load_policy
    from serving.publish.snapshot import FileSnapshot, SnapshotError, is_redis

    if is_redis(args.snapshot):
        raise MonitorError(
            "--snapshot: a parquet file (publish --out); reading a whole Redis snapshot is not supported"
        )
    try:
        snapshot = FileSnapshot.load(args.snapshot)
    except SnapshotError as exc:
        raise MonitorError(str(exc)) from exc
    try:
        policy = load_policy(args.policy)
    except (PolicyError, OSError) as exc:
        raise MonitorError(str(exc)) from exc
    config = load_config(
        {"model_uri": args.model_uri, "mlflow_tracking_uri": args.tracking_uri, "watch_interval_s": 0}
    )
    try:
        rating = load_model(config)
    except Exception as exc:  # noqa: BLE001 - MLflow's errors for an absent model vary
        raise MonitorError(f"model {args.model_uri}: {type(exc).__name__}: {exc}") from exc
    reference = load_reference(args.reference, rating.run_id)
    bills = read_bills(args.data)
    names = list(rating.model.signal_names)
    matrix = aligned(snapshot.meta.signal_names, snapshot.matrix, names)
    scores = np.concatenate(
        [rating.model.score(matrix[i : i + 50_000]).score for i in range(0, len(matrix), 50_000)]
    )
    engine = make_engine(args.database_url, args.database_schema)
    try:
        return monitor_day(
            engine, day, reference, names, matrix, scores, policy, read_history(args.out, day.strftime("%Y-%m-%d")),
            args.window_days, args.calibration_days,
            {"run_at": time.time(), "model_version": rating.version, "reference_run": rating.run_id,
             "snapshot_as_of": snapshot.meta.as_of},
            bills=bills,
        )  # fmt: skip
    finally:
        engine.dispose()
