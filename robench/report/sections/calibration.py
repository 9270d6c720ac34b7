"""Calibration: reliability diagrams, ECE against corruption severity, all metrics per condition."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import matplotlib.pyplot as plt

from robench.calibration.evaluate import SCORED_CLEAN_NOTE, scored_clean
from robench.report.plots import PALETTE, figure_data_uri, line_style
from robench.results import MetricRecord, Results
from robench.threat_model import CalibrationSpec

METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Accuracy"),
    ("ece", "ECE"),
    ("max_calibration_error", "MCE"),
    ("adaptive_ece", "Adaptive ECE"),
    ("classwise_ece", "Classwise ECE"),
    ("brier", "Brier"),
    ("nll", "NLL"),
)


def condition_rank(condition: dict[str, Any]) -> int:
    """Order of the conditions in the section and the headline: clean, attacks scored at their
    adversarial point, attacks whose unbroken examples are scored clean, then the rest."""
    kind = condition.get("condition")
    if kind == "clean":
        return 0
    if kind == "attack":
        return 2 if scored_clean(condition) else 1
    return 3


def _short_label(condition: dict[str, Any]) -> str:
    """A figure title that leaves the axes their width: the attack or the corruption cell."""
    kind = condition.get("condition")
    if kind == "attack":
        return f"{condition.get('attack')}{'*' if scored_clean(condition) else ''}"
    if kind == "corruption":
        return f"{condition.get('corruption')} s{condition.get('severity')}"
    return str(kind)


def _label(condition: dict[str, Any]) -> str:
    kind = condition.get("condition")
    if kind == "attack":
        clean = SCORED_CLEAN_NOTE if scored_clean(condition) else ""
        return f"attack {condition.get('attack')}{clean}"
    if kind == "corruption":
        return f"{condition.get('corruption')} s{condition.get('severity')}"
    return str(kind)


def _reliability_figure(panel: dict[str, Any]) -> str:
    """A reliability diagram: accuracy per confidence bin against the diagonal, with the gap to the
    bin's mean confidence, over a histogram of how many examples fall in each bin (empty bins are
    not evidence of calibration; sparse ones are noisy)."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(3.0, 3.7), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    edges = panel["edges"]
    width = [b - a for a, b in pairwise(edges)]
    centres = [(a + b) / 2 for a, b in pairwise(edges)]
    counts = panel["count"]
    accuracy = [a if a is not None else 0.0 for a in panel["accuracy"]]
    confidence = [c if c is not None else m for c, m in zip(panel["confidence"], centres)]
    ax.bar(edges[:-1], accuracy, width=width, align="edge", color=PALETTE[0], edgecolor="white", label="accuracy")
    gaps = [c - a if n else 0.0 for c, a, n in zip(confidence, accuracy, counts)]
    # hatched outline only: where accuracy exceeds confidence the gap lies over the accuracy bar and stays readable
    ax.bar(edges[:-1], gaps, bottom=accuracy, width=width, align="edge", facecolor="none", hatch="///", linewidth=0.8,
           edgecolor=PALETTE[5], label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{panel['title']} (ECE {100 * panel['ece']:.2f}%)", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    hist.bar(edges[:-1], counts, width=width, align="edge", color="#777777", edgecolor="white")
    top = max(counts) if counts else 0
    for left, w, count in zip(edges[:-1], width, counts):
        if count:
            hist.text(left + w / 2, count, str(count), ha="center", va="bottom", fontsize=6)
    hist.set_ylim(0, 1.3 * top if top else 1)
    hist.set_ylabel("n", fontsize=8)
    hist.tick_params(axis="y", labelsize=7)
    hist.set_xlabel("confidence")
    hist.spines[["top", "right"]].set_visible(False)
    return figure_data_uri(fig)


def _severity_figure(records: list[MetricRecord], clean: MetricRecord | None) -> str | None:
    """ECE against corruption severity (Ovadia et al. 2019): one panel per corruption group (noise,
    blur, weather, digital; a group's few lines stay apart), one line per corruption with the
    records' 95% intervals as error bars, the clean ECE and its interval in every panel; the shared
    axis starts at 0 (an ECE is >= 0)."""
    from robench.corruptions import GROUPS

    series: dict[str, list[MetricRecord]] = {}
    for record in records:
        if record.condition.get("condition") == "corruption" and isinstance(record.condition.get("severity"), int) and record.value is not None:
            series.setdefault(str(record.condition["corruption"]), []).append(record)
    if not series:
        return None
    order = ("noise", "blur", "weather", "digital")
    groups: dict[str, list[str]] = {}
    for name in sorted(series):
        groups.setdefault(GROUPS.get(name, "other"), []).append(name)
    panels = sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.6, 3.2), sharey=True, squeeze=False)
    top = 0.0
    severities = sorted({int(r.condition["severity"]) for points in series.values() for r in points})  # type: ignore[arg-type]
    for ax, group in zip(axes[0], panels):
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        for index, name in enumerate(groups[group]):
            points = sorted(series[name], key=lambda r: int(r.condition["severity"]))  # type: ignore[arg-type]
            # a small offset per line keeps overlapping error bars apart
            xs = [int(r.condition["severity"]) + 0.06 * (index - (len(groups[group]) - 1) / 2) for r in points]  # type: ignore[arg-type]
            ys = [100 * r.value for r in points]  # type: ignore[operator]
            has_ci = all(r.ci_low is not None and r.ci_high is not None for r in points)
            yerr = None
            if has_ci:
                yerr = [[y - 100 * r.ci_low for y, r in zip(ys, points)], [100 * r.ci_high - y for y, r in zip(ys, points)]]  # type: ignore[operator]
            ax.errorbar(xs, ys, yerr=yerr, lw=1, ms=4, capsize=2, elinewidth=0.8, label=name, **line_style(index))
            top = max(top, *(100 * (r.ci_high if has_ci else r.value) for r in points))  # type: ignore[operator]
        if clean is not None and clean.value is not None:
            ax.axhline(100 * clean.value, color="black", ls="--", lw=1, label="clean")
            if clean.ci_low is not None and clean.ci_high is not None:
                ax.axhspan(100 * clean.ci_low, 100 * clean.ci_high, color="black", alpha=0.08, lw=0)
            top = max(top, 100 * (clean.ci_high if clean.ci_high is not None else clean.value))
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("severity")
        ax.set_xticks(severities)
        ax.legend(fontsize=6, loc="upper left")
    axes[0][0].set_ylabel("ECE (%, 95% CI)")
    axes[0][0].set_ylim(0, 1.05 * top if top > 0 else 1)
    fig.tight_layout()
    return figure_data_uri(fig)


def _clean_correct(results: Results, attack: str, n: int | None) -> int | None:
    """How many of an attack condition's examples the model classified correctly clean: the attack's
    own clean-accuracy count, when it is a count of 0/1 outcomes over the same n (``None`` for a
    randomized model's pass means, which have no such count, or when it is not recorded)."""
    record = next((r for r in results.records(f"attacks/{attack}", "clean_accuracy") if "class" not in r.condition), None)
    if record is None or record.value is None or record.n != n or record.interval != "clopper-pearson" or not n:
        return None
    return round(record.value * n)


def _declared_bins(results: Results) -> int:
    """The threat model's calibration ``n_bins`` (its schema default when it states none)."""
    declared = ((results.threat_model.get("evaluations") or {}).get("calibration") or {}).get("n_bins")
    return int(declared) if declared else CalibrationSpec.model_fields["n_bins"].default


def _chosen_panels(panels: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The reliability diagrams to draw, each with its ``title`` (short) and ``label`` (the caption):
    clean, the worst attack and the worst corruption cell by the ECE point estimate; and how the
    attack was chosen.

    The worst attack is chosen among the attacks scored at their adversarial point when there is
    one: an attack whose unbroken examples are scored at the clean input brings their clean,
    confident outputs, so its ECE is not comparable with theirs and would win for that reason."""
    chosen = [{**p, "title": "clean"} for p in panels if p["condition"].get("condition") == "clean"][:1]
    attacks = [p for p in panels if p["condition"].get("condition") == "attack"]
    at_point = [p for p in attacks if not scored_clean(p["condition"])]
    how = None
    if attacks:
        pool = at_point or attacks
        worst = max(pool, key=lambda p: p["ece"])
        how = {"among": len(pool), "attacks": len(attacks), "at_point": bool(at_point),
               "left_out": sorted(str(p["condition"].get("attack")) for p in attacks if p not in pool),
               "overall": max(attacks, key=lambda p: p["ece"]) is worst}  # fmt: skip
        prefix = ""
        if len(pool) > 1:
            prefix = "worst attack by ECE" + (" of those scored at their adversarial point" if how["left_out"] else "") + ": "
        elif how["left_out"]:
            prefix = "the attack scored at its adversarial point: "
        chosen.append({**worst, "title": _short_label(worst["condition"]), "label": prefix + _label(worst["condition"])})
    corruptions = [p for p in panels if p["condition"].get("condition") == "corruption"]
    if corruptions:
        worst = max(corruptions, key=lambda p: p["ece"])
        prefix = "worst corruption by ECE: " if len(corruptions) > 1 else ""
        chosen.append({**worst, "title": _short_label(worst["condition"]), "label": prefix + _label(worst["condition"])})
    return chosen, how


def _mce_min_count(evaluation: Any) -> int | None:
    """The MCE's minimum bin count as recorded (``None``: an older robench took every occupied bin)."""
    recorded = evaluation.artifacts.get("mce_min_count") or evaluation.resolved.get("mce_min_count")
    return int(recorded) if recorded else None


def build(results: Results) -> dict[str, Any] | None:
    """Reliability diagrams (clean, worst attack, worst corruption), ECE vs severity, metric table."""
    evaluation = results.evaluation("calibration")
    if evaluation is None:
        return None
    plain = [r for r in evaluation.records if "split" not in r.condition]
    rows: dict[str, dict[str, Any]] = {}
    for record in sorted(plain, key=lambda r: condition_rank(r.condition)):  # stable: recorded order within a rank
        key = _label(record.condition)
        rows.setdefault(key, {"label": key, "kind": record.condition.get("condition"), "attack": record.condition.get("attack"),
                              "n": record.n, "metrics": {}})  # fmt: skip
        rows[key]["metrics"][record.name] = record
    scaled: dict[str, dict[str, Any]] = {}
    for record in sorted(evaluation.records, key=lambda r: condition_rank(r.condition)):
        if record.condition.get("split") == "eval" and record.name in ("ece", "nll", "brier"):
            key = _label(record.condition)
            row = scaled.setdefault(key, {"label": key, "n": record.n})
            row[f"{record.name}_{record.condition.get('temperature')}"] = record

    unfooled_at = []
    for row in rows.values():
        if row["kind"] == "attack":
            attack = str(row["attack"])
            row["clean_correct"] = _clean_correct(results, attack, row["n"])
            attacked = results.evaluation(f"attacks/{attack}")
            facts = (attacked.artifacts.get("procedure") or {}) if attacked is not None else {}
            unfooled_at.append((attack, facts.get("unfooled_at") or "not recorded"))

    panels = evaluation.artifacts.get("reliability", [])
    chosen, worst_attack = _chosen_panels(panels)
    clean_ece = next((r for r in plain if r.name == "ece" and r.condition.get("condition") == "clean"), None)
    scaled_intervals = [
        (title, interval)
        for key, title in METRICS[1:]
        if key in ("ece", "nll", "brier")
        and (interval := next((r.interval for r in evaluation.records
                               if r.condition.get("split") == "eval" and r.name == key and r.interval), None))
    ]  # fmt: skip
    return {
        "status": evaluation.status,
        "error": evaluation.error,
        "n_bins": evaluation.artifacts.get("n_bins") or evaluation.resolved.get("n_bins") or _declared_bins(results),
        "metrics": METRICS,
        "rows": list(rows.values()),
        "under_attack": any(row["kind"] == "attack" for row in rows.values()),
        "unfooled_at": unfooled_at,
        "panels_of": {kind: sum(p["condition"].get("condition") == kind for p in panels) for kind in ("attack", "corruption")},
        "worst_attack": worst_attack,
        "starred": any("*" in p["title"] for p in chosen),
        "mce_min_count": _mce_min_count(evaluation),
        "reliability_figures": [{"label": p["label"], "title": p["title"], "ece": p["ece"], "uri": _reliability_figure(p)} for p in chosen],
        "severity_figure": _severity_figure([r for r in plain if r.name == "ece"], clean_ece),
        "temperature": evaluation.artifacts.get("temperature"),
        "scaled": list(scaled.values()),
        "scaled_intervals": scaled_intervals,
        "intervals": [
            (title, interval)
            for key, title in METRICS[1:]
            if (interval := next((r.interval for r in plain if r.name == key and r.interval), None))
        ],
    }
