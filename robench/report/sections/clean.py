"""Clean accuracy, overall and per class."""

from __future__ import annotations

from typing import Any

from robench.results import Results


def build(results: Results) -> dict[str, Any] | None:
    """The overall record and the per-class ones."""
    evaluation = results.evaluation("clean")
    if evaluation is None:
        return None
    overall = next((r for r in evaluation.records if r.name == "accuracy"), None)
    per_class = [r for r in evaluation.records if r.name == "accuracy_per_class"]
    return {"overall": overall, "per_class": per_class, "cost": evaluation.cost, "status": evaluation.status, "error": evaluation.error}
