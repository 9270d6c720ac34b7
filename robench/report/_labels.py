"""How records and plain values are named and shown, shared by the report, the checklist and the exports."""

from __future__ import annotations

from typing import Any

from robench.results import Check, EvaluationResult, MetricRecord, Results

# Condition keys already implied by the evaluation key and the threat model; outside the attack
# evaluations, ``attack`` and ``condition`` tell records apart (calibration clean vs under attack).
_IMPLIED_KEYS = frozenset({"attack", "norm", "eps", "goal", "kind", "condition"})
_IMPLIED_ELSEWHERE = frozenset({"norm", "eps", "goal", "kind"})


def worst_case_attacks(record: MetricRecord) -> list[str]:
    """The attacks a worst-case record is taken over (``"fgsm+pgd"`` -> ``["fgsm", "pgd"]``)."""
    chain = record.condition.get("attack")
    return [a for a in str(chain).split("+") if a] if chain else []


def record_label(record: MetricRecord) -> str:
    """A short human label: ``attacks/pgd robust_accuracy`` (+ condition when present)."""
    if record.name == "worst_case_robust_accuracy" and record.condition.get("attack"):
        # per example the worst over every attack so far: not the attack whose evaluation holds it
        return f"attacks worst_case_robust_accuracy (over {', '.join(worst_case_attacks(record))})"
    implied = _IMPLIED_KEYS if record.evaluation.startswith("attacks/") else _IMPLIED_ELSEWHERE
    condition = ", ".join(f"{k}={v}" for k, v in record.condition.items() if k not in implied)
    return f"{record.evaluation} {record.name}" + (f" ({condition})" if condition else "")


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
