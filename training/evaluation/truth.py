"""The simulator's truth, joined to evaluation rows (simulated exports only; real exports have none).

``truth/risk.parquet`` gives ``p_bad_90d`` per (buyer_id, as_of); ``truth/presale_opportunities``
gives ``p_default_if_shipped`` / ``p_default_if_held`` per order_id; ``truth/refund_opportunities``
gives ``p_loss_if_fast`` / ``p_loss_if_normal`` per refund_id. Each is the probability of exactly the
outcome that ``features.outcomes`` defines, with the same timing. What a decision is judged by is
the loss it adds: shipping a presale early risks its default if shipped; paying a refund fast adds
``p_loss_if_fast - p_loss_if_normal`` (normal handling would have paid part of those losses anyway).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from training.opportunities import FAST_REFUND, KEYS, PRESALE

TRUTH_FILES = {
    PRESALE: ("presale_opportunities.parquet", ("p_default_if_shipped",)),
    FAST_REFUND: ("refund_opportunities.parquet", ("p_loss_if_fast", "p_loss_if_normal")),
}
"""Per service: the truth file, the probability of a loss if approved and (refunds) the one the
decision is compared with; the yardsticks price their difference."""


class TruthError(ValueError):
    """The truth files do not cover the rows asked for."""


def risk_truth(data: Path, rows: pd.DataFrame) -> np.ndarray | None:
    """True ``p_bad_90d`` per (buyer_id, as_of) row, or None when the export has no truth.

    Raises:
        TruthError: The truth lacks some of the rows (the message counts them).
    """
    path = Path(data) / "truth" / "risk.parquet"
    if not path.exists():
        return None
    truth = pd.read_parquet(path, columns=["buyer_id", "as_of", "p_bad_90d"])
    truth["as_of"] = truth["as_of"].astype("datetime64[us, UTC]")
    keys = rows[["buyer_id", "as_of"]].astype({"as_of": "datetime64[us, UTC]"})
    p = keys.merge(truth, on=["buyer_id", "as_of"], how="left", validate="m:1")["p_bad_90d"].to_numpy()
    if np.isnan(p).any():
        raise TruthError(f"{path}: no p_bad_90d for {int(np.isnan(p).sum()):,} of {len(p):,} snapshot rows")
    return p


def opportunity_truth(data: Path, service: str, rows: pd.DataFrame) -> np.ndarray | None:
    """The truth's probability of the loss an approval adds, per opportunity row; None without truth:
    a presale's ``p_default_if_shipped``, a refund's ``p_loss_if_fast - p_loss_if_normal``.

    Raises:
        TruthError: The truth lacks some of the rows, or a column (an export of an older simulator).
    """
    arms = truth_columns(data, service, rows, TRUTH_FILES[service][1])
    if arms is None:
        return None
    return arms[:, 0] if arms.shape[1] == 1 else arms[:, 0] - arms[:, 1]


def truth_columns(
    data: Path, service: str, rows: pd.DataFrame, columns: tuple[str, ...]
) -> np.ndarray | None:
    """Columns of the service's truth file per opportunity row (rows x columns); None without truth.

    Raises:
        TruthError: The truth lacks some of the rows, or a column.
    """
    path = Path(data) / "truth" / TRUTH_FILES[service][0]
    if not path.exists():
        return None
    key = KEYS[service]
    present = pq.read_schema(path).names
    missing = [c for c in columns if c not in present]
    if missing:
        raise TruthError(f"{path}: no column {missing}; simulate the export again with this version")
    truth = pd.read_parquet(path, columns=[key, *columns])
    p = rows[[key]].merge(truth, on=key, how="left", validate="1:1")[list(columns)].to_numpy(np.float64)
    if np.isnan(p).any():
        raise TruthError(
            f"{path}: no {'/'.join(columns)} for {int(np.isnan(p).any(axis=1).sum()):,} of {len(p):,} {service} rows"
        )
    return p


TRAIT_COLUMNS = ("buyer_id", "reliability", "opportunism", "activity", "fraudster", "ring_member")


def buyer_traits(data: Path) -> pd.DataFrame | None:
    """The simulator's latent buyer traits the trust figures read (``TRAIT_COLUMNS``), or None
    when the export has no truth."""
    path = Path(data) / "truth" / "traits.parquet"
    if not path.exists():
        return None
    return pd.read_parquet(path, columns=list(TRAIT_COLUMNS))
