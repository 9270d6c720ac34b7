"""Empirical robustness: threat model, attacks and their strength, clean vs robust accuracy,
AutoAttack breakdown, robust accuracy vs eps, minimal-norm quantiles, masking checks, cost."""

from __future__ import annotations

from typing import Any

from robench.attacks.convergence import progress, robust_after
from robench.attacks.masking_checks import MIN_ELIGIBLE, MIN_PGD_STEPS, MIN_SQUARE_QUERIES
from robench.report import _coverage
from robench.report._labels import check_finding, check_scope, count_record, show
from robench.report.plots import figure_data_uri, interval_bars, line_style, new_figure
from robench.results import EvaluationResult, MetricRecord, Results
from robench.stats import clopper_pearson
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


def procedure(evaluation: EvaluationResult) -> list[tuple[str, str]] | None:
    """The recorded facts of how an attack ran (``artifacts["procedure"]``, written by the evaluator):
    absolute step size, random start, restarts, early stopping; ``None`` when not recorded (results
    of an older robench), so that the report states no default as a fact."""
    facts = evaluation.artifacts.get("procedure")
    if not isinstance(facts, dict) or not facts:
        return None
    step, rule = facts.get("step_size"), facts.get("step_size_rule")
    if isinstance(step, (int, float)) and not isinstance(step, bool):
        step_text = f"{step:.4g}" + (f" ({rule})" if rule else "")
    else:
        step_text = str(rule) if rule else "–"
    early = show(facts.get("early_stopping"))
    if facts.get("early_stopping_rule"):
        early += f" ({facts['early_stopping_rule']})"
    rows = [("step size", step_text), ("random start", show(facts.get("random_start"))), ("restarts", show(facts.get("restarts"))),
            ("early stopping", early)]  # fmt: skip
    if facts.get("budget"):  # an ensemble's iterations per attack (a single attack's are its parameters)
        rows.insert(3, ("iterations", show(facts["budget"])))
    return rows


def _curve_n(evaluation: EvaluationResult) -> int | None:
    """The examples behind an eps curve: the masking entry's subset, else the attack's robust-accuracy n."""
    if evaluation.artifacts.get("kind") == "masking":
        return evaluation.artifacts.get("n_examples")
    record = _find(evaluation, "robust_accuracy") or _find(evaluation, "clean_accuracy")
    return record.n if record is not None else None


def _curve_intervals(evaluation: EvaluationResult, eps: list[float], accuracy: list[float | None]) -> tuple[list[float], list[float]] | None:
    """95% intervals of a curve's points: the records' own (masking sweep), else Clopper-Pearson of k / n
    when every point is a count over the curve's n; ``None`` when they cannot be had soundly."""
    recorded = {float(at): r for r in evaluation.records
                if r.name == "pgd_robust_accuracy_at_eps" and isinstance(at := r.condition.get("eps"), (int, float))}
    n = _curve_n(evaluation)
    lows, highs = [], []
    for radius, value in zip(eps, accuracy):
        record = recorded.get(float(radius))
        if record is None:
            record = count_record(evaluation.key, "robust_accuracy", value, n)
        if record is None or record.ci_low is None or record.ci_high is None:
            return None
        lows.append(record.ci_low)
        highs.append(record.ci_high)
    return lows, highs


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
            n = _curve_n(evaluation)
            label += f", n = {n}" if n else ""  # the sweep's subset and the attacks' examples may differ
            curves.append({"label": label, "eps": curve["eps"], "accuracy": curve["robust_accuracy"],
                           "interval": _curve_intervals(evaluation, curve["eps"], curve["robust_accuracy"])})  # fmt: skip
    return curves


def curve_caption(evaluations: list[EvaluationResult]) -> str | None:
    """What each curve of the robust-accuracy-vs-eps figure is, and how far to trust its level."""
    parts = []
    for evaluation in evaluations:
        if not (evaluation.artifacts.get("curve") or {}).get("eps"):
            continue
        key = evaluation.key.split("/", 1)[1]
        if evaluation.artifacts.get("kind") == "masking":
            steps = (evaluation.resolved or {}).get("steps", "")
            text = (f"the {key} sweep is the gradient-masking entry's own PGD-{steps} (margin loss, one restart) on the first "
                    f"{evaluation.artifacts.get('n_examples')} examples, a sanity check weaker than the declared attacks")
            versus = next((c for c in evaluation.checks if c.name == "declared_at_least_check_pgd"), None)
            if versus is not None and isinstance(versus.evidence.get("declared"), (int, float)):
                text += (f" (at ε it leaves {versus.evidence['check_pgd']:.1%} robust where the declared attacks leave "
                         f"{versus.evidence['declared']:.1%} of the same examples)")
            parts.append(text + ": read it for its shape (falling with ε, near 0 at large ε), not its level")
        else:
            parts.append(f"{key}: the share of examples whose smallest perturbation found is above ε (clean errors at 0), "
                         "an upper bound at every ε")
    if not parts:
        return None
    return "Lines are joined between measured radii (markers); " + "; ".join(parts) + ". Single points: the declared attacks at the threat model's ε."


def _curve_figure(curves: list[dict[str, Any]], points: list[dict[str, Any]], eps: float | None) -> str | None:
    if not curves:
        return None
    fig, ax = new_figure()
    for index, curve in enumerate(curves):
        style = line_style(index)
        ax.plot(curve["eps"], [a if a is not None else float("nan") for a in curve["accuracy"]], ms=4, lw=1.2, label=curve["label"], **style)
        if curve["interval"] is not None:
            ax.fill_between(curve["eps"], *curve["interval"], color=style["color"], alpha=0.15, lw=0)
    for index, point in enumerate(points, start=len(curves)):
        style = line_style(index)
        ax.errorbar([point["eps"]], [point["accuracy"]], yerr=point["yerr"], fmt=style["marker"], color=style["color"], capsize=3,
                    zorder=3, label=point["label"])  # fmt: skip
    if eps is not None:
        ax.axvline(eps, color="grey", linestyle="--", linewidth=1, label="threat-model ε")
    ax.set_xlabel("ε")
    ax.set_ylabel("robust accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return figure_data_uri(fig)


def _convergence(evaluations: list[EvaluationResult]) -> list[dict[str, Any]]:
    """Per attack that recorded its run's progress (``artifacts["convergence"]``): robust accuracy at
    half the budget, at the end, and what the last restart and the last tenth of the steps added."""
    rows = []
    for evaluation in evaluations:
        art = evaluation.artifacts.get("convergence")
        if not isinstance(art, dict) or not art.get("n"):
            continue
        n, budget, every = int(art["n"]), int(art["budget"]), art.get("restart_every")
        key = evaluation.key.split("/", 1)[1]
        facts = progress(art)
        at_restart = (budget // 2) // every if every and (budget / 2) % every == 0 else None
        rows.append({
            "key": key, "unit": art["unit"], "budget": budget, "n": n, "restart_every": every, "art": art,
            "start": MetricRecord.proportion(key, "robust_accuracy", robust_after(art, 0), n),
            # at a restart's end, before the next one's random start
            "half": MetricRecord.proportion(key, "robust_accuracy", facts["robust_after_restart"][at_restart - 1] if at_restart else robust_after(art, budget / 2), n),
            "half_at_restart": at_restart,
            "end": MetricRecord.proportion(key, "robust_accuracy", facts["end"], n),
            # examples first fooled by the last restart's steps, and by the last steps of the run
            "last_restart": facts["broken_by_last_restart"], "tail_steps": facts["tail_steps"], "tail": facts["broken_in_tail"],
        })  # fmt: skip
    return rows


def _convergence_figure(rows: list[dict[str, Any]]) -> str | None:
    """Robust accuracy after t iterations of each run (a step function, Clopper-Pearson band)."""
    if not rows:
        return None
    fig, ax = new_figure()
    for index, row in enumerate(rows):
        style = line_style(index)
        art, n = row["art"], row["n"]
        xs = [*art["iterations"], row["budget"]]
        ys = [*art["robust"], art["robust"][-1]]
        bands = [clopper_pearson(k, n) for k in ys]
        ax.step(xs, [k / n for k in ys], where="post", color=style["color"], lw=1.2, label=f"{row['key']}, n = {n}")
        ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], step="post", color=style["color"], alpha=0.15, lw=0)
        for start in range(row["restart_every"] or row["budget"], row["budget"], row["restart_every"] or row["budget"]):
            ax.axvline(start, color=style["color"], linestyle=":", linewidth=0.8)
    units = sorted({row["unit"] for row in rows})
    ax.set_xlabel(" / ".join(units) + " into the run (restarts marked)")
    ax.set_ylabel("robust accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return figure_data_uri(fig)


def only_broken_by(evaluations: list[EvaluationResult]) -> dict[str, int]:
    """Per attack key: the examples it alone broke, robust to every other attack of the run on the
    same examples (same n, norm, eps and goal); attacks without per-example outcomes are left out.
    The binding attack is the one whose absence would raise the worst case."""
    from robench.report.checklist import comparable, robust_flags

    flags = {e.key: found for e in evaluations if e.status == "success" and (found := robust_flags(e)) is not None}
    out = {}
    for key, (robust, record) in flags.items():
        others = [f for k, (f, r) in flags.items() if k != key and comparable(r, record)]
        if others:
            robust_to_others = others[0].copy()
            for other in others[1:]:
                robust_to_others &= other
            out[key.split("/", 1)[1]] = int((robust_to_others & ~robust).sum())
    return out


def _breakdown(evaluation: EvaluationResult) -> list[dict[str, Any]]:
    """AutoAttack's robust accuracy after each attack as records (value, interval, n over all examples)."""
    after = {r.condition.get("after"): r for r in evaluation.records if r.name == "robust_accuracy_after"}
    total = _find(evaluation, "robust_accuracy") or _find(evaluation, "clean_accuracy")
    rows = []
    for row in evaluation.artifacts["breakdown"]:
        record = after.get(row["attack"])
        if record is None and row["attack"] == "clean":
            record = _find(evaluation, "clean_accuracy")
        if record is None and total is not None and total.n:
            record = MetricRecord.proportion(evaluation.key, "robust_accuracy_after", int(row["n_robust"]), total.n, {"after": row["attack"]})
        rows.append({**row, "record": record})
    return rows


def build(results: Results) -> dict[str, Any] | None:
    """Everything the attacks template shows; ``None`` when no attack ran."""
    evaluations = [e for e in results.evaluations if e.section == "attacks"]
    if not evaluations:
        return None
    adversary = results.threat_model.get("adversary") or {}
    rows = []
    for evaluation in evaluations:
        if evaluation.artifacts.get("kind") == "masking" and evaluation.status == "success":
            continue  # its checks have their own table below; its cost is in the reproducibility section
        rows.append(
            {
                "key": evaluation.key.split("/", 1)[1],
                "name": evaluation.name,
                "knowledge": evaluation.artifacts.get("knowledge", ""),
                "status": evaluation.status,
                "error": evaluation.error,
                "strength": _strength(evaluation),
                "procedure": procedure(evaluation),
                "clean": _find(evaluation, "clean_accuracy"),
                "robust": _find(evaluation, "robust_accuracy"),
                "success": _find(evaluation, "attack_success_rate"),
                "median_norm": _find(evaluation, "median_perturbation_norm"),
                "mean_norm": _find(evaluation, "mean_perturbation_norm"),
                "worst_gap": _find(evaluation, "worst_class_gap"),
                "worst_case": _find(evaluation, "worst_case_robust_accuracy"),
                "cost": evaluation.cost,
                "warnings": evaluation.warnings,
            }
        )
    plotted = [r for r in rows if r["robust"] is not None]
    # under Linf nearly every success sits on the sphere, ||delta|| = eps: a column of eps says nothing
    measured = [r for r in rows if r["median_norm"] is not None and r["median_norm"].value is not None]
    eps_value = adversary.get("eps")

    def at_eps(record: MetricRecord | None) -> bool:
        return record is not None and record.value is not None and isinstance(eps_value, (int, float)) \
            and abs(record.value - eps_value) <= 1e-6 * max(eps_value, 1e-12)

    median_informative = bool(measured) and not all(at_eps(r["median_norm"]) for r in measured)
    # what the left-out column would have said: a mean at eps (no norm exceeds it) puts every success
    # there; a median at eps only half of them; nothing without recorded norms
    norms_at_eps = None if median_informative or not measured else "every" if all(at_eps(r["mean_norm"]) for r in measured) else "median"
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
        {"key": e.key.split("/", 1)[1], "version": e.artifacts.get("version"), "rows": _breakdown(e),
         "log": e.artifacts.get("log", [])}
        for e in evaluations
        if e.artifacts.get("kind") == "autoattack"
    ]  # fmt: skip
    min_norm = [
        {"key": e.key.split("/", 1)[1], "norm": e.artifacts.get("norm"), "quantiles": e.artifacts.get("quantiles", {}),
         "not_found": e.artifacts.get("not_found", 0)}
        for e in evaluations
        if e.artifacts.get("kind") == "min_norm"
    ]  # fmt: skip
    eps = adversary.get("eps")
    points = [{"label": f"{r['key']}, n = {r['robust'].n}" if r["robust"].n else r["key"], "eps": eps, "accuracy": r["robust"].value, "yerr": _yerr(r["robust"])} for r in plotted
              if "curve" not in next(e for e in evaluations if e.key.endswith("/" + r["key"])).artifacts]  # fmt: skip
    checks: list[dict[str, Any]] = [{"evaluation": e.key.split("/", 1)[1], "check": c, "finding": check_finding(c, e, results), "scope": check_scope(c)}
              for e in evaluations for c in e.checks]  # fmt: skip
    unfinished = [d for d in _coverage.missing(results, "attacks") if d.status is None]
    convergence = _convergence(evaluations)
    alone = only_broken_by(evaluations)
    for row in rows:
        row["only_it_broke"] = alone.get(row["key"])
    return {
        "rows": rows,
        "figure": bars,
        "curve_figure": _curve_figure(_curves(evaluations), points, eps),
        "curve_caption": curve_caption(evaluations),
        "median_informative": median_informative,
        "norms_at_eps": norms_at_eps,
        "only_column": bool(alone),
        "iterations_shown": any(name == "iterations" for row in rows for name, _ in row.get("procedure") or ()),
        "masking_entries": [e.key.split("/", 1)[1] for e in evaluations if e.artifacts.get("kind") == "masking" and e.status == "success"],
        "convergence": convergence,
        "convergence_figure": _convergence_figure(convergence),
        "breakdowns": breakdowns,
        "min_norm": min_norm,
        "eps_text": format_eps(eps) if eps else None,
        "adversary": adversary,
        "randomized": results.model.randomized,
        "checks": checks,
        "n_warn": sum(c["check"].status in ("warn", "fail") for c in checks),
        "n_inconclusive": sum(c["check"].status == "inconclusive" for c in checks),
        "thresholds": {"eligible": MIN_ELIGIBLE, "pgd_steps": MIN_PGD_STEPS, "square_queries": MIN_SQUARE_QUERIES},
        "not_run": [d.key.split("/", 1)[1] for d in unfinished],
        "not_run_why": _coverage.why_not_run(results, "attacks", unfinished) if unfinished else None,
    }


def _yerr(record: MetricRecord) -> list[list[float]] | None:
    if record.value is None or record.ci_low is None or record.ci_high is None:
        return None
    return [[record.value - record.ci_low], [record.ci_high - record.value]]
