"""The monitor's alert rules, declared once: ``serving/alerts.yml`` is generated from them.

Each rule compares one gauge the monitor exports (``serving.monitor.metrics``) with a threshold,
and fires after ``runs`` consecutive daily runs beyond it. A gauge changes once a day (when the
monitor runs), so ``runs: 1`` is ``for: 0m`` (fire on the run that breaches) and ``runs: 2`` is
``for: 25h`` (the breach outlived the next day's run, with an hour of slack for its schedule):
Prometheus evaluates every minute, and a shorter ``for`` would only count minutes of one run.

``breaches`` evaluates the same rules on a record, so the bench and the report say which alert a
run raised without a Prometheus server; ``alerts_yaml`` writes them for Prometheus
(``python -m serving monitor --rules > serving/alerts.yml``; a test keeps the file current and
``promtool test rules`` checks it against ``serving/alerts_test.yml``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from serving.monitor.metrics import PREFIX, samples
from serving.policy import PRESALE

HOUR = 3600


@dataclass(frozen=True)
class Rule:
    """One alert: ``metric`` (with ``match`` labels) beyond ``threshold`` for ``runs`` daily runs.

    Attributes:
        name: The alert's name.
        metric: Gauge name without the ``buyer_trust_monitor_`` prefix.
        threshold: The bound; breached when the value is above it (``absolute``: its magnitude is).
        runs: Consecutive daily runs beyond the bound before the alert fires (1 or 2).
        severity: ``page``, ``warning`` or ``info``.
        summary: What it means, with ``{{ $labels.x }}`` placeholders.
        action: What to do (``docs/operations.md`` says more).
        match: Label values the series must have.
        absolute: Compare ``abs(value)``.
    """

    name: str
    metric: str
    threshold: float
    runs: int
    severity: str
    summary: str
    action: str
    match: Mapping[str, str] = field(default_factory=dict)
    absolute: bool = False

    def expr(self) -> str:
        """The PromQL expression."""
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(self.match.items()))
        series = f"{PREFIX}{self.metric}" + (f"{{{selector}}}" if selector else "")
        return f"{'abs(' + series + ')' if self.absolute else series} > {self.threshold:g}"

    def for_(self) -> str:
        """Prometheus ``for:`` of ``runs`` daily runs."""
        return "0m" if self.runs == 1 else f"{24 * (self.runs - 1) + 1}h"

    def breached(self, name: str, labels: Mapping[str, str], value: float) -> bool:
        """Whether one sample breaches the rule."""
        if name != PREFIX + self.metric or any(labels.get(k) != v for k, v in self.match.items()):
            return False
        return (abs(value) if self.absolute else value) > self.threshold


RULES = (
    Rule(
        "BuyerTrustScoreDrift", "score_psi", 0.10, 1, "page",
        "The score distribution of the snapshot's buyers moved from the champion's reference (PSI {{ $value | printf \"%.3f\" }}).",
        "Read the report's signal drift: find the signals that moved, decide whether the market or the data changed.",
    ),
    Rule(
        "BuyerTrustSignalDrift", "signal_psi_change", 0.10, 2, "warning",
        "Signal {{ $labels.signal }} drifted {{ $value | printf \"%.3f\" }} further from the champion's reference (PSI) within a week.",
        "Check the source table of the signal for a data change; if the market moved, plan a retrain.",
    ),
    Rule(
        "BuyerTrustSignalMove", "signal_mean_z", 6.0, 2, "warning",
        "The mean of signal {{ $labels.signal }} moved {{ $value | printf \"%.1f\" }} times its usual daily change (five weeks' spread, at least a quarter of their largest).",
        "The buyers changed (orders moving to one category, accounts sharing devices) or a source changed how it reports: check the source table.",
        absolute=True,
    ),
    # The day's mean of about a hundred new rows is close to normal: beyond 3.5 of its standard
    # deviations on two runs in a row happens by chance about once in a thousand years of runs.
    Rule(
        "BuyerTrustNewReadingsMove", "fresh_mean_z", 3.5, 2, "warning",
        "The day's new rows ({{ $labels.statistic }}) are {{ $value | printf \"%.1f\" }} standard deviations from those of the last four weeks.",
        "A source changed what its new rows say (a bureau's new scale, a feed's unit): compare the day's rows with earlier ones at the source.",
        absolute=True,
    ),
    # The cycle's unpaid share is cumulative: each run holds every payment of the cycle so far, so a
    # second run adds a day of payments, not an independent look, and waiting for it costs a day. The
    # bound keeps chance out: none of 1,584 daily runs of unshifted marketplaces reached 3 (docs/operations.md).
    Rule(
        "BuyerTrustBillsUnpaid", "bills_unpaid_z", 3.5, 1, "warning",
        "{{ $value | printf \"%.1f\" }} standard deviations more of the current cycle's pay-later bills are unpaid than in the last twelve cycles at the same hour from their due date.",
        "Buyers are paying later (financial stress): read the bill figures in the report; hold the allowances of the lower stars until the due date shows how many stay unpaid.",
    ),
    Rule(
        "BuyerTrustAccountSurge", "new_buyers_z", 4.0, 1, "warning",
        "{{ $value | printf \"%.1f\" }} standard deviations more new accounts than in the last four weeks.",
        "Look for device-sharing groups and shared addresses among the new accounts (a fraud ring registers together).",
    ),
    Rule(
        "BuyerTrustRequestScoreDrift", "request_score_psi", 0.25, 2, "warning",
        "The buyers asking for {{ $labels.service }} score unlike the reference's (PSI {{ $value | printf \"%.3f\" }}).",
        "Compare approvals per band with last week; look for a new population (new accounts, a campaign).",
    ),
    Rule(
        "BuyerTrustRequestMixDrift", "request_js", 0.05, 2, "warning",
        "The {{ $labels.field }} mix of {{ $labels.service }} requests moved (Jensen-Shannon {{ $value | printf \"%.3f\" }} bits).",
        "A category or reason the head saw little of is now common: check its approvals and losses.",
    ),
    Rule(
        "BuyerTrustRequestAmountDrift", "request_amount_psi", 0.25, 2, "warning",
        "The amounts of {{ $labels.service }} requests moved (PSI {{ $value | printf \"%.3f\" }}).",
        "Check the caps per star still hold the exposure you intend.",
    ),
    Rule(
        "BuyerTrustApprovalRateShift", "approval_rate_z", 4.0, 2, "warning",
        "The approval rate of {{ $labels.service }} is {{ $value | printf \"%.1f\" }} standard errors away from its four-week mean.",
        "A policy, model or population change: read the report's approvals per band.",
        absolute=True,
    ),
    # Presales only: the refund head prices what paying fast *adds* to normal handling's loss, while
    # the log's refund losses are every loss, so its realised rate sits above its p_loss by design.
    Rule(
        "BuyerTrustCalibration", "calibration_excess", 0.0, 2, "page",
        "Star {{ $labels.band }} of {{ $labels.service }} loses more than its head priced (lower bound above expected by {{ $value | printf \"%.4f\" }}).",
        "Tighten the band's allowance (policy) now; retrain on the matured outcomes.",
        match={"service": PRESALE},
    ),
    Rule(
        "BuyerTrustExplorationBudgetSpent", "exploration_spent_ratio", 0.999, 1, "info",
        "{{ $labels.service }} spent its monthly exploration budget: exploration stops until the month ends.",
        "Nothing to do unless it happens early every month: then raise the budget or lower the share.",
    ),
)  # fmt: skip
STALE_AFTER_S = 30 * HOUR
"""A monitor that has not run for this long (a day and its slack) raises ``BuyerTrustMonitorStale``."""


def breaches(record: Mapping[str, Any], rules: Sequence[Rule] = RULES) -> dict[str, list[dict[str, str]]]:
    """Per rule, the label sets of the record's samples that breach it this run."""
    out: dict[str, list[dict[str, str]]] = {r.name: [] for r in rules}
    for name, _, labels, value in samples(record):
        for rule in rules:
            if rule.breached(name, labels, value):
                out[rule.name].append(dict(labels))
    return out


def firing(history: Iterable[Mapping[str, Any]], rules: Sequence[Rule] = RULES) -> list[dict[str, Any]]:
    """Alerts raised over consecutive daily records (oldest first): one entry per day an alert starts
    firing (``day``, ``alert``, ``labels``), as Prometheus would with the rules' ``for:``."""
    streak: dict[tuple[str, tuple], int] = {}
    raised = []
    for rec in history:
        now = breaches(rec, rules)
        seen = set()
        for rule in rules:
            for labels in now[rule.name]:
                key = (rule.name, tuple(sorted(labels.items())))
                seen.add(key)
                streak[key] = streak.get(key, 0) + 1
                if streak[key] == rule.runs:
                    raised.append({"day": rec["day"], "alert": rule.name, "labels": labels})
        for key in list(streak):
            if key not in seen:
                del streak[key]
    return raised


def alerts_yaml(rules: Sequence[Rule] = RULES) -> str:
    """The Prometheus rule file of ``rules`` and the monitor's staleness alert."""
    items = [
        {
            "alert": r.name,
            "expr": r.expr(),
            "for": r.for_(),
            "labels": {"severity": r.severity},
            "annotations": {"summary": r.summary, "action": r.action, "runbook": "docs/operations.md"},
        }
        for r in rules
    ]
    items.append(
        {
            "alert": "BuyerTrustMonitorStale",
            "expr": f"time() - {PREFIX}last_run_timestamp_seconds > {STALE_AFTER_S}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The daily monitor has not run for more than 30 hours: drift would go unseen.",
                "action": "Check the monitor job's log and its inputs (reference, snapshot, decision log).",
                "runbook": "docs/operations.md",
            },
        }
    )
    header = "# Generated by `python -m serving monitor --rules` from serving/monitor/rules.py: edit there.\n"
    body = yaml.safe_dump(
        {"groups": [{"name": "buyer-trust-monitor", "rules": items}]}, sort_keys=False, width=200
    )
    return header + body
