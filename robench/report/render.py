"""Render ``report.html`` from a results file alone: one self-contained page, figures inlined."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import jinja2

from robench._errors import ConfigError, first_line
from robench.report import _coverage
from robench.report._labels import at_threat, check_finding, check_scope, record_label, show, summary_label
from robench.report.checklist import ChecklistItem, checklist, code_recorded
from robench.results import MetricRecord, Results, atomic_write_text, is_dirty, load_results, short_sha256
from robench.threat_model import applicable_fields, format_eps

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


@jinja2.pass_context
def _value(context: Any, record: MetricRecord | None) -> str:
    return "–" if record is None else _formatted(context, record)[0]


@jinja2.pass_context
def _value_ci(context: Any, record: MetricRecord | None) -> str:
    """The interval in the same form as :func:`_value` (:meth:`MetricRecord.formatted`)."""
    return "" if record is None else _formatted(context, record)[1]


def _formatted(context: Any, record: MetricRecord) -> tuple[str, str]:
    results = context.get("results")  # the run's, for the radii of a value not certifiable by construction
    return results.formatted(record) if isinstance(results, Results) else record.formatted()


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def _pretty_json(value: Any, indent: int | None = None) -> str:
    """JSON for reading inside HTML text (``<pre>``, ``<code>``): autoescaping makes it safe, so
    quotes stay quotes (jinja's ``tojson`` writes ``\\u0027``, meant for ``<script>``)."""
    import json

    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("robench", "report/templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, ci=_ci, seconds=_seconds, eps=format_eps, value=_value, value_ci=_value_ci, show=show, pretty_json=_pretty_json, short_sha256=short_sha256)
    return env


def headline(results: Results, items: list[ChecklistItem] | None = None) -> dict[str, Any]:
    """The summary cards: clean accuracy and the final worst-case robust accuracy over the attacks.

    ``items`` is the run's :func:`checklist`, when the caller has it already.

    Returns:
        ``clean`` and ``robust`` (records or ``None``), ``robust_title`` (what the worst case is
        over: every declared attack, or only the ``k of m`` that finished) and ``robust_caveat``
        (set when the checklist finds no strong attack: the number is then an optimistic upper bound).
    """
    clean = next(iter(results.records("clean", "accuracy")), None)
    worst = results.records(name="worst_case_robust_accuracy")
    robust = worst[-1] if worst else None
    attacks = _coverage.declared_attacks(results)
    finished = [d for d in attacks if d.finished]
    names = ", ".join(d.key.split("/", 1)[-1] for d in finished)
    title = f"Robust accuracy (worst case over {names})" if names else "Robust accuracy (worst case over the attacks)"
    if robust is not None and len(finished) < len(attacks):
        title = f"Robust accuracy (worst case over the attacks that finished, {len(finished)} of {len(attacks)} declared)"
    caveat = None
    strong = next(i for i in (items if items is not None else checklist(results)) if i.key == "strong_attacks")
    if robust is not None and strong.status == "n/a":
        caveat = None  # 0% robust: nothing for a stronger attack to find
    elif robust is not None and strong.status == "fail":
        caveat = "weak attacks only: an upper bound, likely optimistic"
    elif robust is not None and strong.status == "warn":
        caveat = "no strong attack: an upper bound, likely optimistic"
    return {"clean": clean, "robust": robust, "robust_title": title, "robust_caveat": caveat, "bracket": bracket(results, robust)}


SOUND_VERIFIERS = ("ibp", "crown")
"""Certifiers whose verified accuracy is a sound lower bound on the model's own robust accuracy
(smoothing certifies another classifier, the smoothed one; Lipschitz's power-iteration norms are estimates)."""


def bracket(results: Results, robust: MetricRecord | None) -> str | None:
    """Where the model's robust accuracy on the evaluated examples lies, when a sound verifier ran at
    the threat model's radius on the same examples as the attacks: between its verified accuracy
    (a lower bound) and the attacks' worst case (an upper bound); ``None`` otherwise."""
    if robust is None or robust.value is None or not robust.n:
        return None
    adversary = results.threat_model.get("adversary") or {}
    verified = [
        (r.value, r) for e in results.evaluations
        if e.section == "certification" and e.status == "success" and e.artifacts.get("certifier") in SOUND_VERIFIERS
        for r in e.records
        if r.name == "certified_accuracy" and r.value is not None and r.n == robust.n and at_threat(r, adversary)
    ]  # fmt: skip
    if not verified:
        return None
    value, lower = max(verified, key=lambda pair: pair[0])  # the tightest sound lower bound
    method = lower.evaluation.split("/", 1)[-1]
    text = (f"On these {robust.n:,} examples (the first {robust.n:,} of the split, for the attacks and the verifier alike) the "
            f"model's robust accuracy lies between {100 * value:.1f}% ({method} verified: a sound lower bound) and "
            f"{100 * robust.value:.1f}% (the attacks' worst case: an upper bound).")
    if value == 0:
        text += f" {method} verifies none at this radius: only the attacks' upper bound says something here."
    return text


CARD_CAVEAT = "an upper bound on robustness (a stronger attack can only lower it); the interval covers sampling error only"
"""What the robust-accuracy card and summary.md say of an attack-based robust accuracy."""


def rendered_by() -> str:
    """The robench that renders a report (it may be newer than the one that ran the evaluation)."""
    from robench.runner import git_revision, robench_version

    revision = git_revision()
    return f"robench {robench_version()}" + (f" (git {revision})" if revision else "")


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
        at = r.condition.get("eps")  # None: no radius in the threat model's norm (a min-norm attack's other norm)
        if at is not None and (eps is None or abs(float(at) - eps) > 1e-12):  # a sweep point
            return False
        if r.evaluation.startswith("certification/") and "eps" in r.condition:  # a grid point: the headline is at threat_eps
            return False
        return not (r.evaluation == "calibration" and r.name == "accuracy")

    picked = [r for r in results.records() if headline(r)]
    worst = [r for r in picked if r.name == "worst_case_robust_accuracy"]
    picked = [r for r in picked if r.name != "worst_case_robust_accuracy" or r is worst[-1]]  # the final worst case
    order = {name: i for i, name in enumerate(HEADLINE_NAMES)}
    sections = {key: i for i, (key, _) in enumerate(SECTIONS)}
    # calibration: clean, attacks scored at their adversarial point, then those scored clean where unbroken
    from robench.report.sections.calibration import condition_rank

    return sorted(picked, key=lambda r: (sections.get(r.evaluation.split("/")[0], 99), order[r.name],
                                         condition_rank(r.condition) if r.evaluation == "calibration" else 0))  # fmt: skip


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
        out.append({"name": name, "title": title, "data": data, "template": template if has_template else None,
                    "not_run": None if data is not None else _coverage.why_not_run(results, name)})  # fmt: skip
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
        why = "declared randomized (--randomized)" if results.model.randomized_declared else (
            "randomized: repeated forward passes on the same input differ")
        warnings.insert(0, f"The model is {why}; attacks should use EOT, and accuracies are shares of several passes "
                           "(docs/randomized_models.md).")
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


def _masking_state(results: Results) -> dict[str, Any]:
    """Whether the gradient-masking entry is declared, and why it has no checks if it has none."""
    entries = _coverage.declared_attacks(results, checks=True)
    unfinished = [d for d in entries if not d.finished]
    return {"declared": bool(entries), "why": _coverage.why_not_run(results, "attacks", unfinished) if unfinished else None}


_APPROXIMATE_CP = {
    "clopper-pearson over examples": "conservative: applied to a sum of per-example mean scores in [0, 1], not a 0/1 count",
    "clopper-pearson (rounded pass-mean count)": "applied to the rounded count of a randomized model's pass-mean accuracy",
}
"""Interval names (by prefix) of Clopper-Pearson intervals applied to something other than a 0/1 count: how they are approximate."""


def _interval_kinds(accuracies: list[MetricRecord]) -> str:
    """The clause on the accuracies' 95% intervals: exact where Clopper-Pearson on a plain 0/1 count,
    approximate (saying how) where applied to anything else, other methods by name."""
    exact: list[str] = []
    approximate: dict[str, list[str]] = {}  # how approximate -> the evaluations
    other: dict[str, list[str]] = {}  # method -> the evaluations
    for record in accuracies:
        interval = record.interval or ""
        how = next((note for prefix, note in _APPROXIMATE_CP.items() if interval.startswith(prefix)), None)
        if interval == "clopper-pearson":
            keys = exact
        elif how is not None:
            keys = approximate.setdefault(how, [])
        else:
            keys = other.setdefault(interval.split(" (")[0] or "no recorded method", [])
        if record.evaluation not in keys:
            keys.append(record.evaluation)
    if not approximate and not other:
        return "their intervals are exact 95% Clopper-Pearson intervals (on 0/1 counts)."
    parts = ([f"exact for the 0/1 counts ({', '.join(exact)})"] if exact else []) + [
        f"approximate for {', '.join(keys)} ({how})" for how, keys in approximate.items()]
    text = "their 95% intervals are " + (f"Clopper-Pearson intervals, {' and '.join(parts)}" if parts else "")
    return text + ("; " if parts and other else "") + "; ".join(f"by {m} for {', '.join(keys)}" for m, keys in other.items()) + "."


def sample_sizes(results: Results) -> str:
    """The Limitations sentence on n, derived from the headline records: the n most accuracies share,
    every evaluation measured on another n, and the interval methods actually used."""
    accuracies = [r for r in summary_records(results) if r.unit == "fraction" and r.n]
    if not accuracies:
        return f"The run evaluated n = {results.dataset.n_examples} examples; no accuracy with an interval was recorded."
    sized = [(record, record.n) for record in accuracies if record.n is not None]  # every one: filtered on r.n above
    counts: dict[int, int] = {}
    for _, n in sized:
        counts[n] = counts.get(n, 0) + 1
    clean = next((n for r, n in sized if r.evaluation == "clean"), None)
    common = clean if clean is not None else max(counts, key=lambda n: (counts[n], n))
    others: dict[int, list[str]] = {}
    for record, n in sized:
        if n != common and record.evaluation not in others.setdefault(n, []):
            others[n].append(record.evaluation)
    text = f"Accuracies are measured on n = {common:,} examples"
    if others:
        text += " (" + "; ".join(f"n = {n:,} for {', '.join(keys)}" for n, keys in sorted(others.items())) + ")"
    text += "; " + _interval_kinds(accuracies)
    text += (f" The intervals are about the {results.dataset.split} split, the population the examples come from, and assume the "
             "evaluated examples are representative of it (which examples they are: Dataset row of the Summary; not necessarily "
             "a random draw).")
    if any(r.unit != "fraction" and r.ci_low is not None for r in summary_records(results)):
        text += " Other metrics carry the interval named in their section (method per metric in metrics.csv)."
    return text


_UNREADABLE = (TypeError, ValueError, KeyError, IndexError, AttributeError, StopIteration, ArithmeticError, jinja2.UndefinedError)
"""What reading data of an unexpected shape raises (matplotlib's and numpy's conversion errors are TypeErrors and ValueErrors;
an integer too large for a C long, 10**30 in a reliability diagram's counts, an OverflowError; a zero where a share divides,
a ZeroDivisionError)."""


def render_html(results: Results) -> str:
    """The report as an HTML string.

    Raises:
        ConfigError: the results hold data the report cannot read: an evaluation's ``artifacts``
            (free-form JSON, not checked on load) of another shape than robench writes, named by
            the section that read them (``ROBENCH_DEBUG=1`` re-raises the original error).
    """
    from robench.report.plots import plt

    before = set(plt.get_fignums())
    try:
        return _render_html(results)
    except _UNREADABLE as exc:
        import os
        import traceback

        for number in set(plt.get_fignums()) - before:  # the figures the failed section left open
            plt.close(number)
        if os.environ.get("ROBENCH_DEBUG"):
            raise
        frames = [Path(f.filename) for f in traceback.extract_tb(exc.__traceback__)]
        section = next((f.name.split(".")[0] for f in reversed(frames) if f.parent.name == "sections"), None)
        where = f"the {section} section" if section else "the report"
        if _written_by_this_robench(results):
            cause = ("these results were written by this same robench, so unless results.json was edited this is a robench bug: "
                     "set ROBENCH_DEBUG=1 and report the traceback")  # fmt: skip
        else:
            cause = "its data in results.json is damaged or not of this robench version (set ROBENCH_DEBUG=1 for the traceback)"
        raise ConfigError(f"{where} cannot read these results ({type(exc).__name__}: {first_line(exc, 120)}): {cause}") from None


def _written_by_this_robench(results: Results) -> bool:
    """Whether the results come from the robench that renders them: the same clean git commit, or,
    outside a checkout, the same version (then a section that cannot read them is robench's bug)."""
    from robench.runner import git_revision, robench_version

    written, now = results.environment.git_revision, git_revision()
    if written is not None or now is not None:
        return written == now and written is not None and not is_dirty(written)
    return results.environment.robench_version == robench_version() != "0+unknown"


def _render_html(results: Results) -> str:
    env = _environment()
    sections = build_sections(results)
    leaderboard = next((s["data"] for s in sections if s["name"] == "leaderboard"), None) or {}
    notes = [f"{item['comparison'].board}: {note}" for item in leaderboard.get("comparisons", []) for note in item["comparison"].notes]
    items = checklist(results)
    warnings = _warnings(results)
    return env.get_template("report.html.j2").render(
        results=results,
        headline=headline(results, items),
        summary=summary_records(results),
        checklist=items,
        declared=declared_in_words(results),
        sections=sections,
        warnings=warnings,
        leaderboard_notes=notes,
        totals=_totals(results),
        checks=[(e.key, c, check_finding(c, e, results), check_scope(c)) for e in results.evaluations for c in e.checks],
        masking=_masking_state(results),
        sample_sizes=sample_sizes(results),
        record_label=record_label,
        summary_label=summary_label,
        resolved_threat_model=applicable_fields(results.threat_model),
        card_caveat=CARD_CAVEAT,
        rendered_by=rendered_by(),
        code_recorded=code_recorded(results.environment),
    )


def render_report(results: Results | str | Path, out: str | Path) -> Path:
    """Render ``results`` (or a results.json path) to ``out`` atomically; return the path."""
    if not isinstance(results, Results):
        results = load_results(results)
    return atomic_write_text(Path(out), render_html(results))
