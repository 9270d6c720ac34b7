"""The ``attacks`` section: run each declared attack and measure robust accuracy."""

from __future__ import annotations

import torch

from robench.attacks.norms import get_norm
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.models.wrapper import ModelHandle
from robench.registry import register, registry
from robench.results import MetricRecord
from robench.threat_model import EvaluationSpec, ThreatModel, format_eps


def choose_targets(
    logits: torch.Tensor, labels: torch.Tensor, how: str, generator: torch.Generator
) -> torch.Tensor:
    """Target classes different from the labels: uniformly random, or the least likely class."""
    if how == "least_likely":
        return logits.scatter(1, labels[:, None], float("inf")).argmin(dim=1)
    classes = logits.shape[1]
    shift = torch.randint(1, classes, labels.shape, generator=generator).to(labels.device)
    return (labels + shift) % classes


@register("evaluation", "attacks")
def evaluate_attack(
    model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, ctx: EvalContext
) -> EvaluationOutput:
    """Run one declared attack on every example; robust accuracy counts clean errors as failures."""
    adversary = threat.adversary
    assert adversary is not None  # guaranteed by ThreatModel validation
    params = threat.resolved_params("attacks", spec)
    attack = registry.get("attack", spec.name)(**(params.model_dump() if params is not None else {}))
    norm = get_norm(adversary.norm)
    targeted = adversary.goal == "targeted"

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clean_logits = model.predict_logits(x)
        correct = clean_logits.argmax(dim=1) == y
        target = choose_targets(clean_logits, y, adversary.targets, generator) if targeted else None
        result = attack(
            model.module, x, y, norm=norm, eps=adversary.eps, bounds=adversary.bounds, target=target, generator=generator
        )
        robust = correct & ~result.success
        return {
            "correct": correct,
            "robust": robust,
            "distance": result.distance,
            "adv_probs": result.logits.float().softmax(dim=1),
            "labels": y,
        }

    out = ctx.map_batches("attack", data, batch, model.counter, desc=f"attack {spec.key}")
    n = int(out["correct"].numel())
    correct, robust = out["correct"], out["robust"]
    key = f"attacks/{spec.key}"
    eps_text = format_eps(adversary.eps)
    condition = {"attack": spec.key, "norm": adversary.norm, "eps": adversary.eps, "goal": adversary.goal}
    output = EvaluationOutput(resolved=params.model_dump() if params is not None else {})
    output.records.append(MetricRecord.proportion(key, "clean_accuracy", int(correct.sum()), n, condition))
    output.records.append(MetricRecord.proportion(key, "robust_accuracy", int(robust.sum()), n, condition))
    n_correct = int(correct.sum())
    if n_correct:
        fooled = int((correct & ~robust).sum())
        output.records.append(MetricRecord.proportion(key, "attack_success_rate", fooled, n_correct, condition))
        distances = out["distance"][correct & ~robust]
        if distances.numel():
            for stat, value in (("mean", distances.mean()), ("median", distances.median())):
                output.records.append(
                    MetricRecord(
                        evaluation=key,
                        name=f"{stat}_perturbation_norm",
                        value=float(value),
                        n=int(distances.numel()),
                        condition=condition,
                        unit=adversary.norm.lower(),
                    )
                )
    labels = out["labels"]
    per_class = []
    for cls in range(int(model.info.num_classes or labels.max() + 1)):
        mask = labels == cls
        if mask.any():
            record = MetricRecord.proportion(
                key, "robust_accuracy_per_class", int(robust[mask].sum()), int(mask.sum()), {**condition, "class": cls}
            )
            output.records.append(record)
            per_class.append(record.value)
    if per_class:
        output.records.append(
            MetricRecord(
                evaluation=key,
                name="worst_class_gap",
                value=float(sum(per_class) / len(per_class) - min(per_class)),
                n=n,
                condition=condition,
                unit="fraction",
            )
        )
    ctx.shared[key] = {"probs": out["adv_probs"], "labels": labels, "robust": robust}
    output.artifacts = {"eps_text": eps_text, "attack": spec.name, "params": output.resolved}
    return output
