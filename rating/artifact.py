"""The rating artifact: one MLflow pyfunc model holding everything a decision needs.

booster (LightGBM, stored as a text artifact) -> raw log-odds -> Platt calibration ->
p_bad (per opportunity) -> score (350-950) -> star (1-5) -> caps (a hard fact holds the star at 2
at most) and floors (confirmed fraud: 1 star and the lowest score, below every other buyer), plus
the signal list, the reason texts, the reason lookup table and the service heads
(``rating.heads``: the probability that one opportunity becomes a loss). ``predict`` returns p_bad, score and star so ``mlflow models serve``
can serve it; the decision service loads the same artifact with ``load_rating`` and calls
``score``/``reasons`` on numpy arrays directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.hard_facts import CAPPED_MAX_STAR, FLOOR_STAR, HARD_FACTS
from rating.calibrate import Calibration
from rating.heads import TREESHAP, RowRisk, ServiceHead
from rating.reasons import Reason, ReasonCatalogue, ReasonTable, reason_points, top_k, top_reasons
from rating.scale import SCORE_MIN, ScoreScale, p_to_score, score_to_star, validate_cuts

BOOSTER_ARTIFACT = "booster"


@dataclass(frozen=True)
class RowRating:
    """One buyer rated: ``p_bad``, ``score``, ``star``, the hard facts capping the star (``caps``) and
    the reasons, largest first (the caps among them first)."""

    p_bad: float
    score: int
    star: int
    caps: tuple[Reason, ...] = ()
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class ScoreResult:
    """Scores for n rows: ``p_bad`` (float64), ``score`` (int64, 350-950), ``star`` (int64, 1-5)."""

    p_bad: np.ndarray
    score: np.ndarray
    star: np.ndarray


class RatingModel(mlflow.pyfunc.PythonModel):
    """Calibrated star rating over a fixed, ordered list of signals.

    Args:
        signal_names: Column order of the signal matrix.
        reason_text: Buyer-facing text per signal name.
        calibration: Platt calibration of the booster's raw score.
        scale: Score scaling.
        cuts: Four increasing score cut-points between the five stars.
        reason_table: Lookup-table attribution; ``None`` disables reasons.
        booster: The trained booster; ``None`` until ``load_context`` reads the artifact.
        caps: Hard-fact signals (``features.hard_facts.HARD_FACTS``) that cap the star at
            ``capped_max_star`` where they are > 0; each must be one of ``signal_names``.
        capped_max_star: The highest star a capped buyer can have.
        floors: Hard-fact signals (each one of ``caps``) that put the buyer at ``FLOOR_STAR`` and
            the score at ``SCORE_MIN`` where they are > 0; every other buyer scores above it.
        heads: Service name -> its head (``rating.heads.ServiceHead``), over ``signal_names``.
        catalogue: The fixed reason catalogue (``rating.reasons.ReasonCatalogue``): reasons are its
            entries in score points against its baseline buyer; ``None`` (artifacts before it):
            reasons are single signals in log-odds.
    """

    def __init__(
        self,
        signal_names: list[str],
        reason_text: dict[str, str],
        calibration: Calibration,
        scale: ScoreScale,
        cuts: tuple[float, ...],
        reason_table: ReasonTable | None = None,
        booster: lgb.Booster | None = None,
        caps: tuple[str, ...] = (),
        capped_max_star: int = CAPPED_MAX_STAR,
        heads: dict[str, ServiceHead] | None = None,
        floors: tuple[str, ...] = (),
        catalogue: ReasonCatalogue | None = None,
    ) -> None:
        self.signal_names = list(signal_names)
        self.reason_text = dict(reason_text)
        self.calibration = calibration
        self.scale = scale
        self.cuts = validate_cuts(cuts)
        self.reason_table = reason_table
        self.booster = booster
        missing = [c for c in caps if c not in self.signal_names]
        if missing:
            raise ValueError(f"caps: signals {missing} are not among the model's signals")
        if not 1 <= capped_max_star <= len(self.cuts) + 1:
            raise ValueError(
                f"capped_max_star must be a star (1..{len(self.cuts) + 1}), got {capped_max_star}"
            )
        self.caps = tuple(caps)
        self.capped_max_star = int(capped_max_star)
        outside = [f for f in floors if f not in self.caps]
        if outside:
            raise ValueError(f"floors: signals {outside} are not among the caps")
        self.floors = tuple(floors)
        if catalogue is not None and len(catalogue.member) != len(self.signal_names):
            raise ValueError(
                f"catalogue: {len(catalogue.member)} signals, the model {len(self.signal_names)}"
            )
        self.catalogue = catalogue
        self.heads: dict[str, ServiceHead] = {}
        self.set_heads(heads or {})
        self.review_head: ServiceHead | None = None  # rating.review: is a posted review malicious

    def set_heads(self, heads: dict[str, ServiceHead]) -> None:
        """Attach service heads; each must read exactly the rating's signals, in order.

        Raises:
            ValueError: A head reads other signals (named by its service).
        """
        for service, head in heads.items():
            if list(head.signal_names) != self.signal_names:
                raise ValueError(f"heads[{service}]: its signals differ from the rating's")
        self.heads = dict(heads)

    def set_review_head(self, head: ServiceHead | None) -> None:
        """Attach the review head (``rating.review``); it must read exactly the rating's signals, in order.

        Raises:
            ValueError: The head reads other signals.
        """
        if head is not None and list(head.signal_names) != self.signal_names:
            raise ValueError("review_head: its signals differ from the rating's")
        self.review_head = head

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["booster"] = None  # the booster travels as a text artifact, not in the pickle
        state.pop("_never", None)  # rebuilt on first use
        state.pop("_cap_cols", None)  # rebuilt on first use
        return state

    def __setstate__(self, state: dict) -> None:
        # artifacts logged before caps and heads existed load with none
        defaults = {
            "caps": (),
            "capped_max_star": CAPPED_MAX_STAR,
            "heads": {},
            "review_head": None,
            "floors": (),
            "catalogue": None,
        }
        self.__dict__.update({**defaults, **state})

    def load_context(self, context) -> None:
        """Read the booster from the model's artifacts (MLflow calls this on load)."""
        if self.booster is None:
            self.booster = lgb.Booster(model_file=context.artifacts[BOOSTER_ARTIFACT])

    def _matrix(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if X.shape[1] != len(self.signal_names):
            raise ValueError(
                f"X has {X.shape[1]} columns, the model expects {len(self.signal_names)} signals"
            )
        return X

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Booster log-odds for each row of ``X`` (n, n_signals)."""
        if self.booster is None:
            raise RuntimeError(
                "booster not loaded: load the model with load_rating or mlflow.pyfunc.load_model"
            )
        return self.booster.predict(self._matrix(X), raw_score=True, num_threads=1)

    def capped(self, X: np.ndarray) -> np.ndarray:
        """Boolean ``rows x len(caps)``: which hard facts hold for each row of ``X`` (NaN: absent)."""
        X = self._matrix(X)
        cols = self._cap_columns()
        return np.nan_to_num(X[:, cols].astype(np.float64), nan=0.0) > 0

    def _cap_columns(self) -> list[int]:
        """The columns of ``caps`` among the signals: looked up once per caps and signal list (a capped
        buyer's decision asks; never pickled)."""
        cached = self.__dict__.get("_cap_cols")
        if cached is None or cached[0] is not self.caps or cached[1] is not self.signal_names:
            cached = (self.caps, self.signal_names, [self.signal_names.index(c) for c in self.caps])
            self.__dict__["_cap_cols"] = cached
        return cached[2]

    def floored(self, X: np.ndarray) -> np.ndarray:
        """Boolean per row of ``X``: a floor fact holds (``floors``)."""
        held = self.capped(X)
        cols = [self.caps.index(f) for f in self.floors]
        return held[:, cols].any(axis=1) if cols else np.zeros(len(held), dtype=bool)

    def score(self, X: np.ndarray) -> ScoreResult:
        """p_bad, score and star for each row of ``X`` (n, n_signals), NaN meaning missing.

        Where a hard fact holds the star is at most ``capped_max_star`` and the score at most
        the highest score of that star; where a floor fact holds the star is ``FLOOR_STAR`` and the
        score ``SCORE_MIN``, and every other score is above it. ``p_bad`` stays the model's own
        estimate (per opportunity).
        """
        p_bad = self.calibration.apply(self.raw_score(X))
        score = np.rint(p_to_score(p_bad, self.scale)).astype(np.int64)
        star = score_to_star(score, self.cuts).astype(np.int64)
        if self.caps:
            capped = self.capped(X).any(axis=1)
            top = (
                int(np.ceil(self.cuts[self.capped_max_star - 1])) - 1
                if self.capped_max_star <= len(self.cuts)
                else None
            )
            star = np.where(capped, np.minimum(star, self.capped_max_star), star)
            if top is not None:
                score = np.where(capped, np.minimum(score, top), score)
        if self.floors:
            floored = self.floored(X)
            star = np.where(floored, FLOOR_STAR, star)
            score = np.where(floored, SCORE_MIN, np.maximum(score, SCORE_MIN + 1))
        return ScoreResult(p_bad=p_bad, score=score, star=star)

    def cap_reasons(self, x: np.ndarray) -> list[Reason]:
        """The hard facts capping this row's star, as reasons (contribution: infinite)."""
        held = self.capped(x)[0]
        return [
            Reason(c, HARD_FACTS.get(c, c), float("inf")) for c, on in zip(self.caps, held, strict=True) if on
        ]

    def head_probability(self, service: str, X: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Probability that each opportunity becomes a loss if ``service`` approves it.

        Raises:
            KeyError: The artifact has no head for ``service``.
        """
        if service not in self.heads:
            raise KeyError(f"no head for service {service!r}; this artifact has {sorted(self.heads)}")
        return self.heads[service].probability(self._matrix(X), context)

    def reason_points(self, contributions: np.ndarray) -> np.ndarray:
        """What reasons are ranked by (``rating.reasons.reason_points`` with this model's catalogue)."""
        return reason_points(self.catalogue, contributions)

    def reason_entry(self, j: int) -> tuple[str, str]:
        """Code and buyer-facing text of reason entry ``j`` (a column of ``reason_points``)."""
        if self.catalogue is None:
            name = self.signal_names[j]
            return name, self.reason_text.get(name, name)
        return self.catalogue.codes[j], self.catalogue.texts[j]

    def never_reasons(self) -> frozenset[str]:
        """Signals that are never a reason (the volume of activity); empty without a catalogue.
        Computed once per catalogue (every decision asks; never pickled)."""
        cached = self.__dict__.get("_never")
        if cached is None or cached[0] is not self.catalogue:
            never = frozenset()
            if self.catalogue is not None:
                member = self.catalogue.member.tolist()
                never = frozenset(n for n, m in zip(self.signal_names, member, strict=True) if m < 0)
            cached = (self.catalogue, never)
            self.__dict__["_never"] = cached
        return cached[1]

    def reasons(self, x: np.ndarray, k: int = 4) -> list[Reason]:
        """The hard facts capping this row, then up to ``k`` reasons that lowered its score most
        (catalogue entries in score points against the baseline buyer), largest first; ``k`` at most."""
        if self.reason_table is None:
            return []
        contrib = self.reason_table.contributions(self._matrix(x)[:1])
        caps = self.cap_reasons(x)
        if self.catalogue is None:
            return (caps + top_reasons(contrib[0], self.signal_names, self.reason_text, k))[:k]
        points = self.reason_points(contrib)
        index, value = top_k(points, k)
        found = [
            Reason(*self.reason_entry(j), float(v)) for j, v in zip(index[0], value[0], strict=True) if j >= 0
        ]
        return (caps + found)[:k]

    def rate_row(
        self,
        x: np.ndarray,
        k: int = 4,
        scores: tuple[float, int, int, bool] | None = None,
        stored: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RowRating:
        """One buyer's rating, everything a decision reads of it in one call.

        Args:
            x: The buyer's signals in model order (NaN: missing).
            k: Reasons at most (0: none).
            scores: ``(p_bad, score, star, capped)`` of ``x`` when already scored (a snapshot scored
                as it loaded): the booster is not run again.
            stored: ``(index, value)``, the row's top reasons computed in the batch (``reason_points``
                columns, -1 pads), used instead of the lookup table.

        Returns:
            The rating; its reasons as ``reasons`` gives them (the caps, then the reasons), or
            from ``stored``.
        """
        if scores is None:
            result = self.score(x[None, :])
            scores = (float(result.p_bad[0]), int(result.score[0]), int(result.star[0]), True)
        p_bad, score, star, capped = scores
        caps = tuple(self.cap_reasons(x)) if capped else ()
        if k == 0:
            reasons: tuple[Reason, ...] = ()
        elif stored is None:
            reasons = tuple(self.reasons(x, k=k))
        else:
            found = list(caps)  # a hard fact that caps the star comes first (as in ``reasons``)
            for j, value in zip(stored[0][:k].tolist(), stored[1][:k].tolist(), strict=True):
                if j < 0:
                    break
                found.append(Reason(*self.reason_entry(j), value))
            reasons = tuple(found[:k])
        return RowRating(p_bad=p_bad, score=score, star=star, caps=caps, reasons=reasons)

    def service_risk(
        self,
        service: str,
        x: np.ndarray,
        opportunity: Mapping[str, Any],
        k: int = 4,
        texts: Mapping[str, str] | None = None,
        caps: Sequence[Reason] = (),
        attribution: str = TREESHAP,
    ) -> RowRisk | None:
        """``ServiceHead.risk`` of ``service``'s head on one opportunity (None: no head for it); the
        volume of activity is never a reason (``never_reasons``); ``attribution``: how reasons are
        ranked (``ServiceHead.explain``)."""
        head = self.heads.get(service)
        if head is None:
            return None
        never = self.never_reasons() if k else frozenset()
        return head.risk(np.asarray(x, np.float64), opportunity, k, texts, never, caps, attribution)

    def frame_to_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Signal columns of ``frame`` in model order; raises ``ValueError`` naming missing signals."""
        missing = [n for n in self.signal_names if n not in frame.columns]
        if missing:
            raise ValueError(f"input lacks {len(missing)} signal columns, e.g. {missing[:5]}")
        return frame[self.signal_names].to_numpy(dtype=np.float32, na_value=np.nan)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """pyfunc entry point: a frame of signals in, a frame of p_bad, score and star out."""
        result = self.score(self.frame_to_matrix(pd.DataFrame(model_input)))
        return pd.DataFrame({"p_bad": result.p_bad, "score": result.score, "star": result.star})


@dataclass(frozen=True)
class LoadedRating:
    """A loaded rating model with where it came from (``version`` is None for a plain path)."""

    model: RatingModel
    uri: str
    name: str | None
    version: str | None
    run_id: str | None


def _registry_coordinates(uri: str) -> tuple[str | None, str | None, str | None]:
    if not uri.startswith("models:/"):
        return None, None, None
    ref = uri[len("models:/") :]
    client = mlflow.MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    return mv.name, str(mv.version), mv.run_id


def load_rating(model_uri: str) -> LoadedRating:
    """Load the rating artifact at ``model_uri`` (``models:/name@alias``, ``runs:/...`` or a path)."""
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    model = pyfunc.unwrap_python_model()
    if not isinstance(model, RatingModel):
        raise TypeError(f"{model_uri} is not a rating model (got {type(model).__name__})")
    name, version, run_id = _registry_coordinates(model_uri)
    return LoadedRating(model=model, uri=model_uri, name=name, version=version, run_id=run_id)


def save_booster(booster: lgb.Booster, directory: Path) -> Path:
    """Write the booster as the text artifact ``log_model`` expects; returns its path."""
    path = Path(directory) / "booster.txt"
    booster.save_model(str(path))
    return path
