"""Calibration: reliability diagrams, ECE against corruption severity, all metrics per condition."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt

from robench.report.plots import figure_data_uri, new_figure
from robench.results import MetricRecord, Results

METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Accuracy"),
    ("ece", "ECE"),
    ("max_calibration_error", "MCE"),
    ("adaptive_ece", "Adaptive ECE"),
    ("classwise_ece", "Classwise ECE"),
    ("brier", "Brier"),
    ("nll", "NLL"),
)


def _label(condition: dict[str, Any]) -> str:
    kind = condition.get("condition")
    if kind == "attack":
        return f"attack {condition.get('attack')}"
    if kind == "corruption":
        return f"{condition.get('corruption')} s{condition.get('severity')}"
    return str(kind)


def _reliability_figure(panels: list[dict[str, Any]]) -> str:
    """One reliability diagram per panel: accuracy per confidence bin against the diagonal."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.3), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        edges = panel["edges"]
        width = [b - a for a, b in zip(edges[:-1], edges[1:])]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        accuracy = [a if a is not None else 0.0 for a in panel["accuracy"]]
        confidence = [c if c is not None else m for c, m in zip(panel["confidence"], centres)]
        ax.bar(edges[:-1], accuracy, width=width, align="edge", color="#4c72b0", edgecolor="white", label="accuracy")
        gaps = [c - a if n else 0.0 for c, a, n in zip(confidence, accuracy, panel["count"])]
        ax.bar(edges[:-1], gaps, bottom=accuracy, width=width, align="edge", color="#dd8452", alpha=0.5, label="gap")
        ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{panel['label']} (ECE {100 * panel['ece']:.1f}%)", fontsize=9)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return figure_data_uri(fig)


def _severity_figure(records: list[MetricRecord], clean: MetricRecord | None) -> str | None:
    """ECE against corruption severity, one line per corruption (Ovadia et al. 2019)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record.condition.get("condition") == "corruption" and isinstance(record.condition.get("severity"), int):
            series.setdefault(str(record.condition["corruption"]), []).append((int(record.condition["severity"]), float(record.value or 0)))
    if not series:
        return None
    fig, ax = new_figure(6.0, 3.6)
    for name, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", lw=1, label=name)
    if clean is not None and clean.value is not None:
        ax.axhline(100 * clean.value, color="black", ls="--", lw=1, label="clean")
    ax.set_xlabel("severity")
    ax.set_ylabel("ECE (%)")
    ax.set_xticks(sorted({p[0] for points in series.values() for p in points}))
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure_data_uri(fig)


def build(results: Results) -> dict[str, Any] | None:
    """Reliability diagrams (clean, worst attack, worst corruption), ECE vs severity, metric table."""
    evaluation = results.evaluation("calibration")
    if evaluation is None:
        return None
    plain = [r for r in evaluation.records if "split" not in r.condition]
    rows: dict[str, dict[str, Any]] = {}
    for record in plain:
        key = _label(record.condition)
        rows.setdefault(key, {"label": key, "kind": record.condition.get("condition"), "n": record.n, "metrics": {}})
        rows[key]["metrics"][record.name] = record
    scaled: dict[str, dict[str, Any]] = {}
    for record in evaluation.records:
        if record.condition.get("split") == "eval" and record.name in ("ece", "nll", "brier"):
            key = _label(record.condition)
            scaled.setdefault(key, {"label": key})[f"{record.name}_{record.condition.get('temperature')}"] = record

    panels = evaluation.artifacts.get("reliability", [])
    chosen = [p for p in panels if p["condition"].get("condition") == "clean"][:1]
    for kind in ("attack", "corruption"):
        of_kind = [p for p in panels if p["condition"].get("condition") == kind]
        if of_kind:
            worst = max(of_kind, key=lambda p: p["ece"])
            chosen.append({**worst, "label": ("worst attack: " if len(of_kind) > 1 else "") + _label(worst["condition"])
                           if kind == "attack" else "worst corruption: " + _label(worst["condition"])})  # fmt: skip
    clean_ece = next((r for r in plain if r.name == "ece" and r.condition.get("condition") == "clean"), None)
    return {
        "status": evaluation.status,
        "error": evaluation.error,
        "n_bins": evaluation.artifacts.get("n_bins") or evaluation.resolved.get("n_bins") or evaluation.declared.get("n_bins"),
        "metrics": METRICS,
        "rows": list(rows.values()),
        "reliability_figure": _reliability_figure(chosen) if chosen else None,
        "severity_figure": _severity_figure([r for r in plain if r.name == "ece"], clean_ece),
        "temperature": evaluation.artifacts.get("temperature"),
        "scaled": list(scaled.values()),
        "intervals": [
            (title, interval)
            for key, title in METRICS[1:]
            if (interval := next((r.interval for r in plain if r.name == key and r.interval), None))
        ],
    }
