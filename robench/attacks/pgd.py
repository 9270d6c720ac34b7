"""Projected gradient descent (Madry et al. 2018) and FGSM (Goodfellow et al. 2015), any Lp norm.

Under L1, PGD's sparse steps (the largest gradient coordinates) stall where those coordinates meet the
[0, 1] box (Croce & Hein 2021, "Mind the box"): its robust accuracy is an optimistic upper bound at any
budget, and the report's checklist never calls it strong; ``autoattack`` (APGD-L1) is the L1 attack."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from robench._errors import ConfigError
from robench.attacks._speed import StepModel
from robench.attacks.base import Attack, is_success
from robench.attacks.losses import LOSSES, margin
from robench.attacks.norms import Norm
from robench.models.wrapper import check_logits, check_step
from robench.registry import register
from robench.threat_model import Schema


class PGDParams(Schema):
    """Parameters of :class:`PGD`."""

    steps: int = Field(default=40, gt=0, le=100_000)
    restarts: int = Field(default=1, ge=1, le=1000)
    rel_step_size: float | None = Field(
        default=None, gt=0, le=10, description="step size as a fraction of eps (default 2.5 / steps, Madry et al. 2018)"
    )
    random_start: bool = True
    loss: Literal["ce", "margin", "dlr"] = "ce"
    l1_sparsity: float = Field(default=0.95, ge=0, lt=1, description="L1 only: share of coordinates left out of a step")
    eot_samples: int = Field(default=1, ge=1, le=1000, description="gradients averaged per step (randomized models)")
    mode: Literal["exact", "fast"] = Field(
        default="exact", description="fast: iterations in bf16 autocast + channels_last; success decided in fp32"
    )
    compile: bool = Field(default=False, description="torch.compile the model for the attack iterations")


@register("attack", "pgd", params=PGDParams)
class PGD(Attack):
    """PGD with random start, restarts, CE/margin/DLR loss and per-example best tracking.

    Records :attr:`~robench.attacks.base.Attack.last_progress` in gradient steps over all restarts
    (not for a randomized model, whose one-pass verdicts would make it noise)."""

    progress_unit = "gradient steps"

    def __init__(
        self,
        *,
        steps: int = 40,
        restarts: int = 1,
        rel_step_size: float | None = None,
        random_start: bool = True,
        loss: str = "ce",
        l1_sparsity: float = 0.95,
        eot_samples: int = 1,
        mode: str = "exact",
        compile: bool = False,
    ) -> None:
        if min(steps, restarts, eot_samples) < 1:
            raise ConfigError(f"pgd: steps, restarts and eot_samples must be at least 1, got {steps}, {restarts}, {eot_samples}")
        self.steps = steps
        self.restarts = restarts
        self.rel_step_size = rel_step_size if rel_step_size is not None else 2.5 / steps
        self.random_start = random_start
        self.loss = LOSSES[loss]
        self.l1_sparsity = l1_sparsity
        self.eot_samples = eot_samples
        self.mode = mode
        self.compile = compile
        self._step_model: StepModel | None = None

    def for_randomized_model(self) -> PGD:
        self.attacks_every_example = True  # no example exempted by one pass's verdict, in any restart
        return self

    def procedure(self, eps: float) -> dict[str, Any]:
        stops = self.restarts > 1 and not self.attacks_every_example
        if stops:
            rule = "an example fooled by a restart is not attacked by the later ones; every restart runs all its steps"
        elif self.attacks_every_example:
            rule = "none: every restart attacks every example, each for all its steps (randomized model)"
        else:
            rule = "none: one restart, all its steps"
        return {
            "step_size": self.rel_step_size * eps, "step_size_rule": f"fixed, {self.rel_step_size:.4g} x eps",
            "random_start": self.random_start, "restarts": self.restarts, "early_stopping": stops, "early_stopping_rule": rule,
            "unfooled_at": "every example is attacked by every restart, its highest-loss iterate kept (randomized model)"
            if self.attacks_every_example else "its highest-loss iterate (the clean input for an example misclassified clean, which is not attacked)",
        }  # fmt: skip

    def progress_budget(self) -> int | None:
        return None if self.attacks_every_example else self.steps * self.restarts

    def progress_restart_every(self) -> int | None:
        return self.steps if self.restarts > 1 and not self.attacks_every_example else None

    def _stepper(self, model: torch.nn.Module) -> StepModel:
        if self._step_model is None or self._step_model.model is not model:
            self._step_model = StepModel(model, self.mode, self.compile)  # type: ignore[arg-type]
        return self._step_model

    def _logits_and_gradient(self, model, x_adv, y, target) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean logits and mean input gradient of the loss over ``eot_samples`` passes."""
        x_adv = x_adv.detach().requires_grad_(True)
        total = torch.zeros_like(x_adv)
        logits_sum = None
        for _ in range(self.eot_samples):
            logits = model(x_adv)
            check_logits(logits, None)  # before its gradient: a NaN loss has a NaN gradient
            total += torch.autograd.grad(self.loss(logits, y, target).sum(), x_adv)[0]
            logits_sum = logits.detach() if logits_sum is None else logits_sum + logits.detach()
        assert logits_sum is not None  # eot_samples >= 1 (checked by the constructor)
        return logits_sum / self.eot_samples, total / self.eot_samples

    def run(self, model, x, y, *, norm: Norm, eps, bounds, target, generator):
        stepper = self._stepper(model)
        with stepper.prepared():
            return self._run(stepper, x, y, norm=norm, eps=eps, bounds=bounds, target=target, generator=generator)

    def _run(self, model: StepModel, x, y, *, norm: Norm, eps, bounds, target, generator):
        # Which examples are attacked, and whether a restart succeeded, is decided by the fp32 model
        # (model.verdict); in fast mode the bf16 scores only pick the best iterate within a restart.
        best = x.clone()
        if self.attacks_every_example:
            # a randomized model: one pass's verdict on x would exempt an example from the attack (and
            # keep x as its best point) by chance; every example is attacked, the best iterate kept
            best_score = torch.full((len(x),), -torch.inf, device=x.device)
        else:
            with torch.no_grad():
                best_score = margin(model.verdict(x).float(), y, target)
        succeeded = best_score > 0
        # the iteration (gradient steps so far, over all restarts) at which each example was first seen fooled
        first = torch.where(succeeded, 0.0, torch.inf)
        first_restart = torch.where(succeeded, 0, -1)  # and in which restart (a random start's break is its own)
        step_size = self.rel_step_size * eps
        everyone = torch.arange(len(x), device=x.device)
        for restart in range(self.restarts):
            # a randomized model's examples are attacked by every restart: a noisy verdict that an
            # earlier restart succeeded would exempt them by chance (the best iterate is still kept)
            active = everyone if self.attacks_every_example else (~succeeded).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            x0, y0 = x[active], y[active]
            t0 = None if target is None else target[active]
            delta = norm.random(x0, eps, generator) if self.random_start else torch.zeros_like(x0)
            x_adv = (x0 + norm.project(delta, eps)).clamp(*bounds)
            # Each iterate is scored from the logits of the forward pass that computes its gradient,
            # so best tracking costs one extra forward per restart, not one per step.
            for step in range(self.steps + 1):
                if step < self.steps:
                    logits, grad = self._logits_and_gradient(model, x_adv, y0, t0)
                else:  # the last iterate, scored like the others: over eot_samples passes (a single pass of a
                    # randomized model is noisier than their means, and the maximum would favour it by luck)
                    with torch.no_grad():
                        logits = model.verdict(x_adv)
                        for _ in range(self.eot_samples - 1):
                            logits = logits + model.verdict(x_adv)
                        logits = logits / self.eot_samples
                check_logits(logits, None)  # a NaN margin never "improves": the example would pass as robust
                score = margin(logits.float(), y0, t0)
                improved = score > best_score[active]
                new = first[active].isinf() & (score > 0)
                first[active] = torch.where(new, float(restart * self.steps + step), first[active])
                first_restart[active] = torch.where(new, restart, first_restart[active])
                best_score[active] = torch.where(improved, score, best_score[active])
                best[active] = torch.where(improved.view(-1, *[1] * (x.ndim - 1)), x_adv, best[active])
                if step < self.steps:
                    move = norm.step(grad, step_size, self.l1_sparsity)
                    check_step(grad, move)
                    x_adv = x_adv + move
                    x_adv = (x0 + norm.project(x_adv - x0, eps)).clamp(*bounds).detach()
            if model.mode == "fast":  # a bf16-scored best iterate must fool the fp32 model to count
                with torch.no_grad():
                    best_score[active] = margin(model.verdict(best[active]).float(), y0, t0)
                # the fp32 verdict decides: a bf16 "fooled" it overrules is attacked again by the next restart;
                # one the bf16 scores missed counts from the end of this restart
                fooled = best_score[active] > 0
                seen = first[active]
                first[active] = torch.where(fooled, torch.where(seen.isinf(), float((restart + 1) * self.steps), seen), torch.inf)
                first_restart[active] = torch.where(fooled, torch.where(seen.isinf(), restart, first_restart[active]), -1)
            succeeded = best_score > 0
        if not self.attacks_every_example:
            self.last_progress = first
            self.last_progress_restart = first_restart if self.restarts > 1 else None
        return best


class FGSMParams(Schema):
    """Parameters of :class:`FGSM`."""

    loss: Literal["ce", "margin", "dlr"] = "ce"
    l1_sparsity: float = Field(default=0.95, ge=0, lt=1, description="L1 only: share of coordinates left out of the step")


@register("attack", "fgsm", params=FGSMParams)
class FGSM(Attack):
    """Fast gradient (sign) method: one full-eps step along the norm's steepest direction (for L1, as
    PGD's step, the top ``1 - l1_sparsity`` share of gradient coordinates: spread over every pixel,
    an L1 budget moves each by almost nothing)."""

    attacks_every_example = True  # one step from every input

    def __init__(self, *, loss: str = "ce", l1_sparsity: float = 0.95) -> None:
        self.loss = LOSSES[loss]
        self.l1_sparsity = l1_sparsity

    def procedure(self, eps: float) -> dict[str, Any]:
        return {"step_size": eps, "step_size_rule": "one step of eps", "random_start": False, "restarts": 1,
                "early_stopping": False, "early_stopping_rule": "none: one step from every input",
                "unfooled_at": "its one step (every example is attacked)"}  # fmt: skip

    def run(self, model, x, y, *, norm: Norm, eps, bounds, target, generator):
        x_adv = x.detach().requires_grad_(True)
        logits = model(x_adv)
        check_logits(logits, None)  # the final check sees another pass: NaN here left the example at x
        grad = torch.autograd.grad(self.loss(logits, y, target).sum(), x_adv)[0]
        move = norm.step(grad, eps, self.l1_sparsity)
        check_step(grad, move)
        return (x + move).clamp(*bounds)


__all__ = ["FGSM", "PGD", "is_success"]
