"""The ``clean`` section: accuracy on the unperturbed examples."""

from __future__ import annotations

from typing import Any

import torch

from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.models.wrapper import ModelHandle
from robench.registry import register
from robench.results import MetricRecord, binary_outcomes
from robench.threat_model import ThreatModel


def wants_log_probs(threat: ThreatModel | None, condition: str | None = None) -> bool:
    """Whether the probability hand-offs should carry log-probabilities: temperature scaling fits on
    the clean ones and rescales every condition it scores (``condition``: ``attacks``,
    ``corruptions``; ``None``: the clean hand-off) from them; float32 probabilities underflow to 0
    beyond a logit gap of about 87, which would cut the fit and the rescaled NLL under attack."""
    calibration = threat.evaluations.calibration if threat is not None else None
    if calibration is None or not calibration.temperature_scaling:
        return False
    return condition is None or condition in calibration.conditions


def softmax_outputs(logits: torch.Tensor, log_probs: bool, prefix: str = "") -> dict[str, torch.Tensor]:
    """``{prefix}probs`` (float32 softmax) and, when asked, ``{prefix}log_probs`` (log-softmax, which
    keeps what float32 probabilities lose below 1e-38): the probability part of every hand-off."""
    logits = logits.float()
    out = {f"{prefix}probs": logits.softmax(dim=1)}
    if log_probs:
        out[f"{prefix}log_probs"] = logits.log_softmax(dim=1)
    return out


def predictions(model: ModelHandle, log_probs: bool = False) -> Any:
    """A :meth:`~robench.context.EvalContext.map_batches` function giving ``probs`` (softmax) and
    ``labels`` per example, and ``log_probs`` when asked: the shape of every probability hand-off."""

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {**softmax_outputs(model.predict_logits(x), log_probs), "labels": y}

    return batch


@register("evaluation", "clean")
def evaluate_clean(model: ModelHandle, data: Dataset, threat: ThreatModel, spec: Any, ctx: EvalContext) -> EvaluationOutput:
    """Top-1 accuracy, overall and per class, with 95% Clopper-Pearson intervals.

    For a randomized model, each example's share of :data:`~robench.attacks.eot.STOCHASTIC_PASSES`
    passes that classify it right (as robust accuracy is counted); the probabilities handed on are
    those of one pass (calibration scores single predictions)."""
    from robench.attacks.eot import STOCHASTIC_PASSES, pass_mean_correct

    randomized = bool(ctx.shared.get("randomized"))
    one_pass = predictions(model, wants_log_probs(threat))

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = one_pass(x, y, generator)
        if randomized:
            out["rate"] = pass_mean_correct(model.predict_logits, x, y)
        return out

    out = ctx.map_batches("predict", data, batch, model.counter, desc="clean")
    rate = out.pop("rate", None)
    probs, labels = out["probs"], out["labels"]
    correct = probs.argmax(dim=1) == labels
    shares = correct.float() if rate is None else rate
    condition: dict[str, Any] = {} if rate is None else {"stochastic_passes": True}
    output = EvaluationOutput()
    output.records.append(MetricRecord.shares("clean", "accuracy", shares, condition))
    if (packed := binary_outcomes(shares)) is not None:  # a randomized model's pass means seldom are 0/1
        output.outcomes["accuracy"] = packed
    if rate is not None:
        output.artifacts["stochastic_passes"] = STOCHASTIC_PASSES
    for cls in range(probs.shape[1]):
        mask = labels == cls
        if mask.any():
            output.records.append(MetricRecord.shares("clean", "accuracy_per_class", shares[mask], {**condition, "class": cls}))
    ctx.shared["clean"] = out  # probs, labels and, for temperature scaling, log_probs
    return output
