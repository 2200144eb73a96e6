"""Registry aliases and the promotion gate: a new version becomes champion only when the yardsticks
the product is for say it is no worse than the champion, and better somewhere."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from training.evaluation.yardsticks import Estimate

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTE_MODES = ("auto", "never", "force")


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and why."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class Comparison:
    """One yardstick of the new version against the champion's, on the same rows.

    Attributes:
        name: The yardstick (``rating_auc``, ``presale_loss_ratio_at_rule_volume``...).
        higher_is_better: True for AUC, False for losses.
        new: The new version's value.
        champion: The champion's value.
        diff: ``new - champion`` with its paired bootstrap interval (same buyers resampled).
    """

    name: str
    higher_is_better: bool
    new: float
    champion: float
    diff: Estimate

    @property
    def worse(self) -> bool:
        """Worse than the champion beyond the bootstrap interval."""
        return self.diff.high < 0 if self.higher_is_better else self.diff.low > 0

    @property
    def better(self) -> bool:
        """Better than the champion on the point estimate."""
        return self.new > self.champion if self.higher_is_better else self.new < self.champion

    def metrics(self) -> dict[str, float]:
        """``gate_<name>_new``, ``_champion`` and ``_diff`` with its interval."""
        return {
            f"gate_{self.name}_new": self.new,
            f"gate_{self.name}_champion": self.champion,
            **self.diff.metrics(f"gate_{self.name}_diff"),
        }

    def __str__(self) -> str:
        verdict = "worse" if self.worse else "better" if self.better else "equal"
        return f"{self.name} {self.new:.4f} vs champion {self.champion:.4f} (diff {self.diff}: {verdict})"


def gate(
    mode: str,
    new_monotone: bool,
    comparisons: list[Comparison] | None,
    champion_comparable: bool = True,
) -> GateResult:
    """Decide promotion of a new version.

    A new version becomes champion only when it is no worse than the champion beyond the
    bootstrap interval on every yardstick (the rating's AUC and each service's expected loss at
    the legacy rule's volume, on the same test rows) and better on at least one point estimate.

    Args:
        mode: ``auto`` (promote when the yardsticks say so), ``never`` or ``force``.
        new_monotone: Whether its star bad rates strictly fall on the test window.
        comparisons: The yardsticks against the champion, or ``None`` when there is no champion.
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
    if not champion_comparable:
        return GateResult(False, "the champion cannot be scored on this data; promote with --promote force")
    if comparisons is None:
        return GateResult(True, "no champion yet")
    worse = [c for c in comparisons if c.worse]
    if worse:
        return GateResult(False, "worse than the champion beyond the interval: " + "; ".join(map(str, worse)))
    if not any(c.better for c in comparisons):
        return GateResult(
            False, "does not beat the champion on any yardstick: " + "; ".join(map(str, comparisons))
        )
    return GateResult(
        True, "no worse than the champion on any yardstick: " + "; ".join(map(str, comparisons))
    )


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
