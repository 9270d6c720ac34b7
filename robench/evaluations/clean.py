"""The ``clean`` section: accuracy on the unperturbed examples."""

from __future__ import annotations

from typing import Any

import torch

from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.models.wrapper import ModelHandle
from robench.registry import register
from robench.results import MetricRecord
from robench.threat_model import ThreatModel


@register("evaluation", "clean")
def evaluate_clean(model: ModelHandle, data: Dataset, threat: ThreatModel, spec: Any, ctx: EvalContext) -> EvaluationOutput:
    """Top-1 accuracy, overall and per class, with 95% Clopper-Pearson intervals."""

    from robench.calibration.evaluate import wants_log_probs

    log_probs = wants_log_probs(threat)

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        logits = model.predict_logits(x).float()
        out = {"probs": logits.softmax(dim=1), "labels": y}
        if log_probs:  # for temperature scaling (see wants_log_probs)
            out["log_probs"] = logits.log_softmax(dim=1)
        return out

    out = ctx.map_batches("predict", data, batch, model.counter, desc="clean")
    probs, labels = out["probs"], out["labels"]
    correct = probs.argmax(dim=1) == labels
    output = EvaluationOutput()
    output.records.append(MetricRecord.proportion("clean", "accuracy", int(correct.sum()), int(labels.numel())))
    for cls in range(probs.shape[1]):
        mask = labels == cls
        if mask.any():
            output.records.append(
                MetricRecord.proportion("clean", "accuracy_per_class", int(correct[mask].sum()), int(mask.sum()), {"class": cls})
            )
    ctx.shared["clean"] = {"probs": probs, "labels": labels, **({"log_probs": out["log_probs"]} if log_probs else {})}
    return output
