"""Randomized (stochastic) models: expectation over transformation and pass-averaged accuracy.

A model whose outputs differ between two passes on the same input (dropout left on, random
input transformations) is detected by :meth:`robench.models.wrapper.ModelHandle.probe`, and the
runner sets ``ctx.shared["randomized"]``. Attacks then average gradients over ``eot_samples``
passes (Athalye et al. 2018, Sec. 4), and an example's robustness is the share of
:data:`STOCHASTIC_PASSES` fresh passes in which the model classifies it correctly, at the point of
the ball tried (the clean input included) where a first :data:`STOCHASTIC_PASSES` passes found
that share lowest.
"""

from __future__ import annotations

from collections.abc import Callable

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


@torch.no_grad()
def pass_mean_robust(
    logits_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
    passes: int = STOCHASTIC_PASSES,
) -> torch.Tensor:
    """Per-example robustness of a randomized model: the pass-mean accuracy at the point of the ball
    (``x`` or ``x_adv``) the model gets right least often, chosen on ``passes`` passes and measured
    on ``passes`` fresh ones.

    Both points lie in the threat model's ball and each query draws fresh randomness, so an
    adversary who may submit any point of the ball submits the one the model gets right least
    often. Choosing the point and measuring it on the same passes would be biased low (the minimum
    of two noisy estimates: two points at 0.5 come out at 0.41); measured afresh, the share is an
    unbiased estimate for the chosen point, whose true share is at least the lower of the two.
    Where no adversarial point was found (``x_adv`` is ``x``) there is one point and no choice.
    """
    clean = pass_mean_correct(logits_of, x, y, passes)
    moved = ~(x_adv == x).flatten(1).all(dim=1)
    if not bool(moved.any()):
        return clean
    adv = pass_mean_correct(logits_of, x_adv[moved], y[moved], passes)
    pick_adv = (adv < clean[moved]).view(-1, *[1] * (x.ndim - 1))
    out = clean.clone()
    out[moved] = pass_mean_correct(logits_of, torch.where(pick_adv, x_adv[moved], x[moved]), y[moved], passes)
    return out
