"""The daily monitor: today against the champion's training reference (``python -m serving monitor``).

    measure.py   the figures of one run (drift, approvals, calibration, exploration): pure
    metrics.py   the record as Prometheus gauges, and the collector ``/metrics`` reads it with
    rules.py     the alert rules, declared once (``serving/alerts.yml`` is generated from them)
    report.py    the HTML report a risk analyst reads, from the history of records
    run.py       the command: read the reference, snapshot and decision log; write the outputs

``docs/operations.md`` says how to run it, what each alert means and what to do.
"""
