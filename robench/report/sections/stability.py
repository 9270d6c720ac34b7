"""Stability under perturbation sequences: flip probability, top-5 distance, flip rate, a strip."""

from __future__ import annotations

from typing import Any

from robench.report.plots import figure_data_uri, new_figure
from robench.results import MetricRecord, Results
from robench.stability.evaluate import BOOTSTRAP_INTERVAL, BOOTSTRAP_RESAMPLES


def _flip_figure(rows: list[dict[str, Any]]) -> str:
    """Bars of the flip probability per perturbation with their 95% intervals (see the section's text)."""
    labels = [row["perturbation"] for row in rows]
    values = [row["fp"].value for row in rows]
    errors = [
        [v - (row["fp"].ci_low if row["fp"].ci_low is not None else v) for v, row in zip(values, rows)],
        [(row["fp"].ci_high if row["fp"].ci_high is not None else v) - v for v, row in zip(values, rows)],
    ]
    fig, ax = new_figure(max(4.0, 0.6 * len(labels) + 2), 3.4)
    colors = ["#dd8452" if row["noise"] else "#4c72b0" for row in rows]
    ax.bar(labels, values, yerr=errors, capsize=4, color=colors)
    ax.set_ylabel("flip probability (95% CI)")
    ax.set_ylim(0, max(0.05, max(values, default=0) * 1.25 + max(errors[1], default=0)))
    ax.tick_params(axis="x", rotation=30)
    return figure_data_uri(fig)


def build(results: Results) -> dict[str, Any] | None:
    """Rows per perturbation, the means, a bar chart and one sequence strip per perturbation."""
    evaluation = results.evaluation("stability")
    if evaluation is None:
        return None
    artifacts = {a["perturbation"]: a for a in evaluation.artifacts.get("perturbations", [])}

    def find(name: str, perturbation: str) -> MetricRecord | None:
        return next((r for r in evaluation.records if r.name == name and r.condition.get("perturbation") == perturbation), None)

    rows = []
    for record in evaluation.records:
        if record.name != "flip_probability":
            continue
        name = str(record.condition["perturbation"])
        artifact = artifacts.get(name, {})
        rows.append(
            {
                "perturbation": name,
                "noise": artifact.get("noise", False),
                "frames": artifact.get("frames"),
                "comparisons": artifact.get("comparisons"),
                "fp": record,
                "t5d": find("top5_distance", name),
                "fr": find("flip_rate", name),
                "strip": artifact.get("strip"),
            }
        )

    def summary(name: str) -> MetricRecord | None:
        return next((r for r in evaluation.records if r.name == name), None)

    return {
        "status": evaluation.status,
        "error": evaluation.error,
        "rows": rows,
        "mfp": summary("mean_flip_probability"),
        "mt5d": summary("mean_top5_distance"),
        "mfr": summary("mean_flip_rate"),
        "figure": _flip_figure(rows) if rows else None,
        "resolved": evaluation.resolved,
        "difficulty": evaluation.artifacts.get("difficulty"),
        "noise_level": evaluation.artifacts.get("noise_level"),
        "table": evaluation.artifacts.get("table"),
        "t5d_max": evaluation.artifacts.get("top5_distance_max"),
        "exact_rows": [row["perturbation"] for row in rows
                       if any(str(r.interval or "").startswith("exact") for r in (row["fp"], row["t5d"]) if r is not None)],
        "resamples": BOOTSTRAP_RESAMPLES,
        # results of a robench before the Fay-Feuer join: their intervals are the bootstrap alone
        "bootstrap_only": sorted({f"{r.name.replace('_', ' ')} {r.condition.get('perturbation', '(mean)')}"
                                  for r in evaluation.records if r.interval == BOOTSTRAP_INTERVAL}),
        "unpaired_means": [name for name in ("mean_flip_probability", "mean_top5_distance", "mean_flip_rate")
                           if (r := summary(name)) is not None and r.ci_low is None],
        "cost": evaluation.cost,
    }
