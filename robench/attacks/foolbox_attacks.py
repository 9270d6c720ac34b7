"""Minimum-norm (FMN, DDN) and decision-based black-box (HopSkipJump, Boundary) attacks via foolbox 3.

Each attack searches, per example, the smallest perturbation that fools the model. robench clips the
attack's output to the bounds, re-checks success with the model and measures the norm itself. An
example is robust at radius ``eps`` when it is clean-correct and no adversarial example of norm
``<= eps`` was found: this gives the distribution of minimal norms (median, quantiles) and the whole
robust-accuracy-vs-eps curve from one run.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from robench._errors import ConfigError
from robench.attacks._optional import isolated_rng, require
from robench.attacks._records import add_standard_records
from robench.attacks.evaluate import choose_targets
from robench.attacks.norms import get_norm
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.models.wrapper import ModelHandle
from robench.registry import register
from robench.results import MetricRecord
from robench.threat_model import EvaluationSpec, ThreatModel

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# Default curve: the threat-model eps times these factors.
EPS_FACTORS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)


def distance(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``delta``; ``L0`` counts changed input coordinates."""
    if norm == "L0":
        return (delta.reshape(delta.shape[0], -1).abs() > 0).sum(dim=1).to(delta.dtype)
    return get_norm(norm).distance(delta)


def empirical_quantiles(values: np.ndarray, quantiles: tuple[float, ...] = QUANTILES) -> list[float]:
    """Empirical quantiles (inverse of the empirical CDF, no interpolation); ``inf`` entries allowed."""
    if values.size == 0:
        return [float("nan")] * len(quantiles)
    return [float(v) for v in np.quantile(values, quantiles, method="inverted_cdf")]


def accuracy_curve(correct: torch.Tensor, min_norm: torch.Tensor, grid: list[float]) -> list[int]:
    """Robust counts at each radius: clean-correct examples whose minimal adversarial norm exceeds it."""
    return [int((correct & (min_norm > eps)).sum()) for eps in grid]


class _MinNormParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    eps_grid: tuple[float, ...] | None = Field(
        default=None, description="radii of the robust-accuracy curve (default: threat eps x 0..4)"
    )


class MinNormEvaluation:
    """Shared evaluation of minimum-norm attacks; subclasses build the foolbox attack."""

    norms: ClassVar[tuple[str, ...]] = ("L2",)
    knowledge: ClassVar[str] = "white-box"

    @classmethod
    def attack_norm(cls, params: Any, threat_norm: str) -> str:
        """Norm the attack minimises."""
        if threat_norm not in cls.norms:
            raise ConfigError(f"{cls.__name__} minimises {'/'.join(cls.norms)}, the threat model's norm is {threat_norm}")
        return threat_norm

    @classmethod
    def build(cls, fb: Any, params: Any, norm: str) -> Any:  # pragma: no cover - abstract
        """The foolbox attack."""
        raise NotImplementedError

    @classmethod
    def evaluate(
        cls, model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: Any, ctx: EvalContext
    ) -> EvaluationOutput:
        """Minimal norms per example, their quantiles and the accuracy-vs-eps curve."""
        fb = require("foolbox")
        adversary = threat.adversary
        assert adversary is not None
        norm = cls.attack_norm(params, adversary.norm)
        attack = cls.build(fb, params, norm)
        targeted = adversary.goal == "targeted"
        fmodel = fb.PyTorchModel(model.module, bounds=tuple(adversary.bounds), device=model.device)

        def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            clean_logits = model.predict_logits(x)
            correct = clean_logits.argmax(dim=1) == y
            target = choose_targets(clean_logits, y, adversary.targets, generator) if targeted else None
            attacked = correct.nonzero().squeeze(1)
            x_adv = x.clone()
            if attacked.numel():
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
                if targeted:
                    criterion = fb.criteria.TargetedMisclassification(target[attacked])
                else:
                    criterion = fb.criteria.Misclassification(y[attacked])
                with isolated_rng(x.device):
                    torch.manual_seed(seed)
                    _, clipped, _ = attack(fmodel, x[attacked], criterion, epsilons=None)
                x_adv[attacked] = clipped.detach().clamp(*adversary.bounds)
            logits = model.predict_logits(x_adv)
            predicted = logits.argmax(dim=1)
            fooled = (predicted == target) if targeted else (predicted != y)
            min_norm = distance(x_adv - x, norm)
            # Not fooled: no adversarial example found at any radius; clean errors need none.
            min_norm = torch.where(fooled & correct, min_norm, torch.full_like(min_norm, float("inf")))
            min_norm = torch.where(correct, min_norm, torch.zeros_like(min_norm))
            return {"correct": correct, "min_norm": min_norm, "adv_probs": logits.float().softmax(dim=1),
                    "clean_probs": clean_logits.float().softmax(dim=1), "labels": y}  # fmt: skip

        out = ctx.map_batches("min_norm", data, batch, model.counter, desc=f"attack {spec.key}")
        return _records(cls, spec, params, adversary, norm, out, ctx, data.num_classes)


def _records(cls, spec, params, adversary, norm, out, ctx, num_classes) -> EvaluationOutput:
    key = f"attacks/{spec.key}"
    correct, min_norm, labels = out["correct"], out["min_norm"], out["labels"]
    n = int(correct.numel())
    same_norm = norm == adversary.norm
    condition = {"attack": spec.key, "norm": norm, "eps": adversary.eps if same_norm else None,
                 "goal": adversary.goal, "kind": cls.knowledge}  # fmt: skip
    output = EvaluationOutput(resolved={**params.model_dump(mode="json"), "norm": norm})
    attacked = min_norm[correct].numpy()
    values = empirical_quantiles(attacked)
    for q, value in zip(QUANTILES, values):
        output.records.append(
            MetricRecord(
                evaluation=key, name="min_perturbation_norm_quantile",
                value=value if np.isfinite(value) else None, n=int(attacked.size),
                condition={**condition, "quantile": q}, unit=norm.lower(),
            )
        )  # fmt: skip
    finite = attacked[np.isfinite(attacked)]
    if finite.size:
        output.records.append(
            MetricRecord(evaluation=key, name="min_perturbation_norm_median_of_found", value=float(np.median(finite)),
                         n=int(finite.size), condition=condition, unit=norm.lower())
        )  # fmt: skip
    if params.eps_grid:
        grid = sorted(params.eps_grid)
    elif same_norm:
        grid = [adversary.eps * f for f in EPS_FACTORS]
    else:
        grid = sorted({0.0, *[v for v in empirical_quantiles(finite, tuple(np.linspace(0.05, 1, 20))) if np.isfinite(v)]})
    counts = accuracy_curve(correct, min_norm, grid)
    for eps, count in zip(grid, counts):
        output.records.append(MetricRecord.proportion(key, "robust_accuracy_at_eps", count, n, {**condition, "eps": eps}))
    if same_norm:
        robust = correct & (min_norm > adversary.eps)
        fooled_in_ball = correct & ~robust
        adv_probs = torch.where(fooled_in_ball[:, None], out["adv_probs"], out["clean_probs"])
        add_standard_records(
            output, ctx, key, condition, correct=correct, robust=robust, labels=labels, adv_probs=adv_probs,
            distance=torch.where(fooled_in_ball, min_norm, torch.zeros_like(min_norm)), num_classes=num_classes,
            norm_unit=norm.lower(),
        )  # fmt: skip
    else:
        output.records.append(MetricRecord.proportion(key, "clean_accuracy", int(correct.sum()), n, condition))
        output.warnings.append(f"{spec.key} minimises {norm}, the threat model's norm is {adversary.norm}: no robust accuracy at its eps")
    output.artifacts = {
        "kind": "min_norm",
        "norm": norm,
        "curve": {"eps": grid, "robust_accuracy": [c / n if n else None for c in counts]},
        "quantiles": dict(zip(map(str, QUANTILES), [v if np.isfinite(v) else None for v in values])),
        "not_found": int(np.isinf(attacked).sum()),
    }
    return output


class FMNParams(_MinNormParams):
    """Parameters of the ``fmn`` entry (Pintor et al. 2021)."""

    norm: Literal["L0", "L1", "L2", "Linf"] | None = Field(default=None, description="default: the threat model's norm")
    steps: int = Field(default=100, gt=0, le=100_000)
    max_stepsize: float = Field(default=1.0, gt=0)
    gamma: float = Field(default=0.05, gt=0, lt=1)
    binary_search_steps: int = Field(default=10, ge=0, le=100)


@register("attack", "fmn", params=FMNParams, tags=("white-box", "minimum-norm"))
class FMN(MinNormEvaluation):
    """Fast Minimum-Norm attack (L0/L1/L2/Linf): minimal adversarial norms and the eps curve."""

    norms = ("L0", "L1", "L2", "Linf")

    @classmethod
    def attack_norm(cls, params: Any, threat_norm: str) -> str:  # noqa: D102
        return params.norm or threat_norm

    @classmethod
    def build(cls, fb: Any, params: Any, norm: str) -> Any:  # noqa: D102
        name = {"L0": "L0FMNAttack", "L1": "L1FMNAttack", "L2": "L2FMNAttack", "Linf": "LInfFMNAttack"}[norm]
        return getattr(fb.attacks, name)(
            steps=params.steps, max_stepsize=params.max_stepsize, gamma=params.gamma,
            binary_search_steps=params.binary_search_steps,
        )  # fmt: skip


class DDNParams(_MinNormParams):
    """Parameters of the ``ddn`` entry (Rony et al. 2019)."""

    steps: int = Field(default=100, gt=0, le=100_000)
    init_epsilon: float = Field(default=1.0, gt=0)
    gamma: float = Field(default=0.05, gt=0, lt=1)


@register("attack", "ddn", params=DDNParams, tags=("white-box", "minimum-norm"))
class DDN(MinNormEvaluation):
    """Decoupled Direction and Norm (L2): minimal adversarial norms and the eps curve."""

    @classmethod
    def build(cls, fb: Any, params: Any, norm: str) -> Any:  # noqa: D102
        return fb.attacks.DDNAttack(steps=params.steps, init_epsilon=params.init_epsilon, gamma=params.gamma)


class HopSkipJumpParams(_MinNormParams):
    """Parameters of the ``hop_skip_jump`` entry (Chen et al. 2020)."""

    steps: int = Field(default=64, gt=0, le=10_000)
    initial_gradient_eval_steps: int = Field(default=100, gt=0)
    max_gradient_eval_steps: int = Field(default=10_000, gt=0)
    gamma: float = Field(default=1.0, gt=0)


@register("attack", "hop_skip_jump", params=HopSkipJumpParams, tags=("decision-based", "black-box", "minimum-norm"))
class HopSkipJump(MinNormEvaluation):
    """HopSkipJump: decision-based (labels only) minimum-norm attack, L2 or Linf."""

    norms = ("L2", "Linf")
    knowledge = "decision-based"

    @classmethod
    def build(cls, fb: Any, params: Any, norm: str) -> Any:  # noqa: D102
        return fb.attacks.HopSkipJumpAttack(
            steps=params.steps, initial_gradient_eval_steps=params.initial_gradient_eval_steps,
            max_gradient_eval_steps=params.max_gradient_eval_steps, gamma=params.gamma,
            constraint="l2" if norm == "L2" else "linf",
        )  # fmt: skip


class BoundaryParams(_MinNormParams):
    """Parameters of the ``boundary`` entry (Brendel et al. 2018)."""

    steps: int = Field(default=25_000, gt=0, le=1_000_000)
    spherical_step: float = Field(default=0.01, gt=0)
    source_step: float = Field(default=0.01, gt=0)


@register("attack", "boundary", params=BoundaryParams, tags=("decision-based", "black-box", "minimum-norm"))
class Boundary(MinNormEvaluation):
    """Boundary attack: decision-based (labels only) minimum-L2 attack."""

    knowledge = "decision-based"

    @classmethod
    def build(cls, fb: Any, params: Any, norm: str) -> Any:  # noqa: D102
        return fb.attacks.BoundaryAttack(steps=params.steps, spherical_step=params.spherical_step, source_step=params.source_step)
