"""Randomized (stochastic) models: expectation over transformation and pass-averaged accuracy.

A model whose outputs differ between two passes on the same input (dropout left on, random
input transformations) is detected by :meth:`robench.models.wrapper.ModelHandle.probe`, and the
runner sets ``ctx.shared["randomized"]``. Attacks then average gradients over ``eot_samples``
passes (Athalye et al. 2018, Sec. 4), and an example's robustness is the share of
:data:`STOCHASTIC_PASSES` fresh passes in which the model classifies it correctly, at the point of
the ball tried (the clean input included) where a first :data:`STOCHASTIC_PASSES` passes found
that share lowest (:class:`PassMeans`). Clean accuracy is then the pass mean at the clean input,
on the same footing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_EOT_SAMPLES = 20
STOCHASTIC_PASSES = 10


@torch.no_grad()
def pass_mean_correct(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, passes: int = STOCHASTIC_PASSES
) -> torch.Tensor:
    """Per-example share of ``passes`` stochastic forward passes that classify ``x`` as ``y``."""
    hits = torch.zeros(len(y), device=y.device)
    for _ in range(passes):
        hits += (model(x).argmax(dim=1) == y).float()
    return hits / passes


@dataclass(frozen=True)
class PassMeans:
    """A randomized model's per-example pass means under one attack (or the worst over several).

    Attributes:
        robust: Share of passes right at the adversary's chosen point: the robustness.
        clean: Share of passes right at the clean input: the clean pass-mean accuracy.
    """

    robust: torch.Tensor
    clean: torch.Tensor

    def outputs(self) -> dict[str, torch.Tensor]:
        """The fields as :meth:`~robench.context.EvalContext.map_batches` outputs (``robust_rate``...)."""
        return {"robust_rate": self.robust, "clean_rate": self.clean}

    @classmethod
    def from_outputs(cls, out: dict[str, torch.Tensor]) -> PassMeans | None:
        """The inverse of :meth:`outputs` (``None`` when ``out`` has none: a deterministic model)."""
        if "robust_rate" not in out:
            return None
        return cls(out["robust_rate"], out["clean_rate"])

    def skipping(self, attacked: torch.Tensor) -> PassMeans:
        """Examples outside ``attacked`` (an attack that skipped them) count as not robust."""
        return PassMeans(torch.where(attacked, self.robust, torch.zeros_like(self.robust)), self.clean)


@torch.no_grad()
def pass_mean_robust(
    logits_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
    passes: int = STOCHASTIC_PASSES,
) -> PassMeans:
    """Per-example robustness of a randomized model: the pass-mean accuracy at the point of the ball
    (``x`` or ``x_adv``) the model gets right least often, chosen on ``passes`` passes and measured
    on ``passes`` fresh ones; and the clean pass mean (the choice passes at ``x``).

    Both points lie in the threat model's ball and each query draws fresh randomness, so an
    adversary who may submit any point of the ball submits the one the model gets right least
    often. Choosing the point and measuring it on the same passes would be biased low (the minimum
    of two noisy estimates: two points at 0.5 come out at 0.41); measured afresh, the share is an
    unbiased estimate for the chosen point, whose true share is at least the lower of the two.
    Where no adversarial point was found (``x_adv`` is ``x``) there is one point and no choice:
    its robustness is its clean pass mean.
    """
    clean = pass_mean_correct(logits_of, x, y, passes)
    moved = ~(x_adv == x).flatten(1).all(dim=1)
    if not bool(moved.any()):
        return PassMeans(clean, clean)
    adv = pass_mean_correct(logits_of, x_adv[moved], y[moved], passes)
    pick_adv = (adv < clean[moved]).view(-1, *[1] * (x.ndim - 1))
    robust = clean.clone()
    robust[moved] = pass_mean_correct(logits_of, torch.where(pick_adv, x_adv[moved], x[moved]), y[moved], passes)
    return PassMeans(robust, clean)
