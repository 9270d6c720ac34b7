"""How records and plain values are named and shown, shared by the report, the checklist and the exports."""

from __future__ import annotations

from typing import Any

from robench.results import Check, EvaluationResult, MetricRecord, Results
from robench.threat_model import format_eps

# How metric names read (others: underscores become spaces).
METRIC_NAMES: dict[str, str] = {
    "worst_case_robust_accuracy": "worst-case robust accuracy",
    "ece": "ECE",
    "adaptive_ece": "adaptive ECE",
    "classwise_ece": "classwise ECE",
    "max_calibration_error": "MCE",
    "nll": "NLL",
    "brier": "Brier score",
    "mce": "mCE",
    "relative_mce": "relative mCE",
    "average_certified_radius": "average certified radius",
    "mean_top5_distance": "mean top-5 distance",
}
# Condition keys an attack evaluation's key and the threat model already say.
_ATTACK_IMPLIED = frozenset({"attack", "norm", "eps", "goal", "kind"})


def metric_name(name: str) -> str:
    """A record name as a reader says it: ``robust_accuracy`` -> ``robust accuracy``, ``ece`` -> ``ECE``."""
    return METRIC_NAMES.get(name, name.replace("_", " "))


def worst_case_attacks(record: MetricRecord) -> list[str]:
    """The attacks a worst-case record is taken over (``"fgsm+pgd"`` -> ``["fgsm", "pgd"]``)."""
    chain = record.condition.get("attack")
    return [a for a in str(chain).split("+") if a] if chain else []


def _pairs(condition: dict[str, Any]) -> str:
    return ", ".join(f"{k}={show(v)}" for k, v in condition.items())


def record_label(record: MetricRecord) -> str:
    """A short human label, unique within a run: ``clean accuracy``, ``robust accuracy: pgd``,
    ``worst-case robust accuracy over fgsm, pgd``, ``ECE under pgd``, ``mean corruption accuracy
    (15 corruptions x 5 severities)``, ``certified accuracy: ibp (box=Linf) at Linf eps=8/255``;
    condition keys the label does not word are appended as ``key=value``."""
    name = metric_name(record.name)
    section, _, entry = record.evaluation.partition("/")
    rest = dict(record.condition)
    if record.name == "worst_case_robust_accuracy" and rest.get("attack"):
        # per example the worst over every attack so far: not the attack whose evaluation holds it
        label = f"{name} over {', '.join(worst_case_attacks(record))}"
        rest = {k: v for k, v in rest.items() if k not in _ATTACK_IMPLIED}
    elif section == "attacks":
        label = f"{name}: {entry}" if entry else name
        rest = {k: v for k, v in rest.items() if k not in _ATTACK_IMPLIED}
    elif section == "clean":
        label = f"clean {name}"
    elif section == "calibration" and "condition" in rest:
        kind = rest.pop("condition")
        if kind == "attack" and "attack" in rest:
            label = f"{name} under {rest.pop('attack')}"
            if "eps" in rest:  # the threat model's (results of an older robench do not say)
                eps = rest.pop("eps")
                eps_text = format_eps(float(eps)) if isinstance(eps, (int, float)) else show(eps)
                label += " at " + " ".join([*([str(rest.pop("norm"))] if "norm" in rest else []), f"eps={eps_text}"])
                rest.pop("goal", None)  # the threat model's, left out as in the attacks' own labels
            from robench.calibration.evaluate import SCORED_CLEAN_NOTE, UNBROKEN_AT_CLEAN

            if rest.pop("unbroken_at", None) == UNBROKEN_AT_CLEAN:
                label += SCORED_CLEAN_NOTE
        elif kind == "corruption" and "corruption" in rest:
            label = f"{name} under {rest.pop('corruption')}" + (f" s{rest.pop('severity')}" if "severity" in rest else "")
        else:
            label = f"{name}, {kind}"
    elif record.name == "mean_corruption_accuracy" and "benchmark_corruptions" in rest:
        bench, extra, severities = rest.pop("benchmark_corruptions"), rest.pop("extra_corruptions", None), rest.pop("severities", "?")
        label = f"{name} ({extra} extra corruptions" if not bench and extra else f"{name} ({bench} corruptions"
        label += f" x {severities} severities)"
    elif section == "stability" and "perturbations" in rest:
        count, source = rest.pop("perturbations"), rest.pop("source", None)
        label = f"{name} ({count} {f'{source} ' if source else ''}perturbations" + (
            f", ImageNet-P difficulty {rest.pop('difficulty')})" if "difficulty" in rest else ")")  # its name: frame stride, noise strength
    elif section == "certification":
        label = f"{name}: {entry}" if entry else name
        rest.pop("certifier", None)
        if "box" in rest and rest.get("norm") == rest["box"]:
            rest.pop("norm")  # IBP's input set says the norm
        threat = (rest.pop("threat_norm", None), rest.pop("threat_eps", None))
        rest.pop("certifiable", None)  # its value says so (results.not_certifiable), not the label
        if rest:
            label += f" ({_pairs(rest)})"
            rest = {}
        if threat[1] is not None:  # written as the threat model writes it (8/255), as calibration's labels do
            eps_text = format_eps(float(threat[1])) if isinstance(threat[1], (int, float)) and not isinstance(threat[1], bool) else show(threat[1])
            label += " ".join(["", "at", *([str(threat[0])] if threat[0] else []), f"eps={eps_text}"])
    else:
        label = f"{name}: {entry}" if entry else f"{section} {name}"
    return label + (f" ({_pairs(rest)})" if rest else "")


def at_threat(record: MetricRecord, adversary: dict[str, Any]) -> bool:
    """Whether a certifier's record is at the threat model's norm and eps (``threat_norm`` and
    ``threat_eps`` in its condition those of ``adversary``, the threat model's ``adversary`` block), so
    that attacks at that eps bound the same robustness (an older IBP recorded its params.eps so)."""
    return (record.condition.get("threat_eps"), record.condition.get("threat_norm")) == (adversary.get("eps"), adversary.get("norm"))


def summary_label(record: MetricRecord, results: Results) -> str:
    """:func:`record_label` with the caveat a headline row cannot go without: a mean corruption
    accuracy under a severity table made for other images says so briefly
    (``mean corruption accuracy (15 corruptions x 3 severities; CIFAR-10-C parameters on 28 px gray images)``)."""
    from robench.report.sections.corruptions import table_note

    label = record_label(record)
    note = table_note(results) if record.name == "mean_corruption_accuracy" else None
    if not note:
        return label
    return f"{label[:-1]}; {note})" if label.endswith(")") else f"{label} ({note})"


def show(value: Any, missing: str = "–") -> str:
    """A plain value as text for a reader: ``None`` -> ``missing``, lists joined with commas,
    mappings as ``key=value`` pairs without their ``None`` entries; never a Python repr."""
    if value is None:
        return missing
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(show(v, missing) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v, missing)}" for k, v in value.items() if v is not None)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


_NOT_PROPORTIONS = frozenset({"tolerance", "threshold"})


def count_record(evaluation: str, name: str, value: float | None, n: int | None) -> MetricRecord | None:
    """``value`` as a proportion record ``k / n`` (exact Clopper-Pearson interval) when it is one,
    i.e. ``value * n`` is a whole count; ``None`` otherwise (no interval is made up)."""
    if value is None or not isinstance(n, int) or n <= 0 or abs(round(value * n) / n - value) >= 1e-6:
        return None
    return MetricRecord.proportion(evaluation, name, round(value * n), n)


def _budget_words(budget: dict[str, Any]) -> list[str]:
    """A check's recorded attack budgets in words (its own attacks' flat ``pgd_*`` keys, or one
    mapping per declared attack it compares)."""
    parts = []
    if "pgd_steps" in budget:
        restarts = budget.get("pgd_restarts", 1)
        text = f"PGD {budget['pgd_steps']} steps x {restarts} restart{'s' if restarts != 1 else ''}"
        details = []
        if "pgd_random_start" in budget:
            details.append(f"random start {show(budget['pgd_random_start'])}")
        if budget.get("pgd_step_size_at_eps") is not None:
            details.append(f"step size {budget['pgd_step_size_at_eps']:.4g} at eps")
        if budget.get("pgd_loss"):
            details.append(f"{budget['pgd_loss']} loss")
        if (budget.get("pgd_eot_samples") or 1) > 1:
            details.append(f"EOT {budget['pgd_eot_samples']}")
        parts.append(text + (f" ({', '.join(details)})" if details else ""))
    if "half_run_steps" in budget:
        parts.append(f"against PGD {budget['half_run_steps']} steps (twice the step)")
    if "fgsm_steps" in budget:
        parts.append("FGSM 1 step")
    if "square_queries" in budget:
        restarts = budget.get("square_restarts", 1)
        parts.append(f"Square {budget['square_queries']:,} queries x {restarts} restart{'s' if restarts != 1 else ''}")
    if "gradients_per_example" in budget:
        parts.append("one input gradient per example and loss")
    for key, value in budget.items():
        if isinstance(value, dict):
            parts.append(f"{key}: {', '.join(f'{k} {show(v)}' for k, v in value.items()) or 'no budget recorded'}")
    if budget.get("declared_attacks"):
        parts.append(f"declared attacks {', '.join(map(str, budget['declared_attacks']))}")
    return parts


def _pairs_scope(evidence: dict[str, Any]) -> str | None:
    """The n of a check over (example, radius) pairs (a box verifier's PGD check: ``verified`` per
    radius): the distinct examples and the pairs, each named; an older robench's ``n`` was the pairs'
    sum, said so. ``None`` for other checks."""
    verified = evidence.get("verified")
    if not (isinstance(verified, list) and verified and all(isinstance(v, int) for v in verified) and "eps" in evidence):
        return None
    pairs, n = evidence.get("pairs"), evidence.get("n")
    radii = f"{len(verified)} radi{'us' if len(verified) == 1 else 'i'}"
    if isinstance(pairs, int) and isinstance(n, int):
        return f"n = {n:,} distinct examples verified at some radius; {pairs:,} (example, radius) pairs over {radii}"
    return f"{sum(verified):,} (example, radius) pairs over {radii} (distinct examples not recorded, at least {max(verified):,})"


def check_scope(check: Check) -> str:
    """The examples and attack budgets a check rests on, as recorded in its evidence:
    ``n = 200 (186 clean-correct); PGD 20 steps x 1 restart (...); FGSM 1 step``; says so where
    a check (of an older robench) did not record them."""
    evidence = check.evidence
    n, eligible = evidence.get("n"), evidence.get("eligible")
    pairs = _pairs_scope(evidence)
    if pairs is not None:
        text = pairs
    elif isinstance(n, int):
        text = f"n = {n:,}" + (f" ({eligible:,} clean-correct)" if isinstance(eligible, int) and eligible != n else "")
    elif isinstance(eligible, int):
        text = f"{eligible:,} clean-correct examples"
    else:
        text = "n not recorded"
    budget = evidence.get("budget")
    words = _budget_words(budget) if isinstance(budget, dict) else []
    if words:
        return "; ".join([text, *words])
    return "n and budget not recorded" if text == "n not recorded" else f"{text}; budget not recorded"


def check_finding(check: Check, evaluation: EvaluationResult, results: Results) -> str:
    """A check's message with every proportion in it shown as :meth:`MetricRecord.formatted` does,
    with its 95% interval and n (``69.0% [59.0, 77.9] (n = 100)`` instead of ``69.00%``).

    A proportion is taken from a record with that value (of the same evaluation, or of the attacks a
    ``declared attacks A vs B`` check compares), or rebuilt as ``k / n`` when the check states its n;
    a number with neither is left as the check wrote it.
    """
    evidence = check.evidence
    n = evidence.get("n")
    if n is None and evaluation.artifacts.get("kind") == "masking" and "source" not in evidence:
        n = evaluation.artifacts.get("n_examples")  # the check ran on the entry's own subset
    candidates = list(evaluation.records)
    source = str(evidence.get("source", ""))
    if source.startswith("declared attacks "):
        for key in source.removeprefix("declared attacks ").split(" vs "):
            candidates += results.records(f"attacks/{key.strip()}", "robust_accuracy")
    message = check.message
    for name, value in evidence.items():
        if name in _NOT_PROPORTIONS or isinstance(value, bool) or not isinstance(value, float) or not 0 <= value <= 1:
            continue
        written = f"{value:.2%}"
        if written not in message:
            continue
        record = next((r for r in candidates if r.unit == "fraction" and r.value is not None and "class" not in r.condition
                       and abs(r.value - value) < 1e-6 and (n is None or r.n == n)), None)  # fmt: skip
        if record is None:
            record = count_record(evaluation.key, name, value, n)
        if record is not None:
            shown, interval = record.formatted()
            message = message.replace(written, f"{shown} {interval} (n = {record.n})".replace("  ", " "))
    return message
