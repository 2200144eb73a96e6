"""``python -m simulator summary DIR``: the marginals a risk analyst checks on an export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from features import contract, outcomes
from features.legacy import legacy_presale
from simulator import realised

COLUMNS = {
    "buyers": ["buyer_id"],
    "orders": ["order_id", "buyer_id", "created_at"],  # created_at: the labels' exposure (training.labels)
    "presales": ["order_id", "buyer_id", "balance_amount", "balance_due_at", "balance_paid_at",
                 "shipped_before_balance"],
    "refunds": ["refund_id", "buyer_id", "requested_at", "amount", "kind", "fast_refund", "return_shipped_at",
                "refunded_at", "abuse_confirmed_at"],
    "disputes": ["buyer_id", "closed_at", "ruling"],
    "violations": ["buyer_id", "ts", "kind", "severity"],
    "credit_bills": ["buyer_id", "due_at", "paid_at"],
    "account_events": ["buyer_id", "ts", "event_type"],
    "credit_scores": ["buyer_id", "ts", "score"],
}  # fmt: skip


def read_tables(out: Path) -> dict[str, pd.DataFrame]:
    """The columns the summary needs, all parts of each table."""
    return {name: pd.read_parquet(out / name, columns=cols) for name, cols in COLUMNS.items()}


def old_rule_now(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Whether the legacy presale rule (``features.legacy``) approves each buyer at export time."""
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
    return pd.Series(legacy_presale(vip.to_numpy(), score.to_numpy(dtype=float)), index=buyers)


def _share(mask: pd.Series, weight: pd.Series) -> str:
    return f"{mask.mean():.2%} of opportunities, {weight[mask].sum() / max(weight.sum(), 1e-9):.2%} of volume"


def _counts(p: pd.Series, flag: pd.Series) -> str:
    expected, sd, real = realised.expected_vs_realised(p.to_numpy(), flag.to_numpy())
    return f"{real / max(len(p), 1):.2%} realised ({real}) vs truth {expected / max(len(p), 1):.2%} ({expected:.1f} +- {sd:.1f})"


def opportunity_lines(out: Path, tables: dict[str, pd.DataFrame], exported_at: pd.Timestamp) -> list[str]:
    """The historical decisions (legacy rules, exploration) and the truth per opportunity."""
    truth = out / "truth"
    pre = pd.read_parquet(truth / "presale_opportunities.parquet")
    ref = pd.read_parquet(truth / "refund_opportunities.parquet")
    lines = [
        f"presale opportunities: {len(pre):,}; balance volume {pre['balance_amount'].sum():,.0f}",
        f"  legacy rule ships early: {_share(pre['legacy'], pre['balance_amount'])}",
        f"  exploration ships early: {_share(pre['explored'], pre['balance_amount'])}",
        f"  shipped early in all:    {_share(pre['shipped_early'], pre['balance_amount'])}",
    ]
    settled = realised.presale_results(tables["presales"], pre, exported_at)
    for name, arm, col in (
        ("shipped early", True, "p_default_if_shipped"),
        ("held", False, "p_default_if_held"),
    ):
        rows = settled[settled["shipped_early"] == arm]
        lines.append(
            f"  default rate, {name} (n={len(rows):,} settled): {_counts(rows[col], rows['default'])}"
        )
    legacy = settled[settled["legacy"]]
    lines.append(
        f"  default rate, legacy-approved: {_counts(legacy['p_default_if_shipped'], legacy['default'])}"
    )
    lines.append(f"  truth mean p_default if every presale shipped early {pre['p_default_if_shipped'].mean():.2%}, "
                 f"if every presale held {pre['p_default_if_held'].mean():.2%}")  # fmt: skip
    lines += [
        f"refund requests: {len(ref):,}; refund volume {ref['amount'].sum():,.0f}",
        f"  legacy fast-refund rule: {_share(ref['legacy'], ref['amount'])}",
        f"  exploration (fast):      {_share(ref['explored'], ref['amount'])}",
        f"  fast in all:             {_share(ref['fast'], ref['amount'])}",
    ]
    done = realised.refund_results(tables["refunds"], ref, exported_at)
    lines.append(f"  loss rate (n={len(done):,} settled): {_counts(done['p_loss_if_fast'], done['loss'])}")
    fast = done[done["fast"]]
    lines.append(f"  loss rate of fast refunds: {_counts(fast['p_loss_if_fast'], fast['loss'])}")
    normal = done[~done["fast"]]
    lines.append(
        f"  paid loss rate of normally handled refunds: {_counts(normal['p_loss_if_normal'], normal['paid_loss'])}"
    )
    lines.append(
        f"  truth: paying every request fast loses {ref['p_loss_if_fast'].mean():.2%} of requests, "
        f"normal handling {ref['p_loss_if_normal'].mean():.2%}"
    )
    return lines


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
    lines += opportunity_lines(out, tables, exported_at)
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
        expected, sd, real = realised.expected_vs_realised(labelled["p_bad_90d"], labelled["bad_90d"])
        lines.append(f"realised 90-day bad rate ({labelled['as_of'].nunique()} complete snapshots): "
                     f"{labelled['bad_90d'].mean():.2%} vs truth mean {labelled['p_bad_90d'].mean():.2%} "
                     f"({real:,} bad buyer-months vs {expected:,.0f} +- {sd:.0f} expected); "
                     f"oracle AUC {realised.auc(labelled['p_bad_90d'].to_numpy(), labelled['bad_90d'].to_numpy()):.3f}")  # fmt: skip
        for first in range(3):
            every_third = labelled["as_of"].isin(sorted(labelled["as_of"].unique())[first::3])
            rows = labelled[every_third]
            expected, sd, real = realised.expected_vs_realised(rows["p_bad_90d"], rows["bad_90d"])
            lines.append(f"  every third snapshot from #{first} (windows do not overlap): {real:,} realised vs "
                         f"{expected:,.0f} +- {sd:.0f} expected ({(real - expected) / sd:+.1f} SD)")  # fmt: skip
    counts = events["kind"].value_counts()
    lines.append(
        "bad outcomes by kind: " + ", ".join(f"{t} {int(counts.get(t, 0)):,}" for t in outcomes.COMPONENTS)
    )
    last = risk[risk["as_of"] == risk["as_of"].max()].set_index("buyer_id")["p_bad_90d"]
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
