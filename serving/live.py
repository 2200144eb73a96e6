"""What the service decides with: one consistent set of model, policy and snapshot.

A ``Live`` is immutable. Loading a new policy, snapshot or model builds a new ``Live``
(reusing the unchanged parts) and the runtime swaps it in whole, so a request always sees
one model with the snapshot scored by that model and a policy checked against its signals.

With a file snapshot every buyer is scored once, when the snapshot or the model loads
(the snapshot is batch anyway), and their reasons are taken from the snapshot (exact
TreeSHAP computed at publish time by the same model) or from the model's lookup table: a
request is then a dict lookup.
With Redis each request fetches the buyer's row and scores it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from rating.context import CONTEXT_TEXT, UPLIFT_TEXT, context_row
from rating.heads import TREESHAP, UPLIFT
from serving.config import ServingConfig
from serving.decide import DEGRADED, THIN_FILE, BuyerRating, Finding, HeadRisk
from serving.policy import Policy, check_signals, load_policy
from serving.publish.batch_reasons import lookup_reasons, model_identity
from serving.publish.snapshot import FileSnapshot, RedisSnapshot, SnapshotError, is_redis, load_snapshot
from serving.schema import DecisionRequest

log = logging.getLogger(__name__)
SCORE_CHUNK = 20_000


class Unrated(Exception):
    """The buyer cannot be rated: ``code`` is ``thin_file`` or ``risk_service_degraded``.

    ``cause`` names a degraded cause for the metrics (``stale_snapshot``), when there is one.
    """

    def __init__(self, code: str, text: str, cause: str | None = None) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.cause = cause


@dataclass(frozen=True)
class Scored:
    """Per-buyer scores and reasons precomputed for a file snapshot, rows aligned with it.

    ``reason_index`` holds up to ``REASONS_K`` signal indices per buyer, largest
    risk-raising contribution first (-1 pads), and ``reason_value`` their contributions;
    ``capped`` whether a hard fact caps the buyer's star (``RatingModel.capped``).
    """

    matrix: np.ndarray
    p_bad: np.ndarray
    score: np.ndarray
    star: np.ndarray
    reason_index: np.ndarray | None = None
    reason_value: np.ndarray | None = None
    capped: np.ndarray | None = None


@dataclass(frozen=True)
class Live:
    """The model, policy and snapshot in force.

    Attributes:
        policy: The validated policy.
        policy_mtime: Modification time of the policy file read.
        rating: The loaded rating (``rating.artifact.LoadedRating``), None when unavailable.
        model_error: Why the model is unavailable.
        snapshot: The online signals loaded, None when none could be.
        snapshot_error: Why the snapshot is unusable (not loaded, or not matching the model's
            signals); ``snapshot_code`` says how to decline.
        columns: Snapshot column of each model signal (None when the orders match).
        scored: Precomputed scores (file snapshots only).
        rule_columns: Model column of each signal the policy reads.
        max_snapshot_age_s: Oldest snapshot decided on, seconds since it was published
            (0: no limit); past it every decision declines ``risk_service_degraded``.
        snapshot_published: The snapshot's publish time (Unix seconds), None when unknown.
        head_texts: Buyer-facing text of every input of the model's heads (signals, context,
            uplift), for their reasons.
    """

    policy: Policy
    policy_mtime: float = 0.0
    rating: Any = None
    model_error: str | None = "model not loaded"
    snapshot: FileSnapshot | RedisSnapshot | None = None
    snapshot_error: str | None = "snapshot not loaded"
    snapshot_code: str = THIN_FILE
    columns: np.ndarray | None = None
    scored: Scored | None = None
    rule_columns: dict[str, int] = field(default_factory=dict)
    max_snapshot_age_s: float = 0.0
    snapshot_published: float | None = None
    head_texts: dict[str, str] = field(default_factory=dict)

    def stale(self, now: float | None = None) -> str | None:
        """Why the snapshot is too old to decide on, or None when it is fresh enough (or no limit)."""
        if self.max_snapshot_age_s <= 0 or self.snapshot is None:
            return None
        if self.snapshot_published is None:
            return "snapshot publish time unknown"
        age = (time.time() if now is None else now) - self.snapshot_published
        if age <= self.max_snapshot_age_s:
            return None
        return f"snapshot is {age / 3600:.1f} h old (max_snapshot_age_s {self.max_snapshot_age_s:g} s); republish it"

    def snapshot_problem(self) -> str | None:
        """What makes the snapshot unusable now (not loaded, not matching the model, stale), or None."""
        return self.snapshot_error or self.stale()

    @property
    def model_version(self) -> str | None:
        """``name/version`` of the registered model, or the URI it was loaded from."""
        if self.rating is None:
            return None
        if self.rating.version is not None:
            return f"{self.rating.name}/{self.rating.version}"
        return self.rating.uri

    def _signals(self, x: np.ndarray) -> dict[str, float]:
        return {name: float(x[j]) for name, j in self.rule_columns.items()}

    def rate(self, buyer_id: int) -> BuyerRating:
        """Star, score, reasons and rule signals of one buyer.

        Raises:
            Unrated: ``thin_file`` for an unknown buyer or no snapshot, ``risk_service_degraded``
                when the model or the snapshot store is unavailable.
        """
        if self.rating is None:
            raise Unrated(DEGRADED, f"rating model unavailable: {self.model_error}")
        if self.snapshot is None or self.snapshot_error is not None:
            raise Unrated(self.snapshot_code, f"no online signals: {self.snapshot_error}")
        stale = self.stale()
        if stale is not None:
            raise Unrated(DEGRADED, stale, cause="stale_snapshot")
        as_of = self.snapshot.meta.as_of
        if self.scored is not None:
            pos = self.snapshot.index.get(buyer_id)
            if pos is None:
                raise Unrated(THIN_FILE, "no signals for this buyer (new or inactive account)")
            s = self.scored
            x = s.matrix[pos]
            scores = (float(s.p_bad[pos]), int(s.score[pos]), int(s.star[pos]), bool(s.capped[pos]))
            stored = None if s.reason_index is None else (s.reason_index[pos], s.reason_value[pos])
        else:
            try:
                row = self.snapshot.row(buyer_id)
            except SnapshotError as exc:
                raise Unrated(DEGRADED, f"online signals unavailable: {exc}") from exc
            if row is None:
                raise Unrated(THIN_FILE, "no signals for this buyer (new or inactive account)")
            x = row if self.columns is None else row[self.columns]
            scores = stored = None
        rated = self.rating.model.rate_row(x, self.policy.max_reasons, scores, stored)
        return BuyerRating(
            star=rated.star,
            score=rated.score,
            p_bad=rated.p_bad,
            reasons=_findings(rated.reasons),
            signals=self._signals(x),
            as_of=as_of,
            row=x,
            caps=_findings(rated.caps),
        )

    def head_risk(
        self, request: DecisionRequest, rating: BuyerRating, now: datetime, attribution: str = TREESHAP
    ) -> HeadRisk | None:
        """The service head's probability and expected loss for this opportunity (None: no head).

        The context comes from the request (``opportunity``, read by ``rating.context`` as training
        reads it); the reasons are the hard facts capping the buyer, then the signals and context
        that raised the head's log-odds most (exact TreeSHAP of one row, from per-leaf tables;
        ``attribution`` says otherwise: ``ServiceHead.explain``), then the moral-hazard uplift if
        positive (``RatingModel.service_risk``).
        """
        if rating.row is None:
            return None
        caps = tuple(Finding(f.code, f.text, None) for f in rating.caps)
        risk = self.rating.model.service_risk(
            request.service,
            rating.row,
            opportunity(request, now, self.policy.decimals),
            self.policy.max_reasons,
            self.head_texts,
            caps,
            attribution,
        )
        if risk is None:
            return None
        return HeadRisk.priced(risk.p_loss, request.at_risk, _findings(risk.reasons))


def _findings(reasons: Any) -> tuple[Finding, ...]:
    return tuple(Finding(r.code, r.text, r.contribution) for r in reasons)


def opportunity(request: DecisionRequest, now: datetime, decimals: int) -> dict[str, Any]:
    """The fields of one request's context (``rating.context.context_row``), amounts in currency units.

    Args:
        request: The validated request (amounts in minor units, instants naive UTC).
        now: The decision instant (naive UTC).
        decimals: The currency's decimals.
    """
    unit = 10.0**decimals
    day = 86400.0
    if request.order is not None:
        o = request.order
        return {
            "amount": o.amount / unit,
            "deposit": o.deposit_amount / unit,
            "category": o.category,
            "due_in_days": (o.balance_due_at - now).total_seconds() / day,
            "shipped_early": 1.0,
        }
    r = request.refund
    return {
        "amount": r.amount / unit,
        "order_amount": r.order_amount / unit,
        "kind": r.kind,
        "reason": r.reason,
        "photos": r.evidence_photos,
        "category": r.category,
        "order_age_days": (now - r.ordered_at).total_seconds() / day,
    }


def request_context(request: DecisionRequest, now: datetime, decimals: int) -> np.ndarray:
    """The head's context columns of one request (``rating.context``), amounts in currency units."""
    return context_row(opportunity(request, now, decimals))


def load_model(config: ServingConfig) -> Any:
    """Load the rating artifact named by the config (imports MLflow; seconds)."""
    import mlflow

    from rating.artifact import load_rating

    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    return load_rating(config.model_uri)


def prepared(rating: Any) -> Any:
    """``rating`` with its heads ready to explain a decision (their TreeSHAP tables built,
    ``ServiceHead.prepare``: about a second for the champion's), so no request pays for it."""
    for head in (*rating.model.heads.values(), rating.model.review_head):
        if head is not None:
            head.prepare()
    return rating


def model_version_now(config: ServingConfig) -> str | None:
    """The registry version the model URI points at now (None when it is not a registry alias)."""
    if not config.model_uri.startswith("models:/") or "@" not in config.model_uri:
        return None
    import mlflow

    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    name, alias = config.model_uri[len("models:/") :].split("@", 1)
    return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)


def _score_all(model: Any, matrix: np.ndarray, reasons: tuple[np.ndarray, np.ndarray] | None) -> Scored:
    """Scores of every row, with ``reasons`` (exact, from the snapshot) or the lookup table's."""
    parts = [model.score(matrix[i : i + SCORE_CHUNK]) for i in range(0, len(matrix), SCORE_CHUNK)]
    reasons = reasons if reasons is not None else lookup_reasons(model, matrix)
    capped = [
        model.capped(matrix[i : i + SCORE_CHUNK]).any(axis=1) for i in range(0, len(matrix), SCORE_CHUNK)
    ]
    return Scored(
        matrix=matrix,
        p_bad=np.concatenate([p.p_bad for p in parts]) if parts else np.empty(0),
        score=np.concatenate([p.score for p in parts]).astype(np.int16) if parts else np.empty(0, np.int16),
        star=np.concatenate([p.star for p in parts]).astype(np.int8) if parts else np.empty(0, np.int8),
        reason_index=None if reasons is None else reasons[0],
        reason_value=None if reasons is None else reasons[1],
        capped=np.concatenate(capped) if capped else np.empty(0, bool),
    )


def _align(live: Live, previous: Live | None = None) -> Live:
    """Match the snapshot's columns to the model's signals and precompute file scores.

    Scores are reused from ``previous`` when neither the model nor the snapshot changed.
    """
    live = replace(live, columns=None, scored=None, rule_columns={}, snapshot_published=None, head_texts={})
    if live.snapshot is not None:
        try:
            published = live.snapshot.meta.published_epoch()
        except ValueError:
            published = None
        live = replace(live, snapshot_error=None, snapshot_code=THIN_FILE, snapshot_published=published)
    if live.rating is None:
        return live
    names = live.rating.model.signal_names
    check_signals(live.policy, names)
    rule_columns = {n: names.index(n) for n in sorted(live.policy.signals())}
    texts = {**live.rating.model.reason_text, **CONTEXT_TEXT, UPLIFT: UPLIFT_TEXT}
    live = replace(live, rule_columns=rule_columns, head_texts=texts)
    if live.snapshot is None:
        return live
    position = {n: j for j, n in enumerate(live.snapshot.meta.signal_names)}
    missing = [n for n in names if n not in position]
    if missing:
        error = f"snapshot lacks {len(missing)} of the model's signals, e.g. {missing[:3]}; republish it"
        log.error(error)
        return replace(live, snapshot_error=error, snapshot_code=DEGRADED)
    columns = (
        None if tuple(names) == live.snapshot.meta.signal_names else np.array([position[n] for n in names])
    )
    live = replace(live, columns=columns)
    if isinstance(live.snapshot, FileSnapshot):
        if previous is not None and previous.rating is live.rating and previous.snapshot is live.snapshot:
            return replace(live, scored=previous.scored)
        matrix = (
            live.snapshot.matrix
            if columns is None
            else np.ascontiguousarray(live.snapshot.matrix[:, columns])
        )
        exact = (
            live.snapshot.reasons if live.snapshot.meta.reasons_model == model_identity(live.rating) else None
        )
        live = replace(live, scored=_score_all(live.rating.model, matrix, exact if columns is None else None))
    return live


def live_for_snapshot(policy: Policy, rating: Any, snapshot: FileSnapshot) -> Live:
    """A ``Live`` of a loaded model and policy on an in-memory snapshot (no age limit): the backtest's."""
    return _align(Live(policy=policy, rating=rating, model_error=None, snapshot=snapshot))


def load_live(
    config: ServingConfig, previous: Live | None = None, parts: frozenset[str] | None = None
) -> Live:
    """Load (or reload) the parts named in ``parts`` and return a new consistent ``Live``.

    Args:
        config: Where each part lives.
        previous: The current ``Live``; parts not reloaded are taken from it.
        parts: Any of ``{"policy", "snapshot", "model"}``; all when None.

    Returns:
        The new ``Live``. A model or snapshot that fails to load on first load is recorded
        as unavailable (the service declines with a reason); on reload the previous one is kept.

    Raises:
        PolicyError: The policy file is invalid (or names a signal the model lacks).
    """
    parts = frozenset({"policy", "snapshot", "model"}) if parts is None else parts
    live = None if previous is None else replace(previous, max_snapshot_age_s=config.max_snapshot_age_s)
    if live is None or "policy" in parts:
        mtime = os.stat(config.policy_path).st_mtime if os.path.exists(config.policy_path) else 0.0
        policy = load_policy(config.policy_path)
        live = (
            Live(policy=policy, policy_mtime=mtime, max_snapshot_age_s=config.max_snapshot_age_s)
            if live is None
            else replace(live, policy=policy, policy_mtime=mtime)
        )
    if "model" in parts:
        try:
            live = replace(live, rating=prepared(load_model(config)), model_error=None)
        except Exception as exc:  # noqa: BLE001 - any failure to load leaves the service degraded, not down
            log.exception("model %s failed to load", config.model_uri)
            if previous is None or previous.rating is None:
                live = replace(live, rating=None, model_error=f"{type(exc).__name__}: {exc}")
    if "snapshot" in parts:
        try:
            live = replace(live, snapshot=load_snapshot(config.snapshot, config.redis_prefix))
        except SnapshotError as exc:
            log.error("snapshot %s failed to load: %s", config.snapshot, exc)
            if previous is None or previous.snapshot is None:
                missing = not is_redis(config.snapshot) and not os.path.exists(config.snapshot)
                code = THIN_FILE if missing else DEGRADED
                live = replace(live, snapshot=None, snapshot_error=str(exc), snapshot_code=code)
    return _align(live, previous)
