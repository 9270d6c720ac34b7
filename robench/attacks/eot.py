"""Randomized (stochastic) models: expectation over transformation and pass-averaged accuracy.

A model whose outputs differ between two passes on the same input (dropout left on, random
input transformations) is detected by :meth:`robench.models.wrapper.ModelHandle.probe`, and the
runner sets ``ctx.shared["randomized"]``. Attacks then average gradients over ``eot_samples``
passes (Athalye et al. 2018, Sec. 4), and an example's robustness is the share of
:data:`STOCHASTIC_PASSES` passes in which the model classifies it correctly, on the point of the
ball tried (the clean input included) where that share is lowest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DEFAULT_EOT_SAMPLES = 20
STOCHASTIC_PASSES = 10


@torch.no_grad()
def pass_mean_correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int = STOCHASTIC_PASSES) -> torch.Tensor:
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
    """Per-example robustness of a randomized model: the lower of the pass-mean accuracies on ``x``
    and on ``x_adv``.

    Both points lie in the threat model's ball, and each query of a randomized model draws fresh
    randomness, so an adversary who may submit any point of the ball is best served by the one the
    model gets right least often: the example's robustness is the minimum over the points tried of
    the share of passes that classify it as ``y``. AutoAttack's chain takes the same minimum over
    the clean input and every adversarial input of every attack, so the estimators agree.
    """
    clean = torch.zeros(len(y), device=y.device)
    adv = torch.zeros(len(y), device=y.device)
    for _ in range(passes):
        clean += (logits_of(x).argmax(dim=1) == y).float()
        adv += (logits_of(x_adv).argmax(dim=1) == y).float()
    # where no adversarial point was found (x_adv is x) there is one point, not two: the minimum of
    # two estimates of the same share would be biased low
    same = (x_adv == x).flatten(1).all(dim=1)
    return torch.where(same, clean, torch.minimum(clean, adv)) / passes
