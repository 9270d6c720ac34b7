"""Attack objectives, each written to be maximised by the attacker."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench._errors import ConfigError


def _true_and_best_other(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true, others.amax(dim=1)


def margin(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """CW margin: ``max_{j != y} z_j - z_y`` (untargeted) or ``z_t - max_{j != t} z_j`` (targeted).

    Positive exactly when the attack succeeds (Carlini & Wagner 2017).
    """
    if target is None:
        true, other = _true_and_best_other(logits, labels)
        return other - true
    chosen, other = _true_and_best_other(logits, target)
    return chosen - other


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example CE of the true class (untargeted) or minus CE of the target (targeted)."""
    if target is None:
        return F.cross_entropy(logits.float(), labels, reduction="none")
    return -F.cross_entropy(logits.float(), target, reduction="none")


def dlr(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), shift- and scale-invariant.

    Untargeted: ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``; targeted:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with ``z_pi`` the sorted logits.
    """
    needed = 3 if target is None else 4
    if logits.shape[1] < needed:
        raise ConfigError(
            f"the DLR loss needs at least {needed} classes{' (targeted)' if target is not None else ''}, "
            f"the model has {logits.shape[1]}: use loss 'ce' or 'margin'"
        )
    ordered, _ = logits.float().sort(dim=1, descending=True)
    true, other = _true_and_best_other(logits.float(), labels)
    if target is None:
        return -(true - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    chosen = logits.float().gather(1, target[:, None]).squeeze(1)
    return -(true - chosen) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


LOSSES = {"ce": cross_entropy, "margin": margin, "dlr": dlr}
