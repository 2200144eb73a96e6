"""Propose a whole policy by backtest: the most money approved with the loss per unit's upper bound on target.

For each service, the per-star limits of ``SEARCHED`` (the expected-loss allowance and the amount
cap; for fast refunds also the refunded amount per quota window), the fewest stars eligible
(``min_stars``: a star below it is tried with the limits of the lowest star eligible and a share of
its allowance, then searched like the others) and, for fast refunds, the amount above which evidence photos are required, are
searched together (coordinate ascent over multiplicative steps) by deciding the window under
each candidate with the service's own decision code and ledger rules
(``serving.offline.backtest.decide_priced``: minimum stars, caps, deposit, exposure limits, quotas,
evidence, hard declines, all of it). A candidate is feasible when the upper end of the 95%
buyer-bootstrap interval of its loss per unit approved (the head's expected loss: a real export
has no truth) is at or below the service's target; among feasible candidates the one approving
the most money wins. The default target is the legacy rule's loss per unit on the same window
for presales and half of it for fast refunds (the legacy rule, measured by the same head).
Exploration is set aside while searching (``without_exploration``: it has its own budget) and
declared again in the proposal.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.config import ServingConfig
from serving.offline.backtest import Banded, Event, Prepared, Priced, decide_priced, prepare
from serving.policy import EXPLORATION, FAST_REFUND, PRESALE, parse_policy

ALLOWANCE = "expected_loss_allowance"
SEARCHED = {
    PRESALE: (ALLOWANCE, "amount_cap"),
    FAST_REFUND: (ALLOWANCE, "amount_cap", "quota_amount"),
}
"""The per-star limits searched, per service. A fast refund's amount cap is bounded by its quota
amount (a 3-star buyer's 600 per window under a 750 cap): searched alone, doubling the caps changed
nothing. Presale exposure limits are not searched: the presale head's probability on the presales
the policy approves is well below the truth's (``docs/decisions.md``), and more exposure on its word is
loss it does not price."""
SCALES = (0.5, 0.8, 1.25, 2.0)
EVIDENCE_SCALES = (0.5, 2.0, 5.0, 20.0)
"""Steps of the fast refund's evidence threshold (``photos_required_above``). The head prices photos
and the stated reason with the rest of the request, so the rule declines refunds the head calls
safe: on the default run's test window the 986 requests it declined first carried a true
incremental loss of 0.46% per unit, against 1.91% for the approved ones."""
MIN_STAR = 1  # the lowest ``min_stars`` the search tries
LOWER_STAR_ALLOWANCE = (1.0, 0.5, 0.25, 0.1)
"""A star opened below ``min_stars`` starts with the lowest eligible star's caps and quotas and this share
of its allowance (each tried): opened at the same allowance, the riskier band's loss can break the
target where a stricter one would add money within it."""
MAX_PASSES = 8  # passes of the coordinate ascent; it stops at the first pass that changes nothing
COLUMN = {ALLOWANCE: "allowance", "amount_cap": "cap", "quota_amount": "quota_amount"}  # in ``curve``
REPLICATES = 200
TARGET_SHARE = {PRESALE: 1.0, FAST_REFUND: 0.5}  # of the legacy rule's loss per unit


@dataclass(frozen=True)
class Tried:
    """One candidate's figures on the window (currency units)."""

    service: str
    limits: dict[str, dict[int, float]]  # policy key (``SEARCHED``) -> star -> value, from min_stars up
    evidence: float | None  # fast refunds: photos required above this amount; None for presales
    approvals: int
    money: float
    loss_per_unit: float
    upper: float
    feasible: bool

    @property
    def min_stars(self) -> int:
        """The fewest stars eligible: the lowest star the limits list."""
        return min(self.limits[ALLOWANCE])


@dataclass(frozen=True)
class Bootstrap:
    """The buyer bootstrap of a window's decisions: which buyer each row is, and the Poisson(1) weight of
    each buyer in each of ``REPLICATES`` resamples. It depends on the rows' buyers and the seed, not on
    the decisions, so a search makes it once per window."""

    buyer_ids: np.ndarray
    inverse: np.ndarray
    weights: np.ndarray  # (REPLICATES, buyers)

    @classmethod
    def of(cls, buyer_ids: np.ndarray, seed: int = 0) -> Bootstrap:
        """The bootstrap of rows of these buyers (one id per row)."""
        ids, inverse = np.unique(buyer_ids, return_inverse=True)
        weights = np.random.default_rng(seed).poisson(1.0, size=(REPLICATES, len(ids))).astype(np.float64)
        return cls(np.asarray(buyer_ids), inverse, weights)

    def upper_bound(self, frame: pd.DataFrame, approved: np.ndarray) -> tuple[float, float, float]:
        """``(money approved, loss per unit, its 95% upper bound)`` by the head's expected loss.

        Raises:
            ValueError: ``frame``'s rows are not the bootstrap's buyers, in its order.
        """
        if not np.array_equal(frame["buyer_id"].to_numpy(), self.buyer_ids):
            raise ValueError("upper_bound: the frame's buyers are not the bootstrap's")
        money = np.where(approved, frame["at_risk"].to_numpy(np.float64), 0.0)
        loss = np.where(approved, frame["expected_loss"].fillna(0.0).to_numpy(np.float64), 0.0)
        if money.sum() == 0:
            return 0.0, 0.0, 0.0
        buyers = self.weights.shape[1]
        sums = np.stack([np.bincount(self.inverse, weights=x, minlength=buyers) for x in (money, loss)])
        reps = self.weights @ sums.T
        rate = np.divide(reps[:, 1], reps[:, 0], out=np.zeros(REPLICATES), where=reps[:, 0] > 0)
        return float(money.sum()), float(loss.sum() / money.sum()), float(np.percentile(rate, 97.5))


def upper_bound(frame: pd.DataFrame, approved: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """``(money approved, loss per unit, its 95% upper bound)`` by the head's expected loss, buyer bootstrap."""
    return Bootstrap.of(frame["buyer_id"].to_numpy(), seed).upper_bound(frame, approved)


def with_settings(
    raw: dict, service: str, limits: dict[str, dict[int, float]], evidence: float | None = None
) -> dict:
    """A copy of the policy document with the service's per-star ``limits`` set (policy key -> star ->
    value: allowances as shares, amounts in currency units), its ``min_stars`` the lowest star they
    list (every other per-star table of the service extended down to it with its lowest star's
    value, or cut to it), and its evidence threshold (``photos_required_above``) unless ``evidence``
    is None."""
    doc = copy.deepcopy(raw)
    rules = doc["services"][service]
    lowest = min(next(iter(limits.values())))
    rules["min_stars"] = lowest
    for key, table in list(rules.items()):
        if key not in limits and isinstance(table, dict) and table and all(isinstance(s, int) for s in table):
            first = table[min(table)]
            rules[key] = {s: table.get(s, first) for s in range(lowest, max(table) + 1)}
    for key, table in limits.items():
        rules[key] = {
            star: float(f"{v:.6g}") if key == ALLOWANCE else round(v, 2) for star, v in table.items()
        }
    if evidence is not None:
        rules["evidence"]["photos_required_above"] = round(evidence, 2)
    return doc


def _monotone(table: dict[int, float]) -> bool:
    values = [table[s] for s in sorted(table)]
    return all(b >= a for a, b in zip(values, values[1:], strict=False))


def search(
    events: list[Event],
    priced: list[Priced],
    raw: dict,
    targets: dict[str, float],
    progress: Callable[[str], None] = print,
    prepared: Prepared | None = None,
) -> tuple[dict, list[Tried]]:
    """The proposed policy document and every candidate tried.

    Args:
        events: The validation window's events (``serving.offline.backtest.window_events``).
        priced: Its decision events priced by the model (``serving.offline.backtest.price``).
        raw: The reviewed policy document (as read from YAML) the search starts from.
        targets: Service -> the largest upper bound of the loss per unit accepted; the services
            searched (a service without a target keeps its limits).
        progress: Where progress lines go.
        prepared: ``prepare(events, ...)`` in the policy's decimals when already made (default: made here).

    Returns:
        ``(policy document, tried)``; a service whose starting point is infeasible keeps its
        allowance and caps, and ``tried`` says so.
    """
    doc = copy.deepcopy(raw)
    tried: list[Tried] = []
    if prepared is None:
        prepared = prepare(events, ServingConfig(watch_interval_s=0), parse_policy(raw).decimals)
    for service in (s for s in (PRESALE, FAST_REFUND) if s in targets):
        own = [i for i, e in enumerate(events) if e.kind == "outcome" or e.body["service"] == service]
        own_events = [events[i] for i in own]
        own_priced = [p for p in priced if p.request.service == service]
        own_prepared = Prepared([prepared.times[i] for i in own], [prepared.outcomes[i] for i in own])
        window = Banded(own_events, own_priced, own_prepared)
        bootstrap = Bootstrap.of(np.array([p.request.buyer_id for p in own_priced], dtype=np.int64))

        def evaluate(
            limits: dict[str, dict[int, float]],
            evidence: float | None,
            service: str = service,
            doc: dict = doc,
            window: Banded = window,
            bootstrap: Bootstrap = bootstrap,
        ) -> Tried:
            policy = parse_policy(with_settings(doc, service, limits, evidence))
            made = window.decide(policy)
            approved = made["decision"].eq("approve").to_numpy()
            money, rate, upper = bootstrap.upper_bound(made, approved)
            feasible = upper <= targets[service]
            copied = {key: dict(table) for key, table in limits.items()}
            result = Tried(service, copied, evidence, int(approved.sum()), money, rate, upper, feasible)
            tried.append(result)
            return result

        best = _climb(doc["services"][service], evaluate, service, targets[service], progress)
        if best is not None:
            doc = with_settings(doc, service, best.limits, best.evidence)
    return doc, tried


def _climb(
    rules: dict,
    evaluate: Callable[[dict[str, dict[int, float]], float | None], Tried],
    service: str,
    target: float,
    progress: Callable[[str], None],
) -> Tried | None:
    """Coordinate ascent over the evidence threshold (fast refunds), the fewest stars eligible (one star
    lower, with the lowest eligible star's limits), then each star's limits of ``SEARCHED[service]``,
    each pass; None when nothing feasible was found."""
    stars = sorted(int(s) for s in rules["amount_cap"])
    limits = {
        key: {s: float(rules.get(key, {}).get(s, 0.01 if key == ALLOWANCE else 0.0)) for s in stars}
        for key in SEARCHED[service]
    }
    evidence = float(rules["evidence"]["photos_required_above"]) if "evidence" in rules else None
    best = evaluate(limits, evidence)
    progress(
        f"{service}: start {best.money:,.0f} approved at {best.loss_per_unit:.4%} "
        f"(upper {best.upper:.4%}, target {target:.4%})"
    )
    for _ in range(8):  # an infeasible start: shrink every allowance until it is feasible
        if best.feasible:
            break
        shrunk = {s: v * 0.5 for s, v in best.limits[ALLOWANCE].items()}
        best = evaluate(best.limits | {ALLOWANCE: shrunk}, evidence)
    if not best.feasible:
        progress(f"{service}: no feasible allowance found; kept as reviewed")
        return None
    for _ in range(MAX_PASSES):
        start = best
        for scale in EVIDENCE_SCALES if best.evidence is not None else ():
            trial = evaluate(best.limits, best.evidence * scale)
            if trial.feasible and trial.money > best.money:
                best = trial
        if best.min_stars > MIN_STAR:
            lowest, lower = best.min_stars, best.min_stars - 1
            opened = {key: {lower: table[lowest], **table} for key, table in best.limits.items()}
            for scale in LOWER_STAR_ALLOWANCE:
                allowance = {lower: opened[ALLOWANCE][lowest] * scale, **best.limits[ALLOWANCE]}
                trial = evaluate(opened | {ALLOWANCE: allowance}, best.evidence)
                if trial.feasible and trial.money > best.money:
                    best = trial
        for star in range(best.min_stars, max(stars) + 1):
            for key in SEARCHED[service]:
                for scale in SCALES:
                    table = dict(best.limits[key])
                    table[star] *= scale
                    if (key == ALLOWANCE and table[star] > 1) or not _monotone(table):
                        continue
                    trial = evaluate(best.limits | {key: table}, best.evidence)
                    if trial.feasible and trial.money > best.money:
                        best = trial
        shown = "" if best.evidence is None else f", photos required above {best.evidence:,.2f}"
        progress(
            f"{service}: {best.money:,.0f} approved at {best.loss_per_unit:.4%} (upper {best.upper:.4%}"
            f"{shown})"
        )
        if best is start:
            break
    return best


def curve(tried: list[Tried]) -> pd.DataFrame:
    """Every candidate as a row: the approvals/loss curve the run logs."""
    return pd.DataFrame(
        [
            {
                "service": t.service,
                "approvals": t.approvals,
                "money": t.money,
                "loss_per_unit": t.loss_per_unit,
                "upper": t.upper,
                "feasible": t.feasible,
                "evidence": t.evidence,
                **{f"{COLUMN[key]}_{s}": v for key, table in t.limits.items() for s, v in table.items()},
            }
            for t in tried
        ]
    )


def legacy_targets(decisions: pd.DataFrame, legacy_approved: np.ndarray) -> dict[str, float]:
    """Default targets: the legacy rule's loss per unit by the same head (presales), half of it (refunds)."""
    out: dict[str, Any] = {}
    for service in (PRESALE, FAST_REFUND):
        mask = (decisions["service"] == service).to_numpy()
        _, rate, _ = upper_bound(decisions[mask], legacy_approved[mask])
        out[service] = rate * TARGET_SHARE[service]
    return out


@dataclass(frozen=True)
class Found:
    """A whole-policy search on one window: the proposed document, every candidate tried, the targets."""

    doc: dict
    tried: list[Tried]
    targets: dict[str, float]


def propose_on_window(
    tables: dict[str, pd.DataFrame],
    rating,
    raw: dict,
    start: pd.Timestamp,
    end: pd.Timestamp,
    targets: dict[str, float] | None = None,
    progress: Callable[[str], None] = print,
) -> Found:
    """Search the whole policy on ``[start, end)`` of an export, as ``python -m serving propose`` does.

    Args:
        tables: The export's raw tables (``features.io.load_tables``).
        rating: The rating artifact (``rating.artifact.LoadedRating``).
        raw: The reviewed policy document the search starts from.
        start: First instant of the window (UTC).
        end: End of the window (UTC, exclusive).
        targets: Service -> loss per unit target, overriding the legacy rule's (``legacy_targets``).
        progress: Where progress lines go.
    """
    from serving.offline.backtest import daily_signals, day_lives, price, window_events
    from serving.offline.backtest_report import legacy

    base = parse_policy(raw)
    names = list(rating.model.signal_names)
    events = window_events(tables, start, end, base.currency, base.decimals)
    if not any(e.kind == "decide" for e in events):
        raise ValueError(f"no presale deposit or refund request to decide in {start.date()}..{end.date()}")
    signals = daily_signals(tables, events, names)
    priced = price(events, dict(day_lives(signals, names, rating, base)))
    prepared = prepare(events, ServingConfig(watch_interval_s=0), base.decimals)  # once for every candidate
    made = decide_priced(events, priced, base, prepared=prepared)
    goal = legacy_targets(made, legacy(made, signals, tables)) | dict(targets or {})
    progress(f"targets (loss per unit approved, upper 95% bound): {goal}")
    own, exploration = without_exploration(raw)
    doc, tried = search(events, priced, own, goal, progress, prepared)
    for service, declared in exploration.items():
        doc["services"][service][EXPLORATION] = declared
    return Found(doc, tried, goal)


def without_exploration(raw: dict) -> tuple[dict, dict[str, dict]]:
    """A copy of the policy document without exploration, and each service's exploration.

    The search holds the policy's own approvals to the target: exploration is an investment with
    its own monthly budget, approved at random among the declines whatever the allowances, so
    its loss says nothing about them (and with a budget near the target it would make every
    candidate infeasible). The proposed document declares the exploration the reviewed one did.
    """
    doc = copy.deepcopy(raw)
    taken = {s: rules.pop(EXPLORATION) for s, rules in doc["services"].items() if EXPLORATION in rules}
    return doc, taken


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``python -m serving propose`` options."""
    from serving.config import load_config

    defaults = load_config({"watch_interval_s": 0})
    parser.add_argument("--data", type=Path, required=True, help="raw export directory")
    parser.add_argument(
        "--from", dest="start", required=True, help="first day of the validation window (UTC)"
    )
    parser.add_argument("--to", dest="end", required=True, help="day after it (UTC, exclusive)")
    parser.add_argument(
        "--policy", type=Path, default=Path(defaults.policy_path), help="the reviewed policy to start from"
    )
    parser.add_argument("--model-uri", default=defaults.model_uri)
    parser.add_argument("--tracking-uri", default=defaults.mlflow_tracking_uri)
    parser.add_argument(
        "--target-presale", type=float, default=None, help="loss per unit (default: the legacy rule's)"
    )
    parser.add_argument(
        "--target-refund", type=float, default=None, help="loss per unit (default: half the legacy rule's)"
    )
    parser.add_argument(
        "--version", default=None, help="version of the proposed policy (default: candidate-<date>)"
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the proposed policy (YAML)")
    parser.add_argument("--curve", type=Path, default=None, help="write every candidate tried (CSV)")


def run(args: argparse.Namespace) -> int:
    """``python -m serving propose``: search the validation window, write the proposed policy."""
    import yaml

    from features.io import load_tables
    from serving.config import load_config
    from serving.live import load_model
    from serving.policy import PolicyError

    start, end = pd.Timestamp(args.start, tz="UTC"), pd.Timestamp(args.end, tz="UTC")
    if end <= start:
        print(f"propose: --to {args.end} is not after --from {args.start}", file=sys.stderr)
        return 2
    try:
        raw = yaml.safe_load(args.policy.read_text())
        parse_policy(raw)
    except (PolicyError, OSError, yaml.YAMLError) as exc:
        print(f"propose: {exc}", file=sys.stderr)
        return 2
    config = load_config(
        {"model_uri": args.model_uri, "mlflow_tracking_uri": args.tracking_uri, "watch_interval_s": 0}
    )
    rating = load_model(config)
    targets = {
        k: v for k, v in ((PRESALE, args.target_presale), (FAST_REFUND, args.target_refund)) if v is not None
    }
    found = propose_on_window(load_tables(args.data), rating, raw, start, end, targets)
    doc = found.doc
    doc["version"] = args.version or f"candidate-{pd.Timestamp.now(tz='UTC'):%Y%m%d}"
    parse_policy(doc, list(rating.model.signal_names))  # what the service will read
    args.out.write_text(yaml.safe_dump(doc, sort_keys=False))
    if args.curve is not None:
        curve(found.tried).to_csv(args.curve, index=False)
    print(f"wrote {args.out} ({len(found.tried)} candidates tried)")
    return 0
