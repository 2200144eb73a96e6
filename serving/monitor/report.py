"""The monitor's HTML report: what a risk analyst reads each morning, from the history of records.

One self-contained page (figures embedded as PNG): the alerts raised, the score's and the
signals' drift over time, the pay-later bills' payments against earlier cycles, approvals and money per star band, calibration per band (expected
against realised with Wilson intervals, immature approvals counted apart) and the request mix.
matplotlib draws it (Evidently was weighed and left out: its drift report wants the raw rows of
both populations, where the monitor keeps frozen bins, and it pulls in a heavy dependency tree).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

from serving.monitor.measure import ALL, BANDS, FRESH, MIN_MATURE, SERVICES
from serving.monitor.rules import RULES, breaches, firing

TOP_SIGNALS = 12
LARGE_PSI = 0.25  # the usual reading of a PSI: below 0.1 stable, 0.1-0.25 moderate, above large


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _threshold(name: str) -> float:
    return next(r.threshold for r in RULES if r.metric == name)


def _series(history: Sequence[Mapping[str, Any]], get) -> list[float]:
    out = []
    for rec in history:
        try:
            v = get(rec)
        except (KeyError, TypeError):
            v = None
        out.append(float("nan") if v is None else float(v))
    return out


def _empty(ax, lines: Sequence[Any], words: str) -> None:
    """Say so on a panel whose series hold no value (a service without decisions in these runs)."""
    if all(all(v != v for v in line.get_ydata()) for line in lines):  # NaN != NaN
        ax.text(0.5, 0.5, words, transform=ax.transAxes, ha="center", va="center", color="grey")


def _figures(history: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [r["day"] for r in history]
    x = list(range(len(days)))
    ticks = x[:: max(1, len(x) // 8)]
    latest = history[-1]
    out = {}

    def axis(ax, title: str) -> None:
        ax.set_title(title, fontsize=10)
        ax.set_xticks(ticks, [days[i] for i in ticks], rotation=30, fontsize=7)
        ax.grid(alpha=0.3)

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(x, _series(history, lambda r: r["score_psi"]), label="snapshot buyers")
    for service in SERVICES:
        ax.plot(
            x,
            _series(history, lambda r, s=service: r["services"][s]["request"].get("score_psi")),
            label=service,
        )
    ax.axhline(_threshold("score_psi"), color="red", ls="--", lw=0.8, label="alert (snapshot)")
    ax.legend(fontsize=7)
    axis(ax, "Score PSI against the champion's reference")
    out["score"] = _png(fig)
    plt.close(fig)

    top = sorted(latest["signal_psi"], key=lambda n: latest["signal_psi"][n], reverse=True)[:TOP_SIGNALS]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name in top[:6]:
        ax.plot(x, _series(history, lambda r, n=name: r["signal_psi"].get(n)), label=name)
    ax.axhline(LARGE_PSI, color="grey", ls="--", lw=0.8, label=f"large ({LARGE_PSI})")
    ax.legend(fontsize=7)
    axis(ax, "PSI of the signals that moved most (latest run)")
    out["signals"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(SERVICES), figsize=(10, 3), squeeze=False)
    for ax, service in zip(axes[0], SERVICES, strict=True):
        lines = []
        for band in BANDS:
            lines += ax.plot(
                x,
                _series(
                    history,
                    lambda r, s=service, b=band: r["services"][s]["bands"].get(b, {}).get("approval_rate"),
                ),
                label=f"{band}*",
            )
        axis(ax, f"{service}: approval rate per star")
        _empty(ax, lines, "no decisions in these runs")
    axes[0][0].legend(fontsize=7)
    out["approvals"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(len(FRESH), 2, figsize=(10, 2.8 * len(FRESH)), squeeze=False)
    for row, stat in zip(axes, FRESH, strict=True):
        mean = _series(history, lambda r, n=stat.name: r["fresh"][n]["mean"])
        z = _series(history, lambda r, n=stat.name: r["fresh"][n]["z"])
        row[0].plot(x, mean, marker=".", lw=1)
        axis(row[0], f"{stat.name}: the day's mean")
        row[0].set_ylabel(stat.value, fontsize=7)
        row[1].plot(x, z, marker=".", lw=1, color="tab:orange")
        bound = _threshold("fresh_mean_z")
        for y in (bound, -bound):
            row[1].axhline(y, color="red", ls="--", lw=0.8)
        axis(row[1], "z against the last four weeks (alert: two runs past red)")
    out["fresh"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    bills = [
        (_series(history, lambda r, k=key: r["bills"][k]), label)
        for key, label in (("unpaid_share", "this cycle"), ("expected", "earlier cycles, same hour"))
    ]
    lines = [axes[0].plot(x, values, marker=".", lw=1, label=label)[0] for values, label in bills]
    axis(axes[0], "Pay-later bills unpaid: the current cycle's share")
    _empty(axes[0], lines, "bills not read in these runs")
    axes[0].legend(fontsize=7)
    axes[1].plot(x, _series(history, lambda r: r["bills"]["z"]), marker=".", lw=1, color="tab:orange")
    axes[1].axhline(_threshold("bills_unpaid_z"), color="red", ls="--", lw=0.8)
    runs = next(r.runs for r in RULES if r.metric == "bills_unpaid_z")
    axis(axes[1], f"z against the earlier cycles (alert: {runs} run{'s' * (runs > 1)} above red)")
    out["bills"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(SERVICES), figsize=(10, 3), squeeze=False)
    for ax, service in zip(axes[0], SERVICES, strict=True):
        lines = []
        for i, band in enumerate([*BANDS, ALL]):
            colour = f"C{i}"

            def get(r, s=service, b=band, key="realised"):
                c = r["services"][s]["calibration"][b]
                return c[key] if c["mature"] >= MIN_MATURE else None  # a handful of outcomes is noise

            lines += ax.plot(x, _series(history, get), color=colour, label=f"{band}*" if band != ALL else ALL)
            ax.plot(x, _series(history, lambda r, g=get: g(r, key="expected")), color=colour, ls=":", lw=1)
        axis(ax, f"{service}: loss rate of mature approvals")
        _empty(ax, lines, f"no band with {MIN_MATURE} mature approvals in these runs")
    axes[0][0].legend(fontsize=7)
    out["calibration_history"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(SERVICES), figsize=(10, 3), squeeze=False)
    for ax, service in zip(axes[0], SERVICES, strict=True):
        cal = latest["services"][service]["calibration"]
        bands = [b for b in [*BANDS, ALL] if b in cal and cal[b]["mature"]]
        exp = [cal[b]["expected"] for b in bands]
        real = [cal[b]["realised"] for b in bands]
        low = [max(0.0, cal[b]["realised"] - cal[b]["realised_low"]) for b in bands]
        high = [max(0.0, cal[b]["realised_high"] - cal[b]["realised"]) for b in bands]
        pos = list(range(len(bands)))
        ax.bar([p - 0.2 for p in pos], exp, width=0.4, label="expected (head)")
        ax.errorbar(
            [p + 0.2 for p in pos],
            real,
            yerr=[low, high],
            fmt="o",
            color="black",
            label="realised, 95% Wilson",
        )
        ax.set_xticks(pos, [f"{b}*" if b != ALL else ALL for b in bands])
        ax.set_title(f"{service}: loss rate of mature approvals", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    out["calibration"] = _png(fig)
    plt.close(fig)
    return out


def _today(latest: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """The opening lines: what breaches on the latest run, and which alerts started firing on it."""
    now = {name: labels for name, labels in breaches(latest).items() if labels}
    started = [a for a in firing(history) if a["day"] == latest["day"]]
    if not now:
        return "<p><b>Today:</b> no rule breached; every figure is within its bounds.</p>"
    items = "".join(
        f"<li>{html.escape(name)}: {len(labels)} series"
        + (
            f" ({html.escape(', '.join(sorted({v for lab in labels for v in lab.values()}))[:200])})"
            if labels[0]
            else ""
        )
        + "</li>"
        for name, labels in now.items()
    )
    fired = (
        ", ".join(sorted({a["alert"] for a in started}))
        or "none (a rule waiting for a second run does not fire yet)"
    )
    return f"<p><b>Today:</b> rules breached on this run:</p><ul>{items}</ul><p>Alerts that started firing today: {html.escape(fired)}.</p>"


def _bills_words(latest: Mapping[str, Any]) -> str:
    """What the bill panels show, and the latest run's cycle (or why it was not judged)."""
    b = latest.get("bills") or {"read": False, "why": "no bill figures in this record"}
    head = (
        "The share of the current cycle's bills (those sharing a due date) without a payment yet, against "
        "the twelve earlier cycles at the same hour from their due date. A share that stays above its "
        "line while the cycle runs is buyers paying later; at the due date it becomes bills unpaid."
    )
    if b.get("z") is None:
        return (
            f"{head} Latest run: not judged ({html.escape(str(b.get('why', 'no baseline at this hour')))})."
        )
    return (
        f"{head} Latest run: the cycle due {html.escape(b['due_at'])} ({b['hours_from_due']:+.0f} h), "
        f"{b['bills']:,} bills, {b['unpaid_share']:.1%} unpaid against {b['expected']:.1%} (z {b['z']:+.1f})."
    )


def _alerts_table(history: Sequence[Mapping[str, Any]]) -> str:
    raised = firing(history)
    if not raised:
        return "<p>No alert raised over these runs.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(a['day'])}</td><td>{html.escape(a['alert'])}</td>"
        f"<td>{html.escape(', '.join(f'{k}={v}' for k, v in a['labels'].items()))}</td></tr>"
        for a in raised[-40:]
    )
    return f"<table><tr><th>day</th><th>alert</th><th>series</th></tr>{rows}</table>"


def _tables(latest: Mapping[str, Any]) -> str:
    parts = []
    top = sorted(latest["signal_psi"].items(), key=lambda kv: kv[1], reverse=True)[:TOP_SIGNALS]
    parts.append("<h3>Signals that moved most</h3><table><tr><th>signal</th><th>PSI</th></tr>")
    parts += [f"<tr><td>{html.escape(n)}</td><td>{v:.4f}</td></tr>" for n, v in top]
    parts.append("</table>")
    for service, s in latest["services"].items():
        parts.append(
            f"<h3>{html.escape(service)}: {s['decisions']:,} decisions in {latest.get('window_days', '?')} days</h3>"
        )
        parts.append(
            "<table><tr><th>band</th><th>decisions</th><th>approved</th><th>money approved</th>"
            "<th>expected loss</th><th>mature</th><th>immature</th><th>expected rate</th><th>realised [95%]</th></tr>"
        )
        for band in [*BANDS, "unrated", ALL]:
            b = s["bands"].get(band)
            if b is None:
                continue
            c = s["calibration"].get(band, {})

            def f(v, fmt="{:.4f}"):
                return "" if v is None else fmt.format(v)

            realised = (
                ""
                if not c.get("mature")
                else f"{c['realised']:.4f} [{c['realised_low']:.4f}, {c['realised_high']:.4f}]"
            )
            parts.append(
                f"<tr><td>{band}</td><td>{b['decisions']:,}</td><td>{b['approvals']:,}</td>"
                f"<td>{b['money_approved']:,.0f}</td><td>{b['expected_loss']:,.0f}</td>"
                f"<td>{c.get('mature', '')}</td><td>{c.get('immature', '')}</td><td>{f(c.get('expected'))}</td><td>{realised}</td></tr>"
            )
        parts.append("</table>")
        js = ", ".join(f"{k} {v:.3f} bits" for k, v in s["request"].get("js", {}).items())
        spent = s["exploration"]["spent_ratio"]
        parts.append(
            f"<p>Request mix (Jensen-Shannon): {js or 'too few decisions'}; exploration budget spent this month: "
            f"{'none set' if spent is None else f'{spent:.0%}'}.</p>"
        )
    return "".join(parts)


def render(history: Sequence[Mapping[str, Any]]) -> str:
    """The report over ``history`` (records, oldest first) as one HTML page."""
    if not history:
        return "<!doctype html><title>Buyer trust monitor</title><p>No monitor run yet.</p>"
    latest = history[-1]
    figs = _figures(history)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Buyer trust monitor, {html.escape(latest["day"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>Buyer trust monitor: {html.escape(latest["day"])}</h1>
<p>Model version {html.escape(str(latest.get("model_version")))}, reference run {html.escape(str(latest.get("reference_run")))};
{latest["buyers"]:,} buyers in the snapshot; {len(history)} daily runs shown ({html.escape(history[0]["day"])} to {html.escape(latest["day"])}).
How to read this page and what each alert asks of you: docs/operations.md.</p>
{_today(latest, history)}
<h2>Alerts raised</h2>{_alerts_table(history)}
<h2>Score drift</h2>{figs["score"]}
<h2>Signal drift</h2>{figs["signals"]}
<h2>New rows of a source</h2><p>{"; ".join(html.escape(f"{f.name}: {f.what}") for f in FRESH)}.</p>{figs["fresh"]}
<h2>Pay-later bills</h2><p>{_bills_words(latest)}</p>{figs["bills"]}
<h2>Approvals per star band</h2>{figs["approvals"]}
<h2>Calibration per star band over time</h2><p>Realised (solid) and expected by the head (dotted), for bands with at least {MIN_MATURE} mature approvals.</p>{figs["calibration_history"]}
<h2>Calibration per star band (latest run)</h2>{figs["calibration"]}
<h2>Latest run in figures</h2>{_tables(latest)}
</body></html>
"""
