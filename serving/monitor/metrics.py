"""The monitor's record as Prometheus gauges, and the collector the service exposes them with.

The monitor runs once a day in its own process; the service's workers answer ``/metrics``. The
monitor writes its latest record as one JSON file, replaced atomically (``serving.monitor.run``);
``MonitorCollector`` reads it at each scrape and yields the gauges below. Every worker reads the
same file, so gunicorn's multiprocess mode needs nothing of its own for them (a gauge set in one
worker's memory would be seen only by scrapes that worker answers, and lost on its restart), and
a record that cannot be read is one gauge (``record_error``), never a failed scrape.

Gauges (all prefixed ``buyer_trust_monitor_``), each the value of the latest run:

    last_run_timestamp_seconds                      when the monitor wrote the record
    day_timestamp_seconds                           the day it judged (UTC midnight)
    signal_psi{signal}                              PSI of each signal over the snapshot's buyers
    signal_psi_change{signal}                       and its change over the last seven runs
    signal_mean_z{signal}                           the day's change of its mean against five weeks' changes
    fresh_mean{statistic}, fresh_mean_z{statistic}  the mean of a signal over the buyers with a row of
                                                    the day in its source (the day's bureau readings),
                                                    and its z against the last four weeks' daily means
    bills_read                                      1 when the run read the export's pay-later bills, 0 without them
    bills_unpaid_share, bills_unpaid_expected       the current bill cycle's share of bills unpaid, and the
                                                    earlier cycles' mean share at the same hour from their due date
    bills_unpaid_z, bills_hours_from_due            that difference in the earlier cycles' spread, and the hour
    score_psi                                       PSI of the score over the snapshot's buyers
    population, new_buyers, new_buyers_z            buyers in the snapshot, added since the last run,
                                                    and that count's z against the last four weeks
    request_score_psi{service}                      PSI of the score of the buyers who asked
    request_js{service,field}                       Jensen-Shannon (bits) of category / reason
    request_amount_psi{service}                     PSI of log(1 + amount) of the requests
    decisions{service}                              decisions in the drift window
    approval_rate{service}, approval_rate_change{service}   and its change from four weeks' mean
    approval_rate_z{service}                        that change in binomial standard errors
    band_decisions{service,band}, band_approval_rate{service,band}
    approved_amount{service,band}, expected_loss{service,band}   currency units
    calibration_{expected,realised,realised_low,realised_high}{service,band}   loss rates
    calibration_{mature,immature}{service,band}     approvals judged / not yet mature
    calibration_excess{service,band}                Wilson lower bound minus expected (when judged)
    exploration_spent_ratio{service}                share of the month's exploration budget spent
    info{model_version,reference_run}               1
    record_error                                    1 when the record file exists but cannot be read
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily

PREFIX = "buyer_trust_monitor_"
HELP = {
    "last_run_timestamp_seconds": "Unix time the monitor wrote its latest record.",
    "day_timestamp_seconds": "The day the latest record judged (UTC midnight, Unix time).",
    "signal_psi": "PSI of the signal over the snapshot's buyers against the champion's reference.",
    "signal_psi_change": "The signal's PSI minus its PSI seven runs before.",
    "population": "Buyers in the snapshot.",
    "new_buyers": "Buyers added to the snapshot since the previous run.",
    "new_buyers_z": "New buyers minus their four-week mean, in Poisson standard deviations.",
    "signal_mean_z": "Change of the signal's mean since the previous run, against five weeks of daily changes (their spread, at least a quarter of the largest).",
    "fresh_mean": "Mean of the statistic's signal over the buyers with a new row of its source that day.",
    "fresh_mean_z": "That mean against the daily means of the last four weeks, in their standard deviations.",
    "bills_read": "1 when the run read the export's pay-later bills (credit_bills), 0 when it has none.",
    "bills_unpaid_share": "Share of the current pay-later bill cycle's bills without a payment at the run.",
    "bills_unpaid_expected": "Mean share unpaid of the twelve earlier cycles at the same hour from their due date.",
    "bills_unpaid_z": "Unpaid share minus the earlier cycles' mean, in their standard deviation (at least the binomial standard error).",
    "bills_hours_from_due": "Hours from the current bill cycle's due date to the end of the day judged (negative before it).",
    "approval_rate_z": "Approval rate change from four weeks' mean, in binomial standard errors of the window.",
    "score_psi": "PSI of the score over the snapshot's buyers against the champion's reference.",
    "request_score_psi": "PSI of the score of the buyers who asked, against the reference's opportunities.",
    "request_js": "Jensen-Shannon divergence (bits) of a categorical request field against the reference.",
    "request_amount_psi": "PSI of log(1 + amount) of the requests against the reference.",
    "decisions": "Decisions in the monitor's drift window.",
    "approval_rate": "Share of the window's decisions approved.",
    "approval_rate_change": "Approval rate minus its mean over the previous four weeks of runs.",
    "band_decisions": "Decisions in the window per star band.",
    "band_approval_rate": "Approval rate in the window per star band.",
    "approved_amount": "Money approved in the window per star band, currency units.",
    "expected_loss": "The head's expected loss of the window's approvals per star band, currency units.",
    "calibration_expected": "Mean head loss probability of the mature approvals.",
    "calibration_realised": "Realised loss rate of the mature approvals.",
    "calibration_realised_low": "Wilson 95% lower bound of the realised loss rate.",
    "calibration_realised_high": "Wilson 95% upper bound of the realised loss rate.",
    "calibration_mature": "Approvals of the calibration window whose outcome is mature.",
    "calibration_immature": "Approvals of the calibration window whose outcome is not mature yet.",
    "calibration_excess": "Wilson lower bound of the realised loss rate minus the expected rate.",
    "exploration_spent_ratio": "Share of the month's exploration loss budget spent.",
    "info": "1 for the model and reference the latest record judged with.",
    "record_error": "1 when the monitor's record file exists but cannot be read.",
}
Sample = tuple[str, str, dict[str, str], float]


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def samples(record: Mapping[str, Any]) -> Iterator[Sample]:
    """Every gauge sample of a record: ``(name, help, labels, value)``; unknown values are left out."""

    def one(metric: str, value: Any, **labels: str) -> Iterator[Sample]:
        v = _num(value)
        if v is not None:
            yield PREFIX + metric, HELP[metric], labels, v

    yield from one("last_run_timestamp_seconds", record.get("run_at"))
    yield from one("day_timestamp_seconds", record.get("day_at"))
    yield (
        PREFIX + "info",
        HELP["info"],
        {
            "model_version": str(record.get("model_version")),
            "reference_run": str(record.get("reference_run")),
        },
        1.0,
    )
    for signal, value in record["signal_psi"].items():
        yield from one("signal_psi", value, signal=signal)
    for signal, value in record.get("signal_psi_change", {}).items():
        yield from one("signal_psi_change", value, signal=signal)
    for signal, value in record.get("signal_mean_z", {}).items():
        yield from one("signal_mean_z", value, signal=signal)
    for statistic, f in record.get("fresh", {}).items():
        yield from one("fresh_mean", f["mean"], statistic=statistic)
        yield from one("fresh_mean_z", f["z"], statistic=statistic)
    bills = record.get("bills")
    if bills is not None:
        yield from one("bills_read", float(bills["read"]))
        yield from one("bills_unpaid_share", bills.get("unpaid_share"))
        yield from one("bills_unpaid_expected", bills.get("expected"))
        yield from one("bills_unpaid_z", bills.get("z"))
        yield from one("bills_hours_from_due", bills.get("hours_from_due"))
    yield from one("score_psi", record["score_psi"])
    for metric in ("population", "new_buyers", "new_buyers_z"):
        yield from one(metric, record.get(metric))
    for service, s in record["services"].items():
        yield from one("decisions", s["decisions"], service=service)
        yield from one("approval_rate", s["approval_rate"], service=service)
        yield from one("approval_rate_change", s["approval_rate_change"], service=service)
        yield from one("approval_rate_z", s.get("approval_rate_z"), service=service)
        request = s["request"]
        yield from one("request_score_psi", request.get("score_psi"), service=service)
        yield from one("request_amount_psi", request.get("amount_psi"), service=service)
        for field, value in request.get("js", {}).items():
            yield from one("request_js", value, service=service, field=field)
        for band, b in s["bands"].items():
            yield from one("band_decisions", b["decisions"], service=service, band=band)
            yield from one("band_approval_rate", b["approval_rate"], service=service, band=band)
            yield from one("approved_amount", b["money_approved"], service=service, band=band)
            yield from one("expected_loss", b["expected_loss"], service=service, band=band)
        for band, c in s["calibration"].items():
            for key in (
                "expected",
                "realised",
                "realised_low",
                "realised_high",
                "mature",
                "immature",
                "excess",
            ):
                yield from one(f"calibration_{key}", c[key], service=service, band=band)
        yield from one("exploration_spent_ratio", s["exploration"]["spent_ratio"], service=service)


def families(record: Mapping[str, Any]) -> list[GaugeMetricFamily]:
    """The record's samples grouped as gauge families."""
    out: dict[str, GaugeMetricFamily] = {}
    for name, help_text, labels, value in samples(record):
        family = out.get(name)
        if family is None:
            family = out[name] = GaugeMetricFamily(name, help_text, labels=sorted(labels))
        family.add_metric([labels[k] for k in sorted(labels)], value)
    return list(out.values())


class MonitorCollector:
    """A ``prometheus_client`` collector of the monitor's latest record (read at each scrape).

    Args:
        path: The record file (``latest.json`` in the monitor's output folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        error = GaugeMetricFamily(PREFIX + "record_error", HELP["record_error"])
        try:
            record = json.loads(self.path.read_text())
            found = families(record)
        except FileNotFoundError:  # the monitor has not run yet: no figures, no error
            found, failed = [], 0.0
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            found, failed = [], 1.0
        else:
            failed = 0.0
        yield from found
        error.add_metric([], failed)
        yield error
