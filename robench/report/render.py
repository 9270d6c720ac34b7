"""Render ``report.html`` from a results file alone: one self-contained page, figures inlined."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import jinja2

from robench.report.checklist import checklist
from robench.results import MetricRecord, Results, atomic_write_text, load_results
from robench.threat_model import format_eps

# (section module, title); a module's build() returns None when its evaluation did not run.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("clean", "Clean accuracy"),
    ("attacks", "Empirical robustness"),
    ("corruptions", "Common corruptions"),
    ("stability", "Stability under perturbation sequences"),
    ("calibration", "Calibration"),
    ("certification", "Certification"),
    ("leaderboard", "Leaderboard comparison"),
)


def _pct(record: MetricRecord | None, digits: int = 1) -> str:
    if record is None or record.value is None:
        return "–"
    return f"{100 * record.value:.{digits}f}%"


def _ci(record: MetricRecord | None, digits: int = 1) -> str:
    if record is None or record.ci_low is None or record.ci_high is None:
        return ""
    return f"[{100 * record.ci_low:.{digits}f}, {100 * record.ci_high:.{digits}f}]"


def _value(record: MetricRecord | None) -> str:
    return "–" if record is None else record.formatted()[0]


def _value_ci(record: MetricRecord | None) -> str:
    """The interval in the same form as :func:`_value` (:meth:`MetricRecord.formatted`)."""
    return "" if record is None else record.formatted()[1]


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("robench", "report/templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, ci=_ci, seconds=_seconds, eps=format_eps, value=_value, value_ci=_value_ci)
    return env


def headline(results: Results) -> dict[str, MetricRecord | None]:
    """The summary numbers: clean accuracy and worst-case robust accuracy over all attacks."""
    clean = next(iter(results.records("clean", "accuracy")), None)
    worst = results.records(name="worst_case_robust_accuracy")
    return {"clean": clean, "robust": worst[-1] if worst else None}


# Metrics shown in summaries (CLI table, report summary), in this order; records measured at one
# class, severity, eps or radius are detail, not summary.
HEADLINE_NAMES: tuple[str, ...] = (
    "accuracy",
    "robust_accuracy",
    "worst_case_robust_accuracy",
    "mean_corruption_accuracy",
    "mce",
    "relative_mce",
    "mean_flip_rate",
    "mean_flip_probability",
    "certified_accuracy",
    "average_certified_radius",
    "ece",
)
_DETAIL_KEYS = frozenset({"class", "severity", "radius", "corruption", "perturbation", "bin", "split", "temperature"})


# Condition keys already implied by the evaluation key and the threat model; outside the attack
# evaluations, ``attack`` and ``condition`` tell records apart (calibration clean vs under attack).
_IMPLIED_KEYS = frozenset({"attack", "norm", "eps", "goal", "kind", "condition"})
_IMPLIED_ELSEWHERE = frozenset({"norm", "eps", "goal", "kind"})


def _declared_eps(results: Results) -> float | None:
    adversary = results.threat_model.get("adversary") or {}
    eps = adversary.get("eps")
    return float(eps) if isinstance(eps, (int, float)) else None


def summary_records(results: Results) -> list[MetricRecord]:
    """Headline records of a run: overall numbers per evaluation, no per-class/per-cell detail."""
    eps = _declared_eps(results)

    def headline(r: MetricRecord) -> bool:
        if r.name not in HEADLINE_NAMES or _DETAIL_KEYS & set(r.condition):
            return False
        if "eps" in r.condition and (eps is None or abs(float(r.condition["eps"]) - eps) > 1e-12):  # a sweep point
            return False
        return not (r.evaluation == "calibration" and r.name == "accuracy")

    picked = [r for r in results.records() if headline(r)]
    worst = [r for r in picked if r.name == "worst_case_robust_accuracy"]
    picked = [r for r in picked if r.name != "worst_case_robust_accuracy" or r is worst[-1]]  # the final worst case
    order = {name: i for i, name in enumerate(HEADLINE_NAMES)}
    sections = {key: i for i, (key, _) in enumerate(SECTIONS)}
    return sorted(picked, key=lambda r: (sections.get(r.evaluation.split("/")[0], 99), order[r.name]))


def record_label(record: MetricRecord) -> str:
    """A short human label: ``attacks/pgd robust_accuracy`` (+ condition when present)."""
    if record.name == "worst_case_robust_accuracy" and record.condition.get("attack"):
        # per example the worst over every attack so far: not the attack whose evaluation holds it
        return f"attacks worst_case_robust_accuracy (over {str(record.condition['attack']).replace('+', ', ')})"
    implied = _IMPLIED_KEYS if record.evaluation.startswith("attacks/") else _IMPLIED_ELSEWHERE
    condition = ", ".join(f"{k}={v}" for k, v in record.condition.items() if k not in implied)
    return f"{record.evaluation} {record.name}" + (f" ({condition})" if condition else "")


def build_sections(results: Results) -> list[dict[str, Any]]:
    """Context of every section, in report order (``data`` is None when it did not run)."""
    env = _environment()
    out = []
    for name, title in SECTIONS:
        try:
            module = importlib.import_module(f"robench.report.sections.{name}")
        except ModuleNotFoundError:
            module = None
        data = module.build(results) if module is not None else None
        template = f"sections/{name}.html.j2"
        has_template = template in env.list_templates()
        out.append({"name": name, "title": title, "data": data, "template": template if has_template else None})
    return out


def declared_in_words(results: Results) -> list[str]:
    """The declared evaluations, one phrase each (``attacks: fgsm, pgd``)."""
    declared = results.threat_model.get("evaluations") or {}
    phrases = []
    if declared.get("clean", True):
        phrases.append("clean accuracy")
    for section in ("attacks", "certification"):
        entries = declared.get(section) or []
        if entries:
            phrases.append(f"{section}: " + ", ".join(e.get("id") or e.get("name", "?") for e in entries))
    corruptions = declared.get("corruptions")
    if corruptions:
        names = corruptions.get("corruptions") or []
        phrases.append(f"corruptions: {len(names)} corruption(s) x severities {', '.join(map(str, corruptions.get('severities') or []))} ({corruptions.get('source', 'generated')})")
    stability = declared.get("stability")
    if stability:
        phrases.append(f"stability: {len(stability.get('perturbations') or [])} perturbation sequence(s)")
    calibration = declared.get("calibration")
    if calibration:
        phrases.append(f"calibration under {', '.join(calibration.get('conditions') or [])}")
    return phrases


def _warnings(results: Results) -> list[str]:
    warnings = [f"{e.key}: {w}" for e in results.evaluations for w in e.warnings]
    if results.model.randomized:
        warnings.insert(0, "The model's outputs are random (two identical forward passes differ): use EOT attacks.")
    if results.model.trusted_pickle:
        warnings.insert(0, "The checkpoint was unpickled with --trust-checkpoint (it could run code).")
    if results.status != "success":
        warnings.insert(0, f"The run did not finish: status {results.status}: {results.error or 'no error recorded'}.")
    return warnings


def _totals(results: Results) -> dict[str, float]:
    costs = [e.cost for e in results.evaluations]
    return {
        "wall_time_s": sum(c.wall_time_s for c in costs),
        "forward_passes": sum(c.forward_passes for c in costs),
        "backward_passes": sum(c.backward_passes for c in costs),
    }


def render_html(results: Results) -> str:
    """The report as an HTML string."""
    env = _environment()
    sections = build_sections(results)
    leaderboard = next((s["data"] for s in sections if s["name"] == "leaderboard"), None) or {}
    notes = [f"{item['comparison'].board}: {note}" for item in leaderboard.get("comparisons", []) for note in item["comparison"].notes]
    return env.get_template("report.html.j2").render(
        results=results,
        headline=headline(results),
        summary=summary_records(results),
        checklist=checklist(results),
        declared=declared_in_words(results),
        sections=sections,
        warnings=_warnings(results),
        leaderboard_notes=notes,
        totals=_totals(results),
        checks=[(e.key, c) for e in results.evaluations for c in e.checks],
        record_label=record_label,
    )


def render_report(results: Results | str | Path, out: str | Path) -> Path:
    """Render ``results`` (or a results.json path) to ``out`` atomically; return the path."""
    if not isinstance(results, Results):
        results = load_results(results)
    return atomic_write_text(Path(out), render_html(results))
