"""Stability under perturbation sequences: flip probability, top-5 distance, flip rate, a strip."""

from __future__ import annotations

from typing import Any

from matplotlib.patches import Patch

from robench.report.plots import PALETTE, figure_data_uri, new_figure
from robench.report.sections.corruptions import table_mismatch
from robench.results import MetricRecord, Results
from robench.stability.evaluate import BOOTSTRAP_INTERVAL, BOOTSTRAP_RESAMPLES
from robench.stability.params import TABLES, first_frame, translation_range

KIND_COLOURS = {"noise": PALETTE[1], "sequential": PALETTE[0]}


def _flip_figure(rows: list[dict[str, Any]]) -> str:
    """Bars of the flip probability per perturbation with their 95% intervals, coloured by kind with
    a legend, each labelled with its value (a bar of ~0 height stays readable)."""
    labels = [row["perturbation"] for row in rows]
    values = [row["fp"].value for row in rows]
    errors = [
        [v - (row["fp"].ci_low if row["fp"].ci_low is not None else v) for v, row in zip(values, rows)],
        [(row["fp"].ci_high if row["fp"].ci_high is not None else v) - v for v, row in zip(values, rows)],
    ]
    fig, ax = new_figure(max(4.0, 0.6 * len(labels) + 2), 3.6)
    kinds = ["noise" if row["noise"] else "sequential" for row in rows]
    ax.bar(labels, values, yerr=errors, capsize=4, color=[KIND_COLOURS[k] for k in kinds], edgecolor="#333333", linewidth=0.6)
    top = max(0.05, max(values, default=0) * 1.25 + max(errors[1], default=0))
    for x, (value, high, kind) in enumerate(zip(values, errors[1], kinds)):
        # a marker of the bar's colour at its value: a bar of ~0 height keeps its colour and its place
        ax.plot(x, value, marker="D", ms=5, color=KIND_COLOURS[kind], markeredgecolor="#333333", zorder=3, clip_on=False)
        ax.text(x, value + high + 0.01 * top, f"{100 * value:.2f}%", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("flip probability (95% CI)")
    ax.set_ylim(0, 1.12 * top)
    ax.tick_params(axis="x", rotation=30)
    present = [k for k in KIND_COLOURS if k in kinds]
    ax.legend(handles=[Patch(facecolor=KIND_COLOURS[k], edgecolor="#333333", label=k) for k in present], fontsize=8, loc="upper left")
    return figure_data_uri(fig)


def _sequence_notes(evaluation: Any, names: list[str], input_shape: list[int]) -> dict[str, Any]:
    """What the sequences are on these images: the table-mismatch note the corruptions section gives,
    the translation range in pixels, and the sequential perturbations whose frame 0 is already
    perturbed (``{}`` parts for released files, whose frames are as stored, or an unknown table)."""
    resolved = evaluation.resolved
    table = str(evaluation.artifacts.get("table") or resolved.get("table"))
    generated = resolved.get("source") == "generated"
    if table not in TABLES:
        return {"mismatch": None, "translation": None, "perturbed_first": []}
    side = min(input_shape[1:]) if len(input_shape) == 3 else None
    translation = None
    if "translate" in names:
        low, high = translation_range(table)
        share = f" (up to {100 * max(-low, high) / side:.0f}% of the {side} px width)" if side else ""
        translation = f"translate shifts the image horizontally from {low:+d} to {high:+d} px, one pixel a frame{share}"
    return {
        "mismatch": table_mismatch({**resolved, "table": table}, input_shape, "perturbation sequences", "perturbation table")
        if generated else None,
        "translation": translation,
        "perturbed_first": [(name, words) for name in names if (words := first_frame(name, table)) is not None],
    }


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

    notes = _sequence_notes(evaluation, [row["perturbation"] for row in rows], list(results.dataset.input_shape))
    firsts = dict(notes["perturbed_first"])
    for row in rows:
        row["first_frame"] = firsts.get(row["perturbation"])
    return {
        **notes,
        "flip_rates": any(row["fr"] is not None for row in rows),
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
