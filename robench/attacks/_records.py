"""The metric records and hand-offs every attack evaluation produces, written once."""

from __future__ import annotations

from typing import Any

import torch

from robench.attacks.eot import PassMeans
from robench.context import EvalContext, EvaluationOutput
from robench.results import ConditionValue, MetricRecord, binary_outcomes


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
    adv_log_probs: torch.Tensor | None = None,
    distance: torch.Tensor | None,
    num_classes: int,
    norm_unit: str,
    passes: PassMeans | None = None,
    attack_name: str | None = None,
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
        adv_log_probs: Their log-softmax, when temperature scaling will rescale them.
        distance: Perturbation norms ``(N,)`` (``None``: not measured).
        num_classes: Number of classes.
        norm_unit: Unit of the norms (``linf``, ``l2``...).
        passes: For randomized models, the per-example pass means (robust: the share of fresh
            passes that stay correct at the adversary's point, 0 for an example the attack
            skipped; clean: at the clean input). Clean and robust accuracy, per-class accuracy,
            success rate and the worst case are then means of them (the interval is
            Clopper-Pearson on the rounded count, an approximation).
        attack_name: The attack's registry name (``fgsm``), when the key is a user-chosen id.
    """
    n = int(correct.numel())
    records = output.records
    # Per-example share of robustness: 0/1 flags, or a randomized model's pass means (from fresh
    # passes, the clean input among the points; an attack that skips examples zeroes them itself).
    rate = robust.float() if passes is None else passes.robust.float()
    if passes is None:
        records.append(MetricRecord.proportion(key, "clean_accuracy", int(correct.sum()), n, condition))
    else:  # on the footing of the robust accuracy: one pass's verdict can put it below the pass mean under attack
        records.append(MetricRecord.shares(key, "clean_accuracy", passes.clean.float(), {**condition, "stochastic_passes": True}))
    headline_condition = condition if passes is None else {**condition, "stochastic_passes": True}
    headline = MetricRecord.shares(key, "robust_accuracy", rate, headline_condition)
    records.append(headline)
    if (packed := binary_outcomes(rate)) is not None:  # a randomized model's pass means seldom are 0/1
        output.outcomes["robust_accuracy"] = packed
    n_correct = int(correct.sum())
    fooled_mask = correct & ~robust
    if n_correct:
        records.append(MetricRecord.shares(key, "attack_success_rate", 1 - rate[correct], condition))
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
            record = MetricRecord.shares(key, "robust_accuracy_per_class", rate[mask], {**condition, "class": cls})
            records.append(record)
            assert record.value is not None  # a mean over a non-empty class
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
    # An example is robust only if it withstands every attack run so far (per-example worst case);
    # for a randomized model, its lowest pass mean over the attacks (the adversary picks, per
    # example, the attack that fools it most often). Conservative: it can only fall as attacks are
    # added, and it is biased low where an example's points have similar shares (three points at
    # 0.5 give 0.37). Choosing the attack on separate passes would be unbiased for the chosen point
    # but lets a weak attack's noise lift the worst case above the strongest attack's own number.
    previous = ctx.shared.get("attacks:worst_case")
    worst = rate if previous is None else torch.minimum(previous["rate"], rate)
    attacks_so_far = ([] if previous is None else previous["attacks"]) + [key.split("/", 1)[-1]]
    ctx.shared["attacks:worst_case"] = {"rate": worst, "attacks": attacks_so_far}
    records.append(MetricRecord.shares(key, "worst_case_robust_accuracy", worst, {**condition, "attack": "+".join(attacks_so_far)}))
    if (packed := binary_outcomes(worst)) is not None:
        output.outcomes["worst_case_robust_accuracy"] = packed
    ctx.shared[key] = {"probs": adv_probs, "labels": labels, "robust": robust}
    if adv_log_probs is not None:
        ctx.shared[key]["log_probs"] = adv_log_probs
    summary: dict[str, Any] = ctx.shared.setdefault("attacks:summary", {})
    summary[key.split("/", 1)[-1]] = {
        "robust_accuracy": headline.value,
        "n": n,
        "eps": condition.get("eps"),
        "kind": condition.get("kind"),
        "n_correct": n_correct,  # the examples an attack can change: the checks' eligible examples
        "robust": robust,
        "name": attack_name or key.split("/", 1)[-1],  # the registry name (the key may be an id)
    }
