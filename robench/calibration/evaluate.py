"""The ``calibration`` section: calibration clean, under each attack and each corruption severity.

Conditions come from ``ctx.shared``, filled by the sections that ran before: ``clean`` (clean
section), ``attacks/<id>`` (probabilities on the adversarial examples) and
``corruptions/<name>/<severity>`` (one per corruption cell), each ``{'probs': (N, K), 'labels': (N,)}``.
Under shift this follows Ovadia et al. (NeurIPS 2019): one ECE per corruption and severity.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from robench.calibration.bootstrap import DEFAULT_RESAMPLES, bootstrap_intervals
from robench.calibration.functional import DEFAULT_MCE_MIN_COUNT
from robench.calibration.metric import CalibrationMetrics, calibration_metrics
from robench.calibration.temperature import apply_temperature, fit_temperature, logits_from_probs
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.evaluations.clean import predictions
from robench.registry import register
from robench.results import MetricRecord
from robench.threat_model import Adversary, CalibrationSpec, ThreatModel

EVALUATION = "calibration"
# The MCE is the largest gap over bins of at least this many examples (recorded in ``resolved`` and
# the artifacts; see robench.calibration.functional.DEFAULT_MCE_MIN_COUNT).
MCE_MIN_COUNT = DEFAULT_MCE_MIN_COUNT
# How each metric's interval is made (robench.calibration.bootstrap explains why they differ).
INTERVALS = {
    "ece": f"bootstrap bound on the per-bin gaps' deviation ({DEFAULT_RESAMPLES} resamples of examples), exact for bins without a miss or a hit",
    "adaptive_ece": f"bootstrap bound on the per-bin gaps' deviation, bins of the full sample ({DEFAULT_RESAMPLES} resamples), exact for bins without a miss or a hit",
    "classwise_ece": f"bootstrap bound on the per-cell gaps' deviation ({DEFAULT_RESAMPLES} resamples of examples), exact for cells without a miss or a hit",
    "mce": f"clopper-pearson per bin of at least {MCE_MIN_COUNT} examples, bonferroni over those bins, given the confidences",
    "brier": f"bootstrap-percentile ({DEFAULT_RESAMPLES} resamples of examples) joined with the Fay-Feuer gamma interval (terms <= 2)",
    "nll": f"bootstrap-percentile ({DEFAULT_RESAMPLES} resamples of examples)",
}
UNBROKEN_AT_CLEAN = "clean input"
"""A calibration attack condition's ``unbroken_at`` when the attack leaves the examples it did not fool
at their clean input (:data:`robench.attacks.base.UNFOOLED_AT_CLEAN`): its outputs mix clean and adversarial."""


SCORED_CLEAN_NOTE = " (unbroken examples scored clean)"
"""Appended to the label of a :func:`scored_clean` condition wherever one is written out."""


def scored_clean(condition: dict[str, Any]) -> bool:
    """An attack condition whose unbroken examples are scored at their clean input (AutoAttack)."""
    return condition.get("condition") == "attack" and condition.get("unbroken_at") == UNBROKEN_AT_CLEAN

Condition = dict[str, Any]


def _conditions(
    shared: dict[str, Any], wanted: tuple[str, ...], adversary: Adversary | None = None
) -> list[tuple[str, Condition, dict[str, Any]]]:
    """``(label, condition, hand-off)`` for every condition present, clean first, then attacks, then
    corruptions by name and severity. An attack's condition carries the threat model's norm, eps and
    goal (``adversary``: every attack of a run attacks it), as the attack's own records do."""
    found: list[tuple[str, Condition, dict[str, Any]]] = []
    # Only hand-offs with probabilities are conditions (the attacks' internal keys are ``attacks:...``;
    # an attack id cannot hold ':', so they cannot collide with ``attacks/<id>``).
    shared = {k: v for k, v in shared.items() if isinstance(v, dict) and "probs" in v and "labels" in v}
    if "clean" in wanted and "clean" in shared:
        found.append(("clean", {"condition": "clean"}, shared["clean"]))
    if "attacks" in wanted:
        for key in sorted(k for k in shared if isinstance(k, str) and k.startswith("attacks/")):
            attack = key.split("/", 1)[1]
            condition: Condition = {"condition": "attack", "attack": attack}
            if adversary is not None:
                condition.update(norm=adversary.norm, eps=adversary.eps, goal=adversary.goal)
            if shared[key].get("unfooled_at_clean"):  # not comparable with an attack scored at its best point
                condition["unbroken_at"] = UNBROKEN_AT_CLEAN
            found.append((f"attack {attack}", condition, shared[key]))
    if "corruptions" in wanted:
        cells = []
        for key in shared:
            parts = key.split("/") if isinstance(key, str) else []
            if len(parts) == 3 and parts[0] == "corruptions":
                severity: int | str = int(parts[2]) if parts[2].isdigit() else parts[2]
                cells.append((parts[1], severity, key))
        for name, severity, key in sorted(cells, key=lambda c: (c[0], str(c[1]))):
            found.append(
                (f"{name} s{severity}", {"condition": "corruption", "corruption": name, "severity": severity}, shared[key])
            )
    return found


# Record names; the maximum calibration error is spelled out so that it is not mistaken for the
# corruptions section's mCE (mean corruption error).
RECORD_NAMES = {
    "ece": "ece",
    "mce": "max_calibration_error",
    "adaptive_ece": "adaptive_ece",
    "classwise_ece": "classwise_ece",
    "brier": "brier",
    "nll": "nll",
}
UNITS = {"brier": "brier", "nll": "nats"}


def _records(
    metrics: CalibrationMetrics, condition: Condition, intervals: dict[str, tuple[float, float] | None] | None
) -> list[MetricRecord]:
    """Accuracy (Clopper-Pearson) and every calibration metric (bootstrap interval when given)."""
    n = metrics.n
    records = [MetricRecord.proportion(EVALUATION, "accuracy", metrics.correct, n, condition)]
    for key, name in RECORD_NAMES.items():
        interval = (intervals or {}).get(key)
        value = getattr(metrics, key)
        records.append(
            MetricRecord(
                evaluation=EVALUATION, name=name, value=None if math.isnan(value) else value, n=n,  # NaN: an MCE without a full bin
                ci_low=interval[0] if interval else None, ci_high=interval[1] if interval else None,
                condition=condition, unit=UNITS.get(key, "probability"),
                interval=INTERVALS[key] if interval else None,
            )
        )  # fmt: skip
    return records


@register("evaluation", "calibration")
def evaluate_calibration(
    model: Any, data: Dataset, threat: ThreatModel, spec: CalibrationSpec | None, ctx: EvalContext
) -> EvaluationOutput:
    """ECE/MCE/adaptive/classwise ECE, Brier, NLL and accuracy, clean and under attacks and corruptions."""
    spec = spec or CalibrationSpec()
    output = EvaluationOutput(resolved={**spec.model_dump(mode="json"), "mce_min_count": MCE_MIN_COUNT})
    shared = dict(ctx.shared)
    if ("clean" in spec.conditions or spec.temperature_scaling) and "clean" not in shared:
        batch = predictions(model, spec.temperature_scaling)
        shared["clean"] = ctx.map_batches("clean", data, batch, model.counter, desc="calibration clean")
    conditions = _conditions(shared, spec.conditions, threat.adversary if threat is not None else None)
    if ctx.shared.get("randomized"):
        output.warnings.append(
            "randomized model: calibration scores one pass's probabilities per example (a single prediction, as a user "
            "gets it), so its accuracies are single-pass ones, not the pass means of the clean and attack sections"
        )
    present = {c["condition"] for _, c, _ in conditions}
    for wanted, kind in (("attacks", "attack"), ("corruptions", "corruption")):
        if wanted in spec.conditions and kind not in present:
            output.warnings.append(
                f"calibration under {wanted} was requested, but no {wanted} outputs were found "
                f"(the {wanted} section did not run before calibration)"
            )
    reliability: list[dict[str, Any]] = []
    for index, (label, condition, handoff) in enumerate(conditions):
        probs, labels = handoff["probs"].detach().cpu().float(), handoff["labels"].detach().cpu().long()
        metrics = calibration_metrics(probs, labels, spec.n_bins, MCE_MIN_COUNT)
        intervals = bootstrap_intervals(probs, labels, spec.n_bins, ctx.generator("bootstrap", index), mce_min_count=MCE_MIN_COUNT)
        output.records += _records(metrics, condition, intervals)
        reliability.append({"label": label, "condition": condition, "ece": metrics.ece, **metrics.reliability.to_json()})

    artifacts: dict[str, Any] = {"n_bins": spec.n_bins, "mce_min_count": MCE_MIN_COUNT, "resamples": DEFAULT_RESAMPLES, "reliability": reliability}
    if spec.temperature_scaling:
        artifacts["temperature"] = _temperature_scaling(shared, conditions, spec, output, ctx)
    output.artifacts = artifacts
    return output


def _logits(handoff: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (up to a per-row constant) of a hand-off: its log-probabilities when it has them, else
    the log of its probabilities, clamped where float32 underflowed."""
    if "log_probs" in handoff:
        return handoff["log_probs"].detach().cpu().double()
    return logits_from_probs(handoff["probs"].detach().cpu().float())


def _temperature_scaling(
    shared: dict[str, Any], conditions: list[tuple[str, Condition, dict[str, Any]]], spec: CalibrationSpec, output: EvaluationOutput,
    ctx: EvalContext,
) -> dict[str, Any]:
    """Fit ``T`` on the first ``holdout_fraction`` of the clean examples; report every condition on
    the remaining examples (indices ``>= n_fit``) before and after scaling.

    The conditions of the other sections are computed on the same examples in the same order, so
    restricting them to indices ``>= n_fit`` keeps the fitting examples out of every report.
    Every metric before and after carries the same 95% intervals as the unscaled conditions
    (:func:`~robench.calibration.bootstrap.bootstrap_intervals` over the evaluation examples); before
    and after draw the same resamples. The intervals are conditional on the fitted ``T`` (the
    fitting examples are not resampled).
    """
    clean = shared["clean"]
    n_total = int(clean["labels"].numel())
    n_fit = math.ceil(spec.holdout_fraction * n_total)
    if n_fit < 1 or n_total - n_fit < 1:
        output.warnings.append(
            f"temperature scaling skipped: {n_total} clean examples cannot be split into a fitting set "
            f"({spec.holdout_fraction:g}) and an evaluation set"
        )
        return {"skipped": True}
    fit = fit_temperature(_logits(clean)[:n_fit], clean["labels"][:n_fit].long())
    if not fit.identifiable:
        output.warnings.append(
            f"temperature scaling skipped: all {n_fit} fitting examples are classified correctly, so the NLL keeps falling "
            "as T -> 0 and has no minimum (any fitted T would be arbitrary); use a larger holdout_fraction or more examples"
        )
        return {"skipped": True, "n_fit": n_fit, "reason": "not identifiable: every fitting example correct"}
    if fit.at_bound:
        output.warnings.append(f"fitted temperature {fit.temperature:g} lies on the search bound [0.01, 100]")
    output.records.append(
        MetricRecord(evaluation=EVALUATION, name="temperature", value=fit.temperature, n=fit.n, condition={"condition": "clean", "split": "fit"})
    )
    for index, (label, condition, handoff) in enumerate(conditions):
        probs, labels = handoff["probs"].detach().cpu().float(), handoff["labels"].detach().cpu().long()
        count = int(labels.numel())
        if count <= n_fit:
            output.warnings.append(
                f"temperature scaling: {label} is not scored after scaling: all of its {count} examples are among the "
                f"{n_fit} fitting examples"
            )
            continue
        if count != n_total:
            output.warnings.append(
                f"temperature scaling: {label} has {count} examples, not the {n_total} clean ones; it is scored on its "
                f"examples {n_fit} to {count - 1} ({count - n_fit}; the same examples in the same order as the clean ones)"
            )
        probs, labels = probs[n_fit:], labels[n_fit:]
        scaled = apply_temperature(_logits(handoff)[n_fit:], fit.temperature).float()
        for stage, values in (("before", probs), ("after", scaled)):
            metrics = calibration_metrics(values, labels, spec.n_bins, MCE_MIN_COUNT)
            # one seed for both stages: before and after are scored on the same resamples
            intervals = bootstrap_intervals(
                values, labels, spec.n_bins, ctx.generator("bootstrap", "temperature", index), mce_min_count=MCE_MIN_COUNT
            )
            output.records += _records(metrics, {**condition, "split": "eval", "temperature": stage}, intervals)
    return {
        "temperature": fit.temperature,
        "n_fit": n_fit,
        "n_eval": n_total - n_fit,
        "nll_fit_before": fit.nll_before,
        "nll_fit_after": fit.nll_after,
        "fitted_on": _source(clean),
        # what each condition was rescaled from (the sections hand off log-probabilities when temperature scaling is declared)
        "rescaled_from": {label: _source(handoff) for label, _, handoff in conditions},
    }


def _source(handoff: dict[str, torch.Tensor]) -> str:
    return "log-probabilities" if "log_probs" in handoff else "log of float32 probabilities (clamped at 1e-38)"
