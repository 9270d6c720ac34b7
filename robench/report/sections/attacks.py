"""Empirical robustness: threat model, attacks and their strength, clean vs robust accuracy,
AutoAttack breakdown, robust accuracy vs eps, minimal-norm quantiles, masking checks, cost."""

from __future__ import annotations

from typing import Any

from robench.report.plots import figure_data_uri, interval_bars, new_figure
from robench.results import EvaluationResult, Results
from robench.threat_model import format_eps

# Parameters that state an attack's strength, shown first in the table.
_STRENGTH_KEYS = ("version", "attacks", "steps", "n_iter", "restarts", "n_restarts", "n_queries", "square_queries",
                  "eot_samples", "eot_iter", "loss", "rel_step_size", "n_target_classes", "norm", "mode", "compile")  # fmt: skip


def _find(evaluation: EvaluationResult, name: str) -> Any:
    return next((r for r in evaluation.records if r.name == name and "class" not in r.condition), None)


def _strength(evaluation: EvaluationResult) -> list[tuple[str, Any]]:
    params = evaluation.resolved or {}
    shown = [(k, params[k]) for k in _STRENGTH_KEYS if params.get(k) not in (None, False)]
    return [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in shown]


def _curves(evaluations: list[EvaluationResult]) -> list[dict[str, Any]]:
    curves = []
    for evaluation in evaluations:
        curve = evaluation.artifacts.get("curve")
        if curve and curve.get("eps"):
            norm = evaluation.artifacts.get("norm") or (evaluation.resolved or {}).get("norm")
            key = evaluation.key.split("/", 1)[1]
            if evaluation.artifacts.get("kind") == "masking":
                label = f"PGD-{(evaluation.resolved or {}).get('steps', '')} sweep ({key})"
            else:
                label = key + (f", minimal {norm}" if norm else "")
            curves.append({"label": label, "eps": curve["eps"], "accuracy": curve["robust_accuracy"]})
    return curves


def _curve_figure(curves: list[dict[str, Any]], points: list[dict[str, Any]], eps: float | None) -> str | None:
    if not curves:
        return None
    fig, ax = new_figure()
    for curve in curves:
        ax.plot(curve["eps"], [a if a is not None else float("nan") for a in curve["accuracy"]], marker="o", ms=3, label=curve["label"])
    for point in points:
        ax.scatter([point["eps"]], [point["accuracy"]], marker="x", zorder=3, label=point["label"])
    if eps is not None:
        ax.axvline(eps, color="grey", linestyle="--", linewidth=1, label="threat-model ε")
    ax.set_xlabel("ε")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return figure_data_uri(fig)


def build(results: Results) -> dict[str, Any] | None:
    """Everything the attacks template shows; ``None`` when no attack ran."""
    evaluations = [e for e in results.evaluations if e.section == "attacks"]
    if not evaluations:
        return None
    adversary = results.threat_model.get("adversary") or {}
    rows = []
    for evaluation in evaluations:
        rows.append(
            {
                "key": evaluation.key.split("/", 1)[1],
                "name": evaluation.name,
                "knowledge": evaluation.artifacts.get("knowledge", ""),
                "status": evaluation.status,
                "error": evaluation.error,
                "strength": _strength(evaluation),
                "clean": _find(evaluation, "clean_accuracy"),
                "robust": _find(evaluation, "robust_accuracy"),
                "success": _find(evaluation, "attack_success_rate"),
                "median_norm": _find(evaluation, "median_perturbation_norm"),
                "worst_gap": _find(evaluation, "worst_class_gap"),
                "worst_case": _find(evaluation, "worst_case_robust_accuracy"),
                "cost": evaluation.cost,
                "warnings": evaluation.warnings,
            }
        )
    plotted = [r for r in rows if r["robust"] is not None]
    bars = None
    if plotted:
        bars = interval_bars(
            [r["key"] for r in plotted],
            [r["robust"].value for r in plotted],
            [r["robust"].ci_low for r in plotted],
            [r["robust"].ci_high for r in plotted],
            "robust accuracy (95% CI)",
        )
    breakdowns = [
        {"key": e.key.split("/", 1)[1], "version": e.artifacts.get("version"), "rows": e.artifacts["breakdown"],
         "log": e.artifacts.get("log", [])}  # fmt: skip
        for e in evaluations
        if e.artifacts.get("kind") == "autoattack"
    ]
    min_norm = [
        {"key": e.key.split("/", 1)[1], "norm": e.artifacts.get("norm"), "quantiles": e.artifacts.get("quantiles", {}),
         "not_found": e.artifacts.get("not_found", 0)}  # fmt: skip
        for e in evaluations
        if e.artifacts.get("kind") == "min_norm"
    ]
    eps = adversary.get("eps")
    points = [{"label": r["key"], "eps": eps, "accuracy": r["robust"].value} for r in plotted if "curve" not in
              next(e for e in evaluations if e.key.endswith("/" + r["key"])).artifacts]  # fmt: skip
    checks = [{"evaluation": e.key.split("/", 1)[1], "check": c} for e in evaluations for c in e.checks]
    return {
        "rows": rows,
        "figure": bars,
        "curve_figure": _curve_figure(_curves(evaluations), points, eps),
        "breakdowns": breakdowns,
        "min_norm": min_norm,
        "eps_text": format_eps(eps) if eps else None,
        "adversary": adversary,
        "checks": checks,
        "n_warn": sum(c["check"].status != "pass" for c in checks),
    }
