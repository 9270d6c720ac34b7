"""The certification section and every summary that writes its records: the smoothing ceiling, a
certified accuracy that is 0 by construction, the per-radius tables, the eps figure, the parameters.

The stand-in results hold records and per-example certificates as a run writes them; the expected
numbers come from statsmodels and scipy, not from robench.
"""

from __future__ import annotations

import re
from html import escape, unescape
from typing import Any

import pytest
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from robench.cli import _summary_rows
from robench.context import EvaluationOutput
from robench.report import render
from robench.report._labels import check_scope, record_label
from robench.report.checklist import checklist
from robench.report.exports import markdown_summary
from robench.report.render import render_html
from robench.report.sections import certification
from robench.results import Check, MetricRecord
from robench.threat_model import ThreatModel, load_threat_model, resolve_path
from tests.certify._results import certification_results

SIGMA, N, ALPHA = 0.25, 2000, 0.001


def _ceiling(n: int = N) -> float:
    """sigma * Phi^-1 of the one-sided Clopper-Pearson bound of n successes in n (statsmodels' two-sided at 2 alpha)."""
    return SIGMA * norm.ppf(proportion_confint(n, n, alpha=2 * ALPHA, method="beta")[0])


def _radius(count: int) -> float:
    p = proportion_confint(count, N, alpha=2 * ALPHA, method="beta")[0]
    return SIGMA * norm.ppf(p) if p > 0.5 else 0.0


def _threat(adversary: dict | None) -> ThreatModel:
    entries = [{"name": "smoothing", "params": {"sigma": SIGMA, "n": N, "alpha": ALPHA}}]
    return ThreatModel.model_validate({"name": "t", "dataset": {"manifest": "mnist5k"}, "adversary": adversary,
                                       "evaluations": {"certification": entries}})  # fmt: skip


def _smoothing(capped: int, total: int = 100, adversary: dict | None = None, recorded_ceiling: bool = True) -> Any:
    """Stand-in smoothing results: ``capped`` examples with all N votes, the rest with 1990 (one wrong)."""
    adversary = adversary if adversary is not None else {"norm": "Linf", "eps": 0.3}
    examples = [{"label": i % 10, "prediction": i % 10 if i < total - 1 else (i + 1) % 10, "count": N if i < capped else 1990,
                 "n": N, "radius": _radius(N if i < capped else 1990)} for i in range(total)]  # fmt: skip
    key, condition = "certification/smoothing", {"certifier": "smoothing", "norm": "L2", "sigma": SIGMA}

    def certified(r: float) -> int:
        return sum(e["prediction"] == e["label"] and e["radius"] >= r for e in examples)

    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    records = [MetricRecord.proportion(key, "certified_accuracy", certified(r), total, {**condition, "radius": r}) for r in grid]
    headline = {**condition, "threat_norm": "Linf", "threat_eps": 0.3, "certifiable": False}
    records.append(MetricRecord.proportion(key, "certified_accuracy", 0, total, headline))
    acr = sum(e["radius"] for e in examples if e["prediction"] == e["label"]) / total
    records.append(MetricRecord(evaluation=key, name="average_certified_radius", value=acr, n=total, condition=condition, unit="l2"))
    records.append(MetricRecord.proportion(key, "abstain_rate", 0, total, condition))
    params = {"sigma": SIGMA, "n0": 100, "n": N, "alpha": ALPHA, "batch": 1000, "radii": list(grid), "n_predict": 0,
              "n_examples": total, "images_per_batch": 32, "mode": "exact", "compile": False}  # fmt: skip
    curve = [{"radius": r.condition["radius"], "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high} for r in records[:5]]
    artifacts = {"certifier": "smoothing", "norm": "L2", "params": params, "curve": curve, "acr": acr, "examples": examples,
                 "threat_radius_l2": 0.3 * 28, **({"max_certified_radius": _ceiling()} if recorded_ceiling else {})}  # fmt: skip
    warning = (f"not certifiable with these settings: the threat model's Linf ε = 0.3 needs a certified L2 radius of √784·ε = 8.4, "
               f"and no certificate can exceed {_ceiling():.4g} with these parameters, so certified accuracy at ε is 0 by construction")
    output = EvaluationOutput(records=records, warnings=[warning], artifacts=artifacts, resolved=params)
    results = certification_results(_threat(adversary), {"smoothing": output})
    results.evaluations.insert(0, _clean(total))
    return results


def _clean(n: int) -> Any:
    from robench.results import EvaluationResult

    return EvaluationResult(key="clean", section="clean", name="clean", status="success",
                            records=[MetricRecord.proportion("clean", "accuracy", n - 1, n)])  # fmt: skip


def _row(results: Any, key: str) -> dict[str, Any]:
    section = certification.build(results)
    assert section is not None
    return next(r for r in section["rows"] if r["key"] == key)


def _section_text(html: str) -> str:
    part = html.split('id="certification"')[1].split('id="leaderboard"')[0]
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", part))))


# --- 1. smoothing capped by its Monte-Carlo budget


def test_the_ceiling_count_row_and_warning_come_from_the_all_vote_certificates() -> None:
    results = _smoothing(capped=84)
    row = _row(results, "smoothing")
    ceiling = _ceiling()
    assert row["capped"]["k"] == 84 and row["capped"]["n"] == 100 and row["capped"]["ceiling"] == pytest.approx(ceiling, rel=1e-12)
    at = next(p for p in row["table"] if p["radius"] == pytest.approx(ceiling, rel=1e-12))
    low, high = proportion_confint(84, 100, method="beta")
    assert at["value"] == 0.84 and at["ci_low"] == pytest.approx(low, abs=1e-9) and at["ci_high"] == pytest.approx(high, abs=1e-9)
    assert "ceiling" in at["note"] and "largest certified radius" in at["note"]
    # grid radii past the ceiling are 0 for any model: n/a, no interval (they read 0.0% [0.0, 3.6])
    above = [p for p in row["table"] if p["radius"] > ceiling * (1 + 1e-9)]
    assert above and all(p["value"] is None and p["ci_low"] is None and "above the ceiling" in p["note"] for p in above)
    below = [p for p in row["table"] if p["radius"] <= ceiling]
    assert all(p["value"] is not None for p in below)
    # the results' warnings lack it (an older robench): the section writes it, with what 100,000 samples would give
    warning = row["capped"]["warning"]
    assert warning is not None and "84 of 100" in warning and "not the model" in warning
    assert f"{SIGMA * norm.ppf(proportion_confint(100_000, 100_000, alpha=2 * ALPHA, method='beta')[0]):.4g}" in warning
    text = _section_text(render_html(results))
    assert "84 of 100 certificates are at that ceiling" in text
    assert text.count(warning.split(":")[0] + ":") == 1  # once: the section shows the section's or the run's, not both


def test_the_capped_acr_is_said_once_in_its_cell_and_once_in_the_prose() -> None:
    """The ACR's value already carries its note (MetricRecord.formatted): the section appended its own
    copy too, 'ACR 0.6138 (capped: 83 of 100 at the ceiling 0.6755) (point estimate) (capped: 83 of 100
    certificates at the ceiling 0.6755)', and the table cell a second line saying the same."""
    results = _smoothing(capped=84)
    value, _ = results.formatted(next(r for r in results.records() if r.name == "average_certified_radius"))
    assert value.endswith(f"(capped: 84 of 100 at the ceiling {_ceiling():.4g})")
    text = _section_text(render_html(results))
    assert f"ACR {value} (point estimate);" in text
    assert text.count("capped: 84 of 100") == 2  # the table's cell and the prose, nothing more


def test_the_ceiling_warning_needs_more_than_ten_percent_and_no_recorded_ceiling() -> None:
    assert _row(_smoothing(capped=10), "smoothing")["capped"]["warning"] is None  # 10 of 100: not more than 10%
    row = _row(_smoothing(capped=11, recorded_ceiling=False), "smoothing")  # computed from the parameters
    assert row["capped"]["k"] == 11 and row["capped"]["warning"] is not None
    assert row["max_radius"] == pytest.approx(_ceiling(), rel=1e-12)


def test_at_the_ceiling_is_decided_on_the_votes_not_on_a_nearby_radius() -> None:
    from robench.certify.smoothing import at_ceiling

    ceiling = _ceiling()
    one_short = {"label": 1, "prediction": 1, "count": N - 1, "n": N, "radius": _radius(N - 1)}
    assert not at_ceiling(one_short, ceiling) and at_ceiling({**one_short, "count": N, "radius": _radius(N)}, ceiling)
    assert at_ceiling({"label": 1, "prediction": 1, "radius": ceiling * (1 + 1e-12)}, ceiling)  # no counts: the radius, to rounding
    assert not at_ceiling({"label": 1, "prediction": 1, "radius": _radius(N - 1)}, ceiling)
    assert not at_ceiling({"label": 1, "prediction": -1, "count": N, "n": N, "radius": 0.0}, ceiling)


def test_an_example_of_a_damaged_file_without_counts_or_radius_is_not_at_the_ceiling() -> None:
    # `robench export` and `robench report` of such a results.json ended in an internal error (KeyError: 'radius')
    from robench.certify.smoothing import at_ceiling, capped_count

    ceiling = _ceiling()
    assert not at_ceiling({"label": 1, "prediction": 1}, ceiling)
    assert not any(at_ceiling({"prediction": 1, "radius": bad}, ceiling) for bad in (None, "x", [], True))
    assert capped_count([{}, {"radius": None}, {"prediction": 1, "count": N, "n": N}], ceiling) == 1


# --- 2. a certified accuracy that is 0 by construction


def test_a_value_zero_by_construction_is_written_n_a_everywhere_without_an_interval() -> None:
    results = _smoothing(capped=84)
    record = next(r for r in results.records(name="certified_accuracy") if "threat_eps" in r.condition)
    note = f"n/a: not certifiable with these settings (needs L2 r = 8.4 > ceiling {_ceiling():.4g})"
    assert results.formatted(record) == (note, "")
    assert record.formatted() == ("n/a: not certifiable with these settings", "")
    label = record_label(record)
    assert "not certifiable" not in label  # the value says it, once
    interval = "[{:.1f}, {:.1f}]".format(*(100 * v for v in proportion_confint(0, 100, method="beta")))
    row = next(r for r in _summary_rows(results) if r[0] == label)
    assert row[1:3] == (note, "")  # the CLI table
    markdown = markdown_summary(results, with_leaderboard=False)
    assert f"| {label} | {note} | 100 |" in markdown and interval not in markdown
    html = render_html(results)
    summary = html.split("<h3>Headline numbers</h3>")[1].split("</table>")[0]
    assert escape(note) in summary and interval not in summary
    assert f"{note} (Linf ε = 0.3) 100 " in _section_text(html)  # no interval between the value and its n (the abstain rate has its own)
    item = next(i for i in checklist(results) if i.key == "clean_and_robust")
    assert "smoothing" not in item.evidence and "not certifiable" not in item.evidence
    assert record.value == 0.0 and record.ci_high == pytest.approx(proportion_confint(0, 100, method="beta")[1])  # kept as recorded


def test_the_not_certifiable_warning_stands_in_the_section_and_once_at_the_top() -> None:
    html = render_html(_smoothing(capped=84))
    assert html.count("not certifiable with these settings:") == 2
    top, section = html.split('id="certification"')[0], html.split('id="certification"')[1].split('id="limitations"')[0]
    assert top.count("not certifiable with these settings:") == 1 and section.count("not certifiable with these settings:") == 1
    assert "not certifiable with these settings:" not in html.split('id="limitations"')[1]


# --- 3. per-radius tables where the certificates are


def _lipschitz(radii: list[float]) -> Any:
    key, condition = "certification/lipschitz", {"certifier": "lipschitz", "norm": "L2", "method": "bound"}
    examples = [{"label": 0, "prediction": 0 if r > 0 else 1, "radius": r} for r in radii]
    n = len(examples)
    grid = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
    records = [MetricRecord.proportion(key, "certified_accuracy", sum(e["prediction"] == 0 and e["radius"] >= g for e in examples), n,
                                       {**condition, "radius": g}) for g in grid]  # fmt: skip
    records.append(MetricRecord(evaluation=key, name="average_certified_radius", value=sum(radii) / n, n=n, condition=condition, unit="l2"))
    curve = [{"radius": r.condition["radius"], "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high} for r in records[:6]]
    check = Check(name="lipschitz_vs_gradients", status="pass", message="largest margin-gradient norm 4.188 vs sqrt(2) L = 259.1",
                  evidence={"largest_gradient_norm": 4.188, "sqrt2_lipschitz": 259.1})  # fmt: skip
    params = {"method": "bound", "power_iterations": 100, "power_margin": 0.05, "radii": list(grid)}
    output = EvaluationOutput(records=records, checks=[check], resolved=params,
                              artifacts={"certifier": "lipschitz", "norm": "L2", "params": params, "curve": curve,
                                         "lipschitz_bound": 183.2, "examples": examples})  # fmt: skip
    return certification_results(_threat(None).model_copy(), {"lipschitz": output})


def test_a_grid_above_every_radius_gains_rows_where_the_certificates_are() -> None:
    radii = [0.0394, 0.031, 0.025, 0.018, 0.017, 0.012, 0.008, 0.004, 0.0, 0.0]
    row = _row(_lipschitz(radii), "lipschitz")
    table = row["table"]
    added = [p for p in table if p["note"]]
    assert [p["shown"] for p in added] == ["0.01", "0.02", "0.03", "0.0394"] and "largest certified radius" in added[-1]["note"]
    for point in table:  # every row, grid or added, is the exact curve: correct and radius >= r, over all n
        k = sum(r > 0 and r >= point["radius"] for r in radii)
        assert point["value"] == k / len(radii)
        assert point["ci_low"] == pytest.approx(proportion_confint(k, len(radii), method="beta")[0], abs=1e-9)
    assert row["largest"] == 0.0394
    text = _section_text(render_html(_lipschitz(radii)))
    assert "largest certified radius 0.0394" in text and f"is {259.1 / 4.188:.0f}× the largest margin-gradient norm" in text


# --- 4. IBP/CROWN: round eps, a log axis and the threat eps


def test_the_example_threat_model_gives_round_eps_and_the_table_shows_them() -> None:
    threat = load_threat_model(resolve_path("mnist-example-audit"))
    ibp = next(s for s in threat.evaluations.certification if s.name == "ibp")
    eps = threat.adversary.eps
    grid = sorted({f * eps for f in threat.resolved_params("certification", ibp).eps_fractions})
    assert [certification.grid_value(e) for e in grid] == ["0.001", "0.003", "0.006", "0.01", "0.015", "0.03", "0.3"]
    assert grid == [0.001, 0.003, 0.006, 0.01, 0.015, 0.03, 0.3]  # recorded as shown (fractions written exactly)
    assert certification.grid_value(8 / 255) == "8/255" and certification.grid_value(0.6754582395) == "0.6755"


def _ibp(grid: list[float], verified: list[int], check_evidence: dict | None = None, rejected_in_resolved: bool = False) -> Any:
    key, condition = "certification/ibp", {"certifier": "ibp", "norm": "Linf", "box": "Linf"}
    records = [MetricRecord.proportion(key, "certified_accuracy", k, 200, {**condition, "eps": e}) for e, k in zip(grid, verified)]
    records.append(MetricRecord.proportion(key, "certified_accuracy", verified[-1], 200, {**condition, "threat_norm": "Linf", "threat_eps": 0.3}))
    curve = [{"eps": r.condition["eps"], "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high} for r in records[:-1]]
    resolved = {"eps": 0.3, "eps_fractions": [], "fold_specification": True, "rounding": True, "pgd_check_steps": 20, "norm": "Linf",
                "grid": grid[1:], "arithmetic": "float32, TF32 off", **({"rejected_by_rounding_allowance": 3} if rejected_in_resolved else {})}  # fmt: skip
    checks = [Check(name="ibp_pgd_consistency", status="pass", message="m", evidence=check_evidence)] if check_evidence else []
    artifacts = {"certifier": "ibp", "norm": "Linf", "params": resolved, "curve": curve, **({} if rejected_in_resolved else {"rejected_by_rounding_allowance": 3})}
    output = EvaluationOutput(records=records, checks=checks, resolved=resolved, artifacts=artifacts)
    return certification_results(_threat({"norm": "Linf", "eps": 0.3}), {"ibp": output})


def test_the_eps_figure_has_a_log_axis_through_zero_and_marks_the_threat_eps(figures: list[Any]) -> None:
    certification.build(_ibp([0.0, 0.001, 0.003, 0.015, 0.3], [194, 190, 178, 8, 0]))
    ax = next(f.axes[0] for f in figures if "Linf" in f.axes[0].get_xlabel())
    assert ax.get_xscale() == "symlog" and ax.get_xlim()[0] <= 0  # the eps = 0 point stays on the axis
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--" and set(line.get_xdata()) == {0.3}]
    assert len(dashed) == 1 and "0.3" in dashed[0].get_label()


# --- 5. the box verifiers' PGD check: distinct examples and (example, radius) pairs


def test_the_pgd_check_scope_names_examples_and_pairs() -> None:
    new = {"eps": [0.001, 0.003], "verified": [190, 178], "broken": [0, 0], "n": 191, "pairs": 368, "budget": {"pgd_steps": 20}}
    scope = check_scope(Check(name="ibp_pgd_consistency", status="pass", message="m", evidence=new))
    assert scope.startswith("n = 191 distinct examples verified at some radius; 368 (example, radius) pairs over 2 radii")
    assert "PGD 20 steps" in scope
    old = {**new, "n": 368}
    del old["pairs"]
    scope = check_scope(Check(name="ibp_pgd_consistency", status="pass", message="m", evidence=old))
    assert scope.startswith("368 (example, radius) pairs over 2 radii") and "at least 190" in scope and "n = 368" not in scope


# --- 6. definitions, parameters and results


def test_acr_is_defined_where_it_first_appears_and_results_are_not_parameters() -> None:
    text = _section_text(render_html(_smoothing(capped=84)))
    first = text.index("ACR")
    assert text[first:].startswith("ACR, the average certified radius, is the mean over all n examples of the certified radius")
    assert "batch=1000 (noisy samples per batch (one call of the model))" in text and "n_predict=0 (noise samples for PREDICT" in text
    for rejected_in_resolved in (False, True):  # an older robench wrote the count among the resolved parameters
        results = _ibp([0.0, 0.001, 0.3], [194, 190, 0], rejected_in_resolved=rejected_in_resolved)
        row = _row(results, "ibp")
        assert "rejected_by_rounding_allowance" not in {p["name"] for p in row["parameters"]} and row["rejected"] == 3
        text = _section_text(render_html(results))
        assert "rejected_by_rounding_allowance" not in text and "rejected 3 example(s) whose margin bounds were positive" in text


def test_render_passes_the_results_to_the_value_filters() -> None:
    # the summary table's filters read the run's artifacts: a plain record.formatted() has no radii
    assert render._formatted({"results": None}, MetricRecord.proportion("e", "x", 1, 2)) == ("50.0%", "[1.3, 98.7]")


def test_the_rounding_rejections_are_stated_at_every_radius_not_only_the_threat_eps() -> None:
    """At eps 0.3 nothing is verified, so 'rejected 0' there hid a correct example rejected at eps 0."""
    artifacts = {"params": {"eps": 0.3}, "rejected_by_rounding_per_eps": {"eps": [0.0, 0.001, 0.3], "rejected": [1, 0, 0]}}
    assert certification._rejected_elsewhere(artifacts) == "1 at ε = 0"
    assert certification._rejected_elsewhere({"params": {"eps": 0.3}}) is None  # an older robench recorded the threat eps only
    artifacts["rejected_by_rounding_per_eps"]["rejected"] = [0, 0, 2]
    assert certification._rejected_elsewhere(artifacts) is None  # the threat eps's own count is stated beside it


def test_the_headline_acr_says_when_the_budget_caps_it() -> None:
    """The headline table and summary.md gave smoothing's ACR bare, while 84 of 100 certificates sat at
    the ceiling (the section alone said so)."""
    capped = _smoothing(capped=84)
    acr = next(r for r in capped.records() if r.name == "average_certified_radius")
    value, _ = capped.formatted(acr)
    assert value.endswith(f"(capped: 84 of 100 at the ceiling {_ceiling():.4g})")
    assert value in markdown_summary(capped)
    assert value in render_html(capped)  # the headline table
    within = _smoothing(capped=10)  # 10 of 100: not more than the 10% the warning allows
    assert "capped" not in within.formatted(next(r for r in within.records() if r.name == "average_certified_radius"))[0]
    assert "capped" not in acr.formatted()[0]  # without the evaluation's per-example records nothing is claimed


def test_predict_counts_its_own_noisy_samples() -> None:
    """CERTIFY's n0 + n and PREDICT's fresh n_predict samples are stated apart (their sum is the cost's forward passes)."""
    results = _smoothing(capped=84)
    evaluation = results.evaluation("certification/smoothing")
    evaluation.artifacts |= {"noisy_samples": 100 * (100 + N), "predict_samples": 100 * 500}
    evaluation.artifacts["params"]["n_predict"] = evaluation.resolved["n_predict"] = 500
    condition = {"certifier": "smoothing", "norm": "L2", "sigma": SIGMA}
    evaluation.records += [MetricRecord.proportion(evaluation.key, "smoothed_accuracy", 97, 100, condition),
                           MetricRecord.proportion(evaluation.key, "predict_abstain_rate", 2, 100, condition)]  # fmt: skip
    text = _section_text(render_html(results))
    assert f"{100 * (100 + N):,} noisy samples for CERTIFY's n0 + n" in text
    assert "n = 500 more noisy samples per image, 50,000 in all" in text and "smoothed accuracy 97.0%" in text


def test_an_ibp_run_does_not_speak_of_crown() -> None:
    """An IBP-only run read 'Certified (IBP and CROWN say verified) up to eps = 0.001', as if CROWN had run."""
    text = _section_text(render_html(_ibp([0.0, 0.001, 0.3], [194, 190, 0])))
    assert "Verified up to ε = 0.001 (the largest radius of the curve with a verified example)" in text
    assert "CROWN" not in text.split("ibp: Interval bound propagation")[1]
