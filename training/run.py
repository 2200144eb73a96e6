"""The training pipeline behind ``python training/train.py`` (its options: ``training.train.parse_args``).

Simulates the default marketplace when no data is given, builds monthly point-in-time
snapshots, trains LightGBM on the older ones, calibrates and cuts stars on the validation
window, evaluates on the latest window against the old rule, a scorecard and the oracle,
logs everything to MLflow, registers the rating and promotes it when it beats the champion.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow import ActiveRun

from features import cluster
from features.catalog import render as render_catalog
from features.io import validate_export
from features.memory import release_free_memory
from features.registry import (
    Signal,
    activity_signals,
    monotone_constraints,
    reason_catalogue,
    reason_codes,
    reasons,
    signals,
)
from features.validate import ContractError
from rating.artifact import RatingModel
from rating.scale import ScoreScale
from serving.offline.policy_search import TARGET_SHARE
from simulator.config import RunConfig
from simulator.write import write_export
from training import on_cluster
from training.dataset import REVIEWS, SNAPSHOTS, assemble_cached
from training.evaluation import gate
from training.evaluation.figures import figures
from training.evaluation.report import (
    PREFIX,
    REASON_ONLY,
    Opportunities,
    Report,
    build_report,
    proposal_inputs,
    proposal_metrics,
    reason_only_ranking,
)
from training.evaluation.scorecard import OptBinningScorecard
from training.evaluation.summary import summary_text
from training.evaluation.truth import buyer_traits, opportunity_truth, risk_truth, truth_columns
from training.heads import WEIGHT, fit_heads
from training.labels import PER_OPPORTUNITY, target_weights
from training.model import (
    DEFAULT_PARAMS,
    Dataset,
    StarCutError,
    checked_monotone,
    fit_booster,
    fit_rating,
    seed_free,
)
from training.opportunities import FAST_REFUND, KEYS, PRESALE, SERVICES
from training.package import log_rating
from training.policy.backtest import (
    Judged,
    against_champion,
    curve_figure,
    search_and_judge,
    targets_of,
)
from training.policy.proposal import Proposal, candidate_policy, policy_bands, propose
from training.progress import Progress
from training.propensity import logged_propensities, propensity_metrics, shipped_weights
from training.reference import REFERENCE_ARTIFACT, monitor_reference
from training.review_head import ReviewEvaluation, evaluate_review_head, fit_review_head
from training.snapshots import TimeSplit, default_split, snapshot_dates, split_snapshots, utc
from training.tracking import configure_tracking, ensure_experiment

DEFAULT_DATA = Path("data/market")
BASE_POLICY = Path(__file__).resolve().parent.parent / "serving" / "policy.yaml"  # the reviewed policy file
PSI_SAMPLE = 200_000
DEFAULT_MARKET = {"buyers": 50_000, "months": 30, "seed": 7}


def ensure_data(data: Path | None, progress: Progress) -> Path:
    """The export to train on; the default marketplace is simulated on first use and reused after."""
    if data is not None:
        return data
    if not (DEFAULT_DATA / "manifest.json").is_file():
        with progress.step(
            "simulate", f"no data given: simulating the default marketplace into {DEFAULT_DATA} ..."
        ):
            write_export(RunConfig(**DEFAULT_MARKET), DEFAULT_DATA)
    return DEFAULT_DATA


def rating_rows(frame: pd.DataFrame, names: list[str], target: str) -> Dataset:
    """The rating's rows of one window: the signals, the target and its weights (``training.labels``)."""
    return Dataset(frame[names].to_numpy(np.float32), frame[target].to_numpy(), target_weights(frame, target))


def fit_scorers(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    target: str,
    registry: tuple[Signal, ...],
    params: dict,
    seed: int,
    progress: Progress,
    booster_fit: Callable[..., lgb.Booster] = fit_booster,
) -> tuple[RatingModel, OptBinningScorecard, list[int], list[int]]:
    """Fit the rating (LightGBM, early stopping on validation) and the scorecard on the same training rows.

    Returns:
        ``(rating, scorecard, monotone constraints used, indices of directions dropped)``.
    """
    names = [s.name for s in registry]
    d_train = rating_rows(train, names, target)
    d_valid = rating_rows(valid, names, target)
    outcome = train["bad_90d" if target == PER_OPPORTUNITY else target].to_numpy()  # 0/1 for the AUC checks
    monotone, dropped = checked_monotone(
        d_train.X, outcome, monotone_constraints(names), seed=seed, kept=activity_signals(names)
    )
    with progress.step(
        "rating", f"training the rating: LightGBM ({np.count_nonzero(monotone)} monotone constraints) ..."
    ):
        model = fit_rating(
            d_train, d_valid, names, reasons(names), monotone, params, ScoreScale(), seed=seed,
            progress=progress, booster_fit=booster_fit, reason_codes=reason_codes(names),
            catalogue_text=reason_catalogue(names),
        )  # fmt: skip
    with progress.step(
        "scorecard", f"best iteration {model.booster.best_iteration}; fitting the optbinning scorecard ..."
    ):
        scorecard = OptBinningScorecard(names, [s.risk_direction for s in registry]).fit(d_train.X, outcome)
    return model, scorecard, monotone, dropped


def fit_twin(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    target: str,
    names: list[str],
    monotone: list[int],
    params: dict,
    seed: int,
    booster_fit: Callable[..., lgb.Booster] = fit_booster,
    same_booster: lgb.Booster | None = None,
) -> RatingModel:
    """The rating retrained as ``fit_scorers`` trains it but with seed ``seed + 1`` (LightGBM's
    bagging and feature sampling, and the reason sample): what reason stability is measured against.

    ``same_booster``: the first fit's booster, when the learner is seed-free on these rows
    (``training.model.seed_free``: a retrain would give it again, so it is not refitted and
    the seed moves only the reason sample)."""
    twin_params = {**params, "seed": seed + 1}
    d_train = rating_rows(train, names, target)
    d_valid = rating_rows(valid, names, target)
    if same_booster is not None:
        booster_fit = lambda *_args, **_kw: same_booster  # noqa: E731
    return fit_rating(
        d_train, d_valid, names, reasons(names), monotone, twin_params, ScoreScale(), seed=seed + 1,
        booster_fit=booster_fit, reason_codes=reason_codes(names), catalogue_text=reason_catalogue(names),
    )  # fmt: skip


def propose_policy(
    model: RatingModel, frames: dict[str, pd.DataFrame], split: TimeSplit, progress: Callable[[str], None]
) -> tuple[dict[str, Proposal], dict[str, str]]:
    """Allowances per service from the validation window's opportunities (``training.policy.proposal``).

    Returns:
        The proposals, and for each service without one why (for example the legacy rule approved
        nothing in a small validation window). The run goes on without it: the rating and the heads
        do not depend on the proposal, and a risk team reviews a candidate policy before it is used;
        ``proposal_outcome`` records the failure where a data scientist looks.
    """
    out, failed = {}, {}
    for service in SERVICES:
        rows = split.opportunities_in(frames[service], "valid")
        try:
            out[service] = propose(
                service,
                **proposal_inputs(model, service, rows),
                bands=policy_bands(BASE_POLICY, service),
                target_share=TARGET_SHARE[service],
            )
        except ValueError as err:
            failed[service] = str(err)
            progress(f"WARNING: no allowance proposed for {service}: {err}")
    return out, failed


def weigh_by_propensity(rows: pd.DataFrame, args: argparse.Namespace, progress: Progress) -> pd.DataFrame:
    """The presale rows with their ``weight`` from ``--decision-log`` (``training.propensity``), unless ignored."""
    if args.decision_log is None or args.ignore_propensities:
        return rows
    logged = logged_propensities(args.decision_log, PRESALE)
    weights = shipped_weights(rows, KEYS[PRESALE], "shipped", logged)
    progress(
        f"decision log: {len(logged):,} presale decisions; {int((weights > 1).sum()):,} shipped-early presales "
        f"weighted by 1/propensity (largest weight {weights.max():.1f})"
    )
    return rows.assign(**{WEIGHT: weights})


def search_policy(
    model: RatingModel,
    run_id: str,
    candidate: dict,
    data: Path,
    split: TimeSplit,
    days: int,
    progress: Progress,
) -> tuple[dict, str, Judged | None]:
    """The whole-policy search and its judgement on the test window (``training.policy.backtest``), logged.

    Returns:
        The searched candidate, ``""`` and the judgement; when the search failed, the allowance
        proposal, a header line for the candidate file saying why (metric ``policy_searched`` = 0
        and the ``policy_search`` tag say it too) and None.
    """
    try:
        judged = search_and_judge(
            model, run_id, candidate, yaml.safe_load(BASE_POLICY.read_text()), data, split, days, progress
        )
    except ValueError as err:
        progress(f"WARNING: the whole-policy search failed, the candidate is the allowance proposal: {err}")
        mlflow.log_metric("policy_searched", 0.0)
        mlflow.set_tag("policy_search", f"failed: {err}"[:5000])
        return candidate, f"# NOT SEARCHED: caps and allowances are the allowance proposal's ({err})\n", None
    mlflow.log_metrics(judged.metrics | {"policy_searched": 1.0})
    mlflow.set_tag("policy_search", "searched")
    mlflow.log_text(judged.text, "policy/backtest_test_window.txt")
    with tempfile.TemporaryDirectory() as tmp:
        judged.curve.to_csv(Path(tmp) / "search_curve.csv", index=False)
        fig = curve_figure(judged.curve, targets_of(judged.metrics))
        fig.savefig(Path(tmp) / "search_curve.png", dpi=110, bbox_inches="tight")
        mlflow.log_artifacts(tmp, artifact_path="policy")
    return judged.doc, "", judged


def proposal_outcome(failed: dict[str, str]) -> tuple[dict[str, float], dict[str, str], str]:
    """What the run records about the proposal: a fixed metric per service (``policy_<prefix>_proposed``,
    1 or 0, so runs can be filtered on it), a tag with the reason, and a header for the candidate
    policy naming each service whose allowance is the reviewed file's, not a proposal."""
    metrics = {f"policy_{PREFIX[s]}_proposed": float(s not in failed) for s in SERVICES}
    tags = {
        f"policy_proposal_{PREFIX[s]}": (f"failed: {failed[s]}" if s in failed else "proposed")[:5000]
        for s in SERVICES
    }
    header = "".join(
        f"# NOT PROPOSED: {service} keeps the reviewed policy's allowance ({reason})\n"
        for service, reason in failed.items()
    )
    return metrics, tags, header


def review_head_step(
    model: RatingModel,
    frame: pd.DataFrame | None,
    split: TimeSplit,
    data: Path,
    seed: int,
    progress: Callable[[str], None],
) -> ReviewEvaluation | None:
    """Fit the review head on its rows (``training.review_head``), attach it to the rating and judge it
    on the test window; None (and a progress line) when the rows cannot train one."""
    if frame is None:
        progress("no review rows assembled: the artifact has no review head")
        return None
    try:
        head = fit_review_head(
            split.opportunities_in(frame, "train"), split.opportunities_in(frame, "valid"), model.signal_names,
            seed, progress,
        )  # fmt: skip
        evaluation = evaluate_review_head(head, frame, split, data, BASE_POLICY, seed)
    except ValueError as err:  # e.g. no removed review in a small marketplace's window
        progress(f"no review head: {err}")
        return None
    model.set_review_head(head)
    return evaluation


@dataclass(frozen=True)
class WindowTruth:
    """One service's test-window opportunities as the truth sees them: how many, and the truth's
    probabilities (``Opportunities.p_true`` and ``p_if_approved``; None without truth)."""

    count: int
    p_true: np.ndarray | None
    p_if_approved: np.ndarray | None = None


def window_truth(data: Path, frames: dict[str, pd.DataFrame], split: TimeSplit) -> dict[str, WindowTruth]:
    """Per service, the truth of the opportunities decided in the test window, read from their keys alone:
    before training, so an export whose truth does not cover them fails first (``TruthError``), without
    holding the rows' signals through the training (``window_opportunities`` copies them later)."""
    out = {}
    for service in SERVICES:
        keys = split.opportunities_in(frames[service][[KEYS[service], "as_of"]], "test")
        fast = truth_columns(data, service, keys, ("p_loss_if_fast",)) if service == FAST_REFUND else None
        p_true = opportunity_truth(data, service, keys)
        out[service] = WindowTruth(len(keys), p_true, None if fast is None else fast[:, 0])
    return out


def window_opportunities(
    data: Path,
    frames: dict[str, pd.DataFrame],
    split: TimeSplit,
    truth: dict[str, WindowTruth] | None = None,
) -> dict[str, Opportunities]:
    """Per service, the opportunities decided in the test window, with the truth's probabilities if any
    (``truth``: ``window_truth``, read here when not given); refunds also with the truth's
    ``p_loss_if_fast`` (the high-risk share) and the reason-only baseline ranking (reason loss rates of
    the training window)."""
    truth = window_truth(data, frames, split) if truth is None else truth
    out = {}
    for service in SERVICES:
        rows = split.opportunities_in(frames[service], "test")
        out[service] = Opportunities(rows, truth[service].p_true, p_if_approved=truth[service].p_if_approved)
    refunds = out[FAST_REFUND]
    history = split.opportunities_in(frames[FAST_REFUND], "train")
    out[FAST_REFUND] = replace(refunds, baselines={REASON_ONLY: reason_only_ranking(history, refunds.rows)})
    return out


def run(args: argparse.Namespace) -> int:
    """Run the pipeline with the options of ``training.train.parse_args``: in-process, or on the Dask
    cluster of ``--cluster``. Returns the exit status (0 trained and registered, 1 training failed,
    2 the data cannot be trained on)."""
    try:
        with cluster.connect(args.cluster) as client:
            return train_and_register(args, client)
    except cluster.ClusterError as err:
        return cluster.failed(err, "nothing registered")


def train_and_register(args: argparse.Namespace, client: Any) -> int:
    """Train, evaluate, log and register; in-process, or on the Dask ``client`` (``--cluster``)."""
    progress = Progress()
    params = {**DEFAULT_PARAMS, "seed": args.seed, **args.params}
    registry = signals()
    names = [s.name for s in registry]
    try:
        data = ensure_data(args.data, progress)
        with progress.step("validate", f"checking {data} against the data contract ..."):
            validate_export(data)  # first: every later step reads the raw tables as the contract says
        dates = snapshot_dates(data)
        split = default_split(
            dates,
            valid_first=utc(args.valid_from) if args.valid_from is not None else None,
            test_first=utc(args.test_from) if args.test_from is not None else None,
        )
        progress(
            f"windows: train as-of <= {split.train_last.date()}, valid {split.valid_first.date()}..{split.valid_last.date()}, "
            f"test >= {split.test_first.date()}"
        )
        with progress.step(
            "assemble",
            f"building {len(names)} signals for {len(dates)} monthly snapshots and every opportunity from {data} ...",
        ):
            if client is None:
                frames = assemble_cached(
                    data, dates, args.cache_dir, args.max_buyers, args.seed, progress, split
                )
                booster_fit = fit_booster
            else:
                frames, booster_fit = on_cluster.assemble(
                    client, data, dates, args.max_buyers, args.seed, progress, split, names, args.target
                )
        frame = frames.pop(SNAPSHOTS)
        train, valid, test = split_snapshots(frame, split)
        rate = frame[args.target].mean()
        del frame  # windows that were copied (an export of several shards) are not held twice
        release_free_memory()
        frames[PRESALE] = weigh_by_propensity(frames[PRESALE], args, progress)
        truth = window_truth(data, frames, split)
        oracle = risk_truth(data, test)
        traits = buyer_traits(data)
    except (ContractError, ValueError) as err:
        print(f"cannot train on {args.data or DEFAULT_DATA}:\n{err}", file=sys.stderr)
        return 2

    progress(
        f"rows: train {len(train):,}, valid {len(valid):,}, test {len(test):,}; {args.target} rate {rate:.2%}; "
        + ", ".join(f"test {k} opportunities {t.count:,}" for k, t in truth.items())
    )
    configure_tracking()
    mlflow.set_experiment(experiment_id=ensure_experiment(args.experiment))
    try:
        run, report, version, verdict, unproposed = fit_and_log(
            args, params, registry, data, split, train, valid, test, oracle, truth, frames, progress,
            booster_fit, traits,
        )  # fmt: skip
    except StarCutError as err:
        print(f"training failed, nothing registered (run marked FAILED): {err}", file=sys.stderr)
        return 1
    print(summary_text(report, args.target))
    print(
        f"MLflow run {run.info.run_id} (experiment {args.experiment}); registered {args.register_name} version {version}; "
        f"{'promoted to champion' if verdict.promote else 'not promoted'}: {verdict.reason}"
    )
    for service, reason in unproposed.items():
        print(
            f"WARNING: no expected-loss allowance proposed for {service} ({reason}); the candidate policy "
            f"keeps the reviewed file's for it (metric policy_{PREFIX[service]}_proposed = 0)",
            file=sys.stderr,
        )
    return 0


def fit_and_log(
    args: argparse.Namespace,
    params: dict,
    registry: tuple[Signal, ...],
    data: Path,
    split: TimeSplit,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    oracle: np.ndarray | None,
    truth: dict[str, WindowTruth],
    frames: dict[str, pd.DataFrame],
    progress: Progress,
    booster_fit: Callable[..., lgb.Booster] = fit_booster,
    traits: pd.DataFrame | None = None,
) -> tuple[ActiveRun, Report, str, gate.GateResult, dict[str, str]]:
    """Inside one MLflow run: fit, evaluate, log, register and apply the gate; an exception marks the run FAILED.

    ``frames`` (the assembled opportunity rows) is emptied once the heads, the review head and the
    allowance proposal have read it and the test window's opportunities are copied out of it
    (``window_opportunities``, with ``truth``), so the policy search and the evaluation run without it.

    Returns:
        The run, the report, the registered version, the gate's verdict and, per service without
        a proposed allowance, why.
    """
    names = [s.name for s in registry]
    with mlflow.start_run() as run:
        fitted = fit_scorers(train, valid, args.target, registry, params, args.seed, progress, booster_fit)
        model, scorecard, monotone, dropped = fitted
        twin = None
        if not args.no_stability:
            with progress.step("stability", "reason stability: the rating under another seed ..."):
                same = model.booster if seed_free(params, len(train)) else None
                twin = fit_twin(
                    train, valid, args.target, names, monotone, params, args.seed, booster_fit, same
                )
        with progress.step("heads", "fitting the service heads ..."):
            model.set_heads(fit_heads(frames, split, names, args.seed, progress, model.booster))
        for service, head in model.heads.items():
            mlflow.log_metrics({f"head_{PREFIX[service]}_{k}": v for k, v in head.metrics.items()})
        mlflow.log_metrics(propensity_metrics(frames[PRESALE], split))
        mlflow.log_dict(
            {s: {"uplift": list(h.uplift), "context": h.context_names} for s, h in model.heads.items()},
            "heads.json",
        )
        with progress.step("review_head", "fitting and judging the review head ..."):
            review = review_head_step(model, frames.get(REVIEWS), split, data, args.seed, progress)
        if review is not None:
            mlflow.log_metrics({f"head_review_{k}": v for k, v in model.review_head.metrics.items()})
            mlflow.log_metrics(review.metrics)
        mlflow.log_metric("best_iteration", model.booster.best_iteration)
        mlflow.log_params({k: v for k, v in params.items() if k != "monotone_constraints"})
        mlflow.log_params(
            {
                "data": str(data),
                "target": args.target,
                "signals": len(names),
                **split.params(),
                "train_rows": len(train),
                "valid_rows": len(valid),
                "test_rows": len(test),
                "monotone_signals": int(np.count_nonzero(monotone)),
                "monotone_dropped": ",".join(names[j] for j in dropped)[:500] or "none",
                "max_buyers": args.max_buyers,
                "cluster": args.cluster or "in-process",
            }
        )
        with progress.step(
            "propose_policy", "proposing expected-loss allowances on the validation window ..."
        ):
            proposals, unproposed = propose_policy(model, frames, split, progress)
        opportunities = window_opportunities(data, frames, split, truth)
        frames.clear()  # their last reader: the search and the evaluation hold the test opportunities only
        release_free_memory()
        candidate = candidate_policy(BASE_POLICY, proposals, f"candidate-{run.info.run_id[:8]}")
        if review is not None and "reviews" in candidate:
            candidate["reviews"]["hold_above"] = float(f"{review.hold_above:.6g}")
        search_note, searched = "", None
        if args.policy_days > 0:
            with progress.step(
                "search_policy", "searching the whole policy by backtest, judging it on the test window ..."
            ):
                candidate, search_note, searched = search_policy(
                    model, run.info.run_id, candidate, data, split, args.policy_days, progress
                )
        proposed_metrics, proposed_tags, header = proposal_outcome(unproposed)
        header += search_note
        mlflow.log_metrics(proposed_metrics)
        mlflow.set_tags(proposed_tags)
        mlflow.log_text(header + yaml.safe_dump(candidate, sort_keys=False), "policy/candidate_policy.yaml")
        with progress.step("evaluate", "evaluating on the test window (bootstrap intervals over buyers) ..."):
            train_sample = train.sample(n=min(PSI_SAMPLE, len(train)), random_state=args.seed)
            report = build_report(
                model, scorecard, train_sample, test, args.target, oracle, opportunities, seed=args.seed,
                traits=traits, twin=twin,
            )  # fmt: skip
            for proposal in proposals.values():
                report.metrics.update(proposal_metrics(model, proposal, opportunities[proposal.service]))
        mlflow.log_metrics(report.metrics)
        mlflow.log_dict(monitor_reference(model, test, opportunities), REFERENCE_ARTIFACT)
        mlflow.log_dict(
            {"cuts": list(model.cuts), "scale": vars(model.scale), "calibration": vars(model.calibration)},
            "rating.json",
        )
        with (
            progress.step("figures", "drawing the evaluation figures ..."),
            tempfile.TemporaryDirectory() as tmp,
        ):
            for fname, fig in figures(report, model).items():
                fig.savefig(Path(tmp) / fname, dpi=110, bbox_inches="tight")
            for fname, table in report.tables.items():
                table.to_csv(Path(tmp) / fname, index=False)
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
        mlflow.log_text(render_catalog(registry), "signals.md")

        client = mlflow.MlflowClient()
        with progress.step("challenge", "comparing with the champion, if any, on the same test rows ..."):
            monotone = bool(report.metrics["stars_monotone"])
            policies = None
            if searched is not None:
                policies = lambda: against_champion(client, args.register_name, searched, data, progress)  # noqa: E731
            judged = gate.judge(
                client, args.register_name, model, test, opportunities, args.promote, monotone, args.seed,
                policies,
            )  # fmt: skip
        for c in judged.comparisons or []:
            mlflow.log_metrics(c.metrics())
        verdict, champion = judged.verdict, judged.champion
        with progress.step("register", "logging and registering the rating artifact ..."):
            info = log_rating(
                model, valid[names].to_numpy(np.float32)[:5], registered_model_name=args.register_name
            )
        version = str(info.registered_model_version)
        gate.set_aliases(client, args.register_name, version, verdict.promote)
        mlflow.set_tags(
            {
                "promoted": verdict.promote,
                "promotion_reason": verdict.reason[:5000],
                "champion_before": champion or "none",
            }
        )
        mlflow.log_metrics(progress.metrics())

    return run, report, version, verdict, unproposed
