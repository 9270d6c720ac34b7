"""The attack contract (foolbox-style).

An attack is a small class with a keyword-only constructor and one :meth:`Attack.run`. The final
:meth:`Attack.__call__` projects whatever ``run`` returns onto the threat-model ball and the input
bounds and decides success by querying the model itself: an attack's own bookkeeping is never
trusted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, final

import torch

from robench.attacks.norms import Norm, get_norm
from robench.models.wrapper import check_logits

UNFOOLED_AT_CLEAN = "the clean input"
"""How an attack's ``procedure()["unfooled_at"]`` begins when it leaves an example it did not fool
unperturbed: calibration under that attack scores those examples at their clean confidence."""


@dataclass
class AttackResult:
    """Outcome of an attack on a batch.

    Attributes:
        x_adv: Perturbed inputs, inside the ball and the bounds.
        success: The model's own verdict on ``x_adv`` (misclassified, or classified as the target).
        logits: The model's logits on ``x_adv``.
        distance: ``||x_adv - x||`` in the threat-model norm.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    logits: torch.Tensor
    distance: torch.Tensor


def is_success(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Misclassification (untargeted) or classification as ``target`` (targeted)."""
    predicted = logits.argmax(dim=1)
    return predicted != labels if target is None else predicted == target


class Attack(ABC):
    """Base class of robench's attacks (see the module docstring)."""

    #: Whether every example is attacked, including those one pass of the model already gets wrong
    #: (a randomized model's examples that an attack skips are counted as not robust).
    attacks_every_example: bool = False

    #: What :attr:`last_progress` counts (``"gradient steps"``), for an attack that records it.
    progress_unit: str | None = None

    #: After a call: per example, how far into its budget (in :attr:`progress_unit`, over all restarts)
    #: the attack's own bookkeeping first saw it fooled (``inf``: never; 0 for an example fooled at its
    #: start, the clean input included); ``None`` where the attack does not track it. The evaluator
    #: reconciles it with the final verdict (:func:`robench.attacks.convergence.curve`).
    last_progress: torch.Tensor | None = None

    #: After a call of an attack that restarts: per example, the restart (from 0) in which its
    #: bookkeeping first saw it fooled (-1: never). A break at a restart's random start and one at the
    #: previous restart's last iterate share a :attr:`last_progress` (no gradient step between them);
    #: this tells them apart. ``None`` where not tracked.
    last_progress_restart: torch.Tensor | None = None

    def progress_budget(self) -> int | None:
        """The budget :attr:`last_progress` runs to (all restarts' steps), ``None`` where not tracked."""
        return None

    def progress_restart_every(self) -> int | None:
        """Iterations of :attr:`last_progress` per restart, where the attack restarts (``None``: it does not)."""
        return None

    def for_randomized_model(self) -> Attack:
        """This attack set up for a randomized model: attacking every example where it can (one
        pass's verdict that an example is already misclassified would exempt it by chance). The
        default leaves the attack as it is; it then leaves a skipped example at ``x``."""
        return self

    def procedure(self, eps: float) -> dict[str, Any]:
        """How this attack runs at radius ``eps``, as recorded for the report (the facts of the run,
        not the defaults): ``step_size`` (absolute, in the threat model's norm; ``None`` without a
        fixed step), ``step_size_rule``, ``random_start``, ``restarts``, ``early_stopping`` (whether
        it stops attacking an example once it is fooled), ``early_stopping_rule`` and ``unfooled_at``
        (the input an example the attack did not fool is scored at, for calibration under attack: the
        attack's best point, or the clean input). ``{}``: not stated."""
        return {}

    @abstractmethod
    def run(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float],
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Return candidate adversarial inputs for ``x`` (same shape)."""

    @final
    def __call__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        norm: str | Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        """Run the attack, project onto the ball and the bounds, and re-check success with the model."""
        norm = get_norm(norm)
        self.last_progress = self.last_progress_restart = None  # a run that does not track it leaves no earlier batch's behind
        with torch.enable_grad():
            candidate = self.run(model, x, y, norm=norm, eps=eps, bounds=bounds, target=target, generator=generator)
        x_adv = (x + norm.project(candidate.detach() - x, eps)).clamp(*bounds)
        with torch.no_grad():
            logits = model(x_adv)
        check_logits(logits, None)  # argmax(NaN) is class 0: a NaN would count as a misclassification
        return AttackResult(
            x_adv=x_adv,
            success=is_success(logits, y, target),
            logits=logits,
            distance=norm.distance(x_adv - x),
        )
