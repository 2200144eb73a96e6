"""``python -m simulator summary DIR``: the marginals a risk analyst checks on an export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from features import contract
from simulator import realised
from simulator.payments import OLD_RULE_SCORE

COLUMNS = {
    "buyers": ["buyer_id"],
    "orders": ["order_id", "buyer_id"],
    "presales": ["buyer_id", "balance_due_at", "balance_paid_at", "shipped_before_balance"],
    "refunds": ["buyer_id", "requested_at", "kind", "fast_refund", "return_shipped_at", "abuse_confirmed_at"],
    "disputes": ["buyer_id", "closed_at", "ruling"],
    "violations": ["buyer_id", "ts", "kind", "severity"],
    "credit_bills": ["buyer_id", "due_at", "paid_at"],
    "account_events": ["buyer_id", "ts", "event_type"],
    "credit_scores": ["buyer_id", "ts", "score"],
}


def read_tables(out: Path) -> dict[str, pd.DataFrame]:
    """The columns the summary needs, all parts of each table."""
    return {name: pd.read_parquet(out / name, columns=cols) for name, cols in COLUMNS.items()}


def old_rule_now(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Whether the legacy rule (VIP and latest score >= 700) approves each buyer at export time."""
    ev = tables["account_events"]
    vip_ev = ev[ev["event_type"].isin(["vip_join", "vip_leave"])].sort_values(
        ["buyer_id", "ts"], kind="stable"
    )
    vip = vip_ev.groupby("buyer_id")["event_type"].last() == "vip_join"
    score = (
        tables["credit_scores"]
        .sort_values(["buyer_id", "ts"], kind="stable")
        .groupby("buyer_id")["score"]
        .last()
    )
    buyers = tables["buyers"]["buyer_id"]
    vip = vip.reindex(buyers, fill_value=False)
    score = score.reindex(buyers)
    return pd.Series((vip & (score >= OLD_RULE_SCORE)).to_numpy(), index=buyers)


def summarize(out: Path) -> list[str]:
    """Lines of the summary report for the export in ``out``."""
    manifest = json.loads((out / "manifest.json").read_text())
    exported_at = pd.Timestamp(manifest["exported_at"])
    tables = read_tables(out)
    lines = [f"export {out}: {manifest['buyers']} buyers, {manifest['months']} months from {manifest['start']}, "
             f"exported_at {manifest['exported_at']}, seed {manifest['seed']}, {len(manifest['shards'])} parts"]  # fmt: skip
    lines.append("rows per table:")
    for name in contract.TABLE_NAMES:
        rows = (
            len(tables[name])
            if name in tables
            else len(pd.read_parquet(out / name, columns=[contract.table(name).columns[0].name]))
        )
        lines.append(f"  {name:<15} {rows:>12,}")
    per_buyer = (
        tables["orders"].groupby("buyer_id").size().reindex(tables["buyers"]["buyer_id"], fill_value=0)
    )
    lines.append(
        f"orders per buyer: mean {per_buyer.mean():.1f}, median {per_buyer.median():.0f}, p90 {per_buyer.quantile(0.9):.0f}"
    )
    pre = tables["presales"]
    lines.append(f"presale share of orders: {len(pre) / max(len(tables['orders']), 1):.2%}")
    sbb = pre["shipped_before_balance"]
    lines.append(f"ship-before-balance (old rule) share of presales: {sbb.mean():.2%}")
    settled = pre[pre["balance_due_at"] + pd.Timedelta(days=7) <= exported_at]
    unpaid = settled["balance_paid_at"].isna() | (
        settled["balance_paid_at"] > settled["balance_due_at"] + pd.Timedelta(days=7)
    )
    trusted = settled["shipped_before_balance"]
    lines.append(f"balance default rate: trusted presales {unpaid[trusted].mean():.2%} (n={int(trusted.sum())}), "
                 f"others {unpaid[~trusted].mean():.2%} (n={int((~trusted).sum())})")  # fmt: skip
    lines.append(f"fast-refund share of refunds: {tables['refunds']['fast_refund'].mean():.2%}")
    approve = old_rule_now(tables)
    lines.append(f"old-rule approval rate of buyers at export: {approve.mean():.2%}")

    risk = pd.read_parquet(out / "truth" / "risk.parquet")
    traits = pd.read_parquet(
        out / "truth" / "traits.parquet", columns=["buyer_id", "fraudster", "ring_member"]
    )
    lines.append(f"truth p_bad_90d over buyer-months: mean {risk['p_bad_90d'].mean():.2%}, "
                 f"median {risk['p_bad_90d'].median():.2%}, p90 {risk['p_bad_90d'].quantile(0.9):.2%}")  # fmt: skip
    lines.append(
        f"fraudsters {traits['fraudster'].mean():.2%}, ring members {traits['ring_member'].mean():.2%} of buyers"
    )
    events = realised.bad_events(tables, exported_at)
    labelled = realised.realised_labels(risk, events, exported_at)
    if len(labelled):
        lines.append(f"realised 90-day bad rate ({labelled['month_start'].nunique()} complete snapshots): "
                     f"{labelled['bad_90d'].mean():.2%} vs truth mean {labelled['p_bad_90d'].mean():.2%}; "
                     f"oracle AUC {realised.auc(labelled['p_bad_90d'].to_numpy(), labelled['bad_90d'].to_numpy()):.3f}")  # fmt: skip
    counts = events["type"].value_counts()
    lines.append(
        "bad outcomes by type: " + ", ".join(f"{t} {int(counts.get(t, 0)):,}" for t in realised.BAD_TYPES)
    )
    last = risk[risk["month_start"] == risk["month_start"].max()].set_index("buyer_id")["p_bad_90d"]
    appr = approve.reindex(last.index, fill_value=False)
    good = last <= last.quantile(0.5)
    worst = last >= last.quantile(0.9)
    lines.append(f"old rule at the last month: approves {appr[good].mean():.2%} of the safer half of buyers, "
                 f"{appr[worst].mean():.2%} of the riskiest decile; mean p_bad approved {last[appr].mean():.2%} "
                 f"vs not {last[~appr].mean():.2%}")  # fmt: skip
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``summary``."""
    parser.add_argument("out", type=Path, help="export folder written by the simulator")


def run(args: argparse.Namespace) -> int:
    """Print the summary; exit code 0."""
    print("\n".join(summarize(args.out)))
    return 0
