"""Learning from the service's own decisions: the decision log's propensities as training weights.

A presale shipped early shows what shipping early does; the service ships early what its model
approves and, at random, a small share of what it declines (``serving.decide.explore``), and it
logs each decision's propensity (the probability that the decision it made would be made). A
head fitted on the shipped-early presales alone sees the buyers the previous model liked; each
explored approval stands for ``1 / propensity`` presales like it that were declined. So the
shipped-early presales the log decided carry the weight ``1 / propensity`` (clipped at
``MAX_WEIGHT``), the rest (history's rule, or no log) weight 1: inverse-propensity weighting,
as in the off-policy estimates (``serving.offline.ope``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.snapshots import TimeSplit

MAX_WEIGHT = 50.0  # clip: one explored presale stands for at most this many


def logged_propensities(url: str, service: str, schema: str | None = None) -> pd.DataFrame:
    """The first logged decision on each opportunity of ``service``: ``ref_id``, ``approved``, ``propensity``.

    Raises:
        ValueError: The database has no decision log (names the URL).
    """
    from sqlalchemy import select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from serving.ledger.engine import make_engine
    from serving.ledger.tables import DECISIONS

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        raise ValueError(f"--decision-log {url}: no such SQLite database")
    d = DECISIONS.c
    engine = make_engine(url, schema)
    try:
        query = select(d.ref_id, d.decision, d.propensity).where(d.service == service).order_by(d.created_at)
        with engine.connect() as conn:
            rows = pd.DataFrame(conn.execute(query).all(), columns=["ref_id", "decision", "propensity"])
    except SQLAlchemyError as err:
        raise ValueError(
            f"--decision-log {url}: cannot read the decision log: {err.__class__.__name__}: {err}"
        ) from err
    finally:
        engine.dispose()
    rows = rows.drop_duplicates("ref_id", keep="first")
    return pd.DataFrame(
        {
            "ref_id": rows["ref_id"].to_numpy(np.int64),
            "approved": rows["decision"].eq("approve").to_numpy(bool),
            "propensity": rows["propensity"].astype(float).fillna(1.0).to_numpy(np.float64),
        }
    )


def shipped_weights(rows: pd.DataFrame, key: str, taken: str, logged: pd.DataFrame | None) -> np.ndarray:
    """Per opportunity: ``1 / propensity`` (clipped) where the log approved it and it was taken, else 1.

    Args:
        rows: Opportunity rows with ``key`` (the opportunity id) and ``taken`` (shipped early).
        key: The id column (``order_id``).
        taken: The column saying the opportunity was approved as it happened (``shipped``).
        logged: ``logged_propensities`` of the service, or None (no log: every weight 1).
    """
    weights = np.ones(len(rows), dtype=np.float64)
    if logged is None or logged.empty or rows.empty:
        return weights
    p = pd.Series(logged["propensity"].to_numpy(), index=logged["ref_id"].to_numpy())
    approved = pd.Series(logged["approved"].to_numpy(), index=logged["ref_id"].to_numpy())
    ids = rows[key].to_numpy(np.int64)
    prop = p.reindex(ids).to_numpy(np.float64)
    ok = rows[taken].to_numpy(bool) & approved.reindex(ids).fillna(False).to_numpy(bool) & (prop > 0)
    weights[ok] = np.minimum(1.0 / prop[ok], MAX_WEIGHT)
    return weights


def propensity_metrics(presales: pd.DataFrame, split: TimeSplit) -> dict[str, float]:
    """How many presales the decision log weighs (``weight`` > 1): in the export, and in each window
    the heads are fitted on (``train``: the base; ``valid``: early stopping and the uplift). Weights
    that reach neither change nothing."""
    from training.heads import WEIGHT

    weights = presales[WEIGHT] if WEIGHT in presales else pd.Series(1.0, index=presales.index)
    out = {
        "propensity_weighted_presales": float((weights > 1).sum()),
        "propensity_max_weight": float(weights.max()) if len(weights) else 1.0,
    }
    window = split.assign_instant(presales["as_of"]).to_numpy()
    for name in ("train", "valid"):
        out[f"propensity_weighted_presales_{name}"] = float(
            ((weights > 1).to_numpy() & (window == name)).sum()
        )
    return out
