"""The metric records and hand-offs every attack evaluation produces, written once."""

from __future__ import annotations

from typing import Any

import torch

from robench.context import EvalContext, EvaluationOutput
from robench.results import ConditionValue, MetricRecord


def add_standard_records(
    output: EvaluationOutput,
    ctx: EvalContext,
    key: str,
    condition: dict[str, ConditionValue],
    *,
    correct: torch.Tensor,
    robust: torch.Tensor,
    labels: torch.Tensor,
    adv_probs: torch.Tensor,
    distance: torch.Tensor | None,
    num_classes: int,
    norm_unit: str,
    robust_rate: torch.Tensor | None = None,
) -> None:
    """Clean and robust accuracy, success rate, norms, per-class accuracy, worst case; and the hand-offs.

    Robust accuracy counts clean errors as failures: ``robust = correct & ~fooled``.
    The attack success rate is measured on the clean-correct examples only.

    Args:
        output: Gets the records.
        ctx: ``ctx.shared`` gets ``attacks/<key>`` and the running per-example worst case.
        key: Evaluation key (``attacks/pgd``).
        condition: Attack, norm, eps, goal.
        correct: Clean-correct flags ``(N,)``.
        robust: Robust flags ``(N,)``.
        labels: Labels ``(N,)``.
        adv_probs: Softmax of the model on the adversarial examples ``(N, K)``.
        distance: Perturbation norms ``(N,)`` (``None``: not measured).
        num_classes: Number of classes.
        norm_unit: Unit of the norms (``linf``, ``l2``...).
        robust_rate: For randomized models, the per-example share of stochastic passes that stay
            correct; robust accuracy is then its mean (the interval is Clopper-Pearson on the
            rounded count, an approximation).
    """
    n = int(correct.numel())
    records = output.records
    records.append(MetricRecord.proportion(key, "clean_accuracy", int(correct.sum()), n, condition))
    if robust_rate is None:
        headline = MetricRecord.proportion(key, "robust_accuracy", int(robust.sum()), n, condition)
    else:
        mean = float(robust_rate.float().mean()) if n else 0.0
        headline = MetricRecord.proportion(key, "robust_accuracy", round(mean * n), n, {**condition, "stochastic_passes": True})
        headline = headline.model_copy(update={"value": mean, "interval": "clopper-pearson (rounded pass-mean count)"})
    records.append(headline)
    n_correct = int(correct.sum())
    fooled_mask = correct & ~robust
    if n_correct:
        records.append(MetricRecord.proportion(key, "attack_success_rate", int(fooled_mask.sum()), n_correct, condition))
    if distance is not None and bool(fooled_mask.any()):
        distances = distance[fooled_mask].float()
        for stat, value in (("mean", distances.mean()), ("median", distances.median())):
            records.append(
                MetricRecord(
                    evaluation=key,
                    name=f"{stat}_perturbation_norm",
                    value=float(value),
                    n=int(distances.numel()),
                    condition=condition,
                    unit=norm_unit,
                )
            )
    per_class = []
    for cls in range(num_classes):
        mask = labels == cls
        if mask.any():
            record = MetricRecord.proportion(
                key, "robust_accuracy_per_class", int(robust[mask].sum()), int(mask.sum()), {**condition, "class": cls}
            )
            records.append(record)
            per_class.append(record.value)
    if per_class:
        records.append(
            MetricRecord(
                evaluation=key,
                name="worst_class_gap",
                value=float(sum(per_class) / len(per_class) - min(per_class)),
                n=n,
                condition=condition,
                unit="fraction",
            )
        )
    # An example is robust only if it withstands every attack run so far (per-example worst case).
    previous = ctx.shared.get("attacks:worst_case")
    worst = robust if previous is None else previous["robust"] & robust
    attacks_so_far = ([] if previous is None else previous["attacks"]) + [key.split("/", 1)[-1]]
    ctx.shared["attacks:worst_case"] = {"robust": worst, "attacks": attacks_so_far}
    records.append(
        MetricRecord.proportion(
            key, "worst_case_robust_accuracy", int(worst.sum()), n, {**condition, "attack": "+".join(attacks_so_far)}
        )
    )
    ctx.shared[key] = {"probs": adv_probs, "labels": labels, "robust": robust}
    summary: dict[str, Any] = ctx.shared.setdefault("attacks:summary", {})
    summary[key.split("/", 1)[-1]] = {
        "robust_accuracy": headline.value,
        "n": n,
        "eps": condition.get("eps"),
        "kind": condition.get("kind"),
        "robust": robust,
    }
