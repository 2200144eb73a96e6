"""Registry aliases and the promotion gate: a new version becomes champion only when it is better."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTE_MODES = ("auto", "never", "force")


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and why."""

    promote: bool
    reason: str


def gate(
    mode: str,
    new_auc: float,
    new_monotone: bool,
    champion_auc: float | None,
    champion_comparable: bool = True,
) -> GateResult:
    """Decide promotion of a new version.

    Args:
        mode: ``auto`` (promote when better), ``never`` or ``force``.
        new_auc: The new model's AUC on the test window.
        new_monotone: Whether its star bad rates strictly fall on the test window.
        champion_auc: The champion's AUC on the same rows, or ``None`` when there is no champion.
        champion_comparable: False when the champion cannot be scored on these rows
            (for example it needs signals this build no longer produces).
    """
    if mode not in PROMOTE_MODES:
        raise ValueError(f"promote must be one of {PROMOTE_MODES}, got {mode!r}")
    if mode == "force":
        return GateResult(True, "forced by --promote force")
    if mode == "never":
        return GateResult(False, "--promote never")
    if not new_monotone:
        return GateResult(False, "star bad rates do not strictly fall on the test window")
    if champion_auc is None:
        if not champion_comparable:
            return GateResult(
                False, "the champion cannot be scored on this data; promote with --promote force"
            )
        return GateResult(True, "no champion yet")
    if new_auc > champion_auc:
        return GateResult(
            True, f"AUC {new_auc:.4f} beats the champion's {champion_auc:.4f} on the same test rows"
        )
    return GateResult(False, f"AUC {new_auc:.4f} does not beat the champion's {champion_auc:.4f}")


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version holding the champion alias, or ``None``."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def set_aliases(client: MlflowClient, name: str, version: str, promote: bool) -> None:
    """The new version becomes challenger, and champion when promoted."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
