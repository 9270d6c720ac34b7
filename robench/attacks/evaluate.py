"""The ``attacks`` section: run each declared attack and measure robust accuracy.

Bounded attacks (robench's own, Square) run through :class:`~robench.attacks.base.Attack`'s final
call. Entries that need the whole section (AutoAttack, minimum-norm and decision-based attacks,
the gradient-masking checks) are classes with a static ``evaluate`` and are dispatched to it.
"""

from __future__ import annotations

import torch

from robench.attacks import convergence
from robench.attacks._records import add_standard_records
from robench.attacks._speed import precision_label
from robench.attacks.base import UNFOOLED_AT_CLEAN
from robench.attacks.eot import DEFAULT_EOT_SAMPLES, STOCHASTIC_PASSES, PassMeans, pass_mean_robust
from robench.attacks.norms import get_norm
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.evaluations.clean import softmax_outputs, wants_log_probs
from robench.models.wrapper import ModelHandle
from robench.registry import register, registry
from robench.results import ConditionValue
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


def attack_kind(name: str) -> str:
    """``white-box``, ``score-based`` or ``decision-based``, from the registry tags."""
    tags = registry.entry("attack", name).tags
    return next((t for t in ("decision-based", "score-based") if t in tags), "white-box")


@register("evaluation", "attacks")
def evaluate_attack(
    model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, ctx: EvalContext
) -> EvaluationOutput:
    """Run one declared attack on every example; robust accuracy counts clean errors as failures."""
    params = threat.resolved_params("attacks", spec)
    entry = registry.get("attack", spec.name)
    if hasattr(entry, "evaluate"):
        output = entry.evaluate(model, data, threat, spec, params, ctx)
    else:
        output = _evaluate_bounded(model, data, threat, spec, params, ctx)
    assert threat.adversary is not None  # guaranteed by ThreatModel validation
    kind = attack_kind(spec.name)
    if threat.adversary.knowledge == "black-box" and kind == "white-box" and spec.name != "gradient_masking":
        output.warnings.append(
            f"{spec.key} is a white-box attack run under a black-box threat model: it bounds robustness from below"
        )
    summary = ctx.shared.get("attacks:summary", {}).get(spec.key)
    if summary is not None:  # the budget the masking checks state for the comparisons they draw from it
        summary["params"] = {**output.resolved, **(output.artifacts.get("procedure") or {})}
        summary["convergence"] = output.artifacts.get("convergence")  # for the masking checks' declared_converged
    handoff = ctx.shared.get(f"attacks/{spec.key}")
    unfooled_at = (output.artifacts.get("procedure") or {}).get("unfooled_at", "")
    if isinstance(handoff, dict) and unfooled_at.startswith(UNFOOLED_AT_CLEAN):
        handoff["unfooled_at_clean"] = True  # calibration under this attack scores unbroken examples clean
    output.artifacts.setdefault("attack", spec.name)
    output.artifacts.setdefault("knowledge", kind)
    output.artifacts.setdefault("eps_text", format_eps(threat.adversary.eps))
    return output


def _evaluate_bounded(
    model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params, ctx: EvalContext
) -> EvaluationOutput:
    adversary = threat.adversary
    assert adversary is not None
    resolved = params.model_dump() if params is not None else {}
    output = EvaluationOutput()
    randomized = bool(ctx.shared.get("randomized"))
    if randomized and "eot_samples" in resolved and "eot_samples" not in spec.params:
        resolved["eot_samples"] = DEFAULT_EOT_SAMPLES
        output.warnings.append(f"randomized model: EOT with {DEFAULT_EOT_SAMPLES} samples per gradient step")
    elif randomized and resolved.get("eot_samples") == 1:
        output.warnings.append(
            f"randomized model: {spec.key} declares eot_samples 1 (one stochastic pass per gradient): its gradients "
            "follow one draw of the randomness; EOT (eot_samples 20, the default for randomized models) is the adaptive attack"
        )
    elif randomized and "eot_samples" not in resolved:
        output.warnings.append(
            f"randomized model: {spec.key} has no EOT (one stochastic pass per query); its robust accuracy is the "
            "pass-mean at the points it found, an upper bound that an EOT attack (pgd) can lower"
        )
    attack = registry.get("attack", spec.name)(**resolved)
    if randomized:
        attack = attack.for_randomized_model()
    if "rel_step_size" in resolved and resolved["rel_step_size"] is None:
        resolved["rel_step_size"] = attack.rel_step_size  # the effective default, 2.5 / steps
    if adversary.norm != "L1" and "l1_sparsity" not in spec.params:
        resolved.pop("l1_sparsity", None)  # a parameter of L1 steps only: not part of how this attack ran
    norm = get_norm(adversary.norm)
    targeted = adversary.goal == "targeted"
    mode = resolved.get("mode", "exact")
    ctx.cost.precision = precision_label(mode, ctx.device)

    log_probs = wants_log_probs(threat, "attacks")

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clean_logits = model.predict_logits(x)
        correct = clean_logits.argmax(dim=1) == y
        target = choose_targets(clean_logits, y, adversary.targets, generator) if targeted else None
        result = attack(
            model.module, x, y, norm=norm, eps=adversary.eps, bounds=adversary.bounds, target=target, generator=generator
        )
        out = {
            "correct": correct,
            "robust": correct & ~result.success,
            "distance": result.distance,
            **softmax_outputs(result.logits, log_probs, "adv_"),
            "labels": y,
        }
        if attack.last_progress is not None:
            out["first_fooled"] = attack.last_progress
        if attack.last_progress_restart is not None:
            out["first_fooled_restart"] = attack.last_progress_restart
        if randomized:
            # the pass-mean accuracy at the adversary's choice of the clean or the adversarial input;
            # an example the attack skipped on its own pass's verdict (left at x: square's) counts as
            # not robust; the clean pass above is another draw, so it cannot tell which were skipped
            means = pass_mean_robust(model.predict_logits, x, result.x_adv, y)
            if not attack.attacks_every_example:
                means = means.skipping((result.x_adv != x).flatten(1).any(dim=1))
            out.update(means.outputs())
        return out

    out = ctx.map_batches("attack", data, batch, model.counter, desc=f"attack {spec.key}")
    key = f"attacks/{spec.key}"
    condition: dict[str, ConditionValue] = {
        "attack": spec.key, "norm": adversary.norm, "eps": adversary.eps, "goal": adversary.goal,
        "kind": attack_kind(spec.name),
    }  # fmt: skip
    passes = PassMeans.from_outputs(out)
    robust = out["robust"] if passes is None else passes.robust >= 0.5
    add_standard_records(
        output, ctx, key, condition, correct=out["correct"], robust=robust, labels=out["labels"],
        adv_probs=out["adv_probs"], adv_log_probs=out.get("adv_log_probs"), distance=out["distance"], num_classes=int(model.info.num_classes or data.num_classes),
        norm_unit=adversary.norm.lower(), passes=passes, attack_name=spec.name,
    )  # fmt: skip
    output.resolved = resolved
    output.artifacts = {"params": resolved, "mode": mode, "compile": bool(resolved.get("compile", False)),
                        "procedure": attack.procedure(adversary.eps)}  # fmt: skip
    if passes is not None:
        output.artifacts["stochastic_passes"] = STOCHASTIC_PASSES
    budget = attack.progress_budget()
    if "first_fooled" in out and budget is not None and passes is None:
        output.artifacts["convergence"] = convergence.curve(
            out["first_fooled"], out["correct"], robust, budget=budget, unit=attack.progress_unit or "iterations",
            restart_every=attack.progress_restart_every(), first_restart=out.get("first_fooled_restart"),
        )  # fmt: skip
        # fast mode picks a restart's iterates by bf16 scores; whether a restart fooled an example is fp32's verdict
        output.artifacts["convergence"]["scored"] = "bf16 within a restart, fp32 at its end" if mode == "fast" else "fp32"
    return output
