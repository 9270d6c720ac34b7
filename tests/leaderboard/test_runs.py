"""Two runs side by side: deltas b - a and interval disjointness against statsmodels' intervals."""

from __future__ import annotations

from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from robench.cli import main
from robench.leaderboard import compare_runs, runs_table
from robench.leaderboard.runs import RunDelta
from robench.results import MetricRecord
from tests.report import fixtures


def _name(delta: RunDelta) -> str:
    return (delta.a or delta.b).name  # type: ignore[union-attr]


def test_deltas_and_disjoint_intervals() -> None:
    a, b = fixtures.strong(), fixtures.weak()
    comparison = compare_runs(a, b, "before", "after")
    by_label = {d.label: d for d in comparison.deltas}
    clean = by_label["clean accuracy"]
    assert clean.delta == pytest.approx(470 / 500 - 440 / 500)
    (la, ha), (lb, hb) = (proportion_confint(k, 500, method="beta") for k in (440, 470))
    assert clean.outside == (ha < lb or hb < la)
    only_a = [d for d in comparison.deltas if d.b is None]
    only_b = [d for d in comparison.deltas if d.a is None]
    assert {d.a.evaluation for d in only_a} == {"attacks/pgd", "attacks/autoattack", "calibration"}
    assert {d.b.evaluation for d in only_b} == {"attacks/fgsm"}
    assert all(d.delta is None and d.outside is None for d in only_a + only_b)
    header, rows = runs_table(comparison)
    assert header[1:3] == ("before", "after") and len(rows) == len(comparison.deltas)


def test_worst_case_matches_across_attack_chains() -> None:
    a, b = fixtures.strong(), fixtures.strong().model_copy(deep=True)
    for evaluation in b.evaluations:
        evaluation.records = [r.model_copy(update={"condition": {**r.condition, "attack": "other"}}) if r.name == "worst_case_robust_accuracy" else r
                              for r in evaluation.records]  # fmt: skip
    comparison = compare_runs(a, b)
    worst = [d for d in comparison.deltas if _name(d) == "worst_case_robust_accuracy" and d.a is not None and d.b is not None]
    assert worst and all(d.delta == 0 and d.outside is False for d in worst)
    assert "both runs evaluate the same checkpoint" in comparison.notes


def test_setting_differences_are_noted() -> None:
    b = fixtures.certified()
    b.seed, b.status = 3, "error"
    notes = compare_runs(fixtures.strong(), b).notes
    assert any(n.startswith("seed differs") for n in notes) and any("did not finish" in n for n in notes)
    other = fixtures.strong()
    other.dataset = other.dataset.model_copy(update={"manifest": "cifar10-mine", "manifest_sha256": "12" * 32, "split": "train"})
    notes = compare_runs(fixtures.strong(), other).notes  # the manifests differed only as hashes
    assert f"dataset manifest differs: cifar10 (sha256 {'ef' * 6}) vs cifar10-mine (sha256 {'12' * 6})" in notes
    assert "dataset split differs: test vs train" in notes


def test_runs_on_different_tasks_get_no_deltas(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """MNIST against CIFAR-10 (10 vs 100 classes, 1x28x28 vs 3x32x32): the numbers side by side, no deltas, no tests."""
    other = fixtures.weak()
    other.dataset = other.dataset.model_copy(update={"manifest": "mnist", "num_classes": 100, "input_shape": [1, 28, 28]})
    comparison = compare_runs(fixtures.strong(), other)
    assert comparison.notes[0] == ("the runs are on different tasks (classes 10 vs 100; input shape 3x32x32 vs 1x28x28): "
                                   "their numbers are side by side, with no deltas or tests")  # fmt: skip
    matched = [d for d in comparison.deltas if d.a is not None and d.b is not None]
    assert matched and all(d.delta is None and d.outside is None and d.paired_p is None for d in matched)
    same_task = fixtures.weak()
    same_task.dataset = same_task.dataset.model_copy(update={"manifest": "cifar10.1"})  # other data, same task: deltas kept
    assert any(d.delta is not None for d in compare_runs(fixtures.strong(), same_task).deltas)
    fixtures.strong().save(tmp_path / "a.json")
    other.save(tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "pp" not in out.split("note:")[0] and "note: the runs are on different tasks" in out


def test_cli_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures.strong().save(tmp_path / "a.json")
    fixtures.weak().save(tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "Δ (b − a)" in out and "+6.00 pp" in out and "clean accuracy" in out


def test_probability_deltas_are_percentage_points() -> None:
    a, b = fixtures.strong(), fixtures.strong().model_copy(deep=True)
    ece = next(r for r in b.evaluation("calibration").records if r.condition == {"condition": "clean"})
    ece.value = 0.0725  # from 5.00% to 7.25%
    header, rows = runs_table(compare_runs(a, b))
    row = next(r for r in rows if r[0] == "ECE, clean")
    assert row[1:4] == ("5.00% [3.00, 7.00]", "7.25% [3.00, 7.00]", "+2.25 pp")


def test_final_worst_case_lines_up_across_different_attack_sets() -> None:
    comparison = compare_runs(fixtures.strong(), fixtures.weak(), "a", "b")  # pgd + autoattack vs fgsm alone
    worst = [d for d in comparison.deltas if _name(d) == "worst_case_robust_accuracy"]
    assert len(worst) == 1 and worst[0].a is not None and worst[0].b is not None
    assert worst[0].delta == pytest.approx(400 / 500 - 280 / 500)
    assert worst[0].label == "worst-case robust accuracy over each run's attacks (final)"
    assert "the worst case is over different attacks: a: pgd, autoattack; b: fgsm" in comparison.notes
    same = compare_runs(fixtures.strong(), fixtures.strong())
    assert [d.label for d in same.deltas if _name(d) == "worst_case_robust_accuracy"] == ["worst-case robust accuracy over pgd, autoattack"]
    assert not any("different attacks" in n for n in same.notes)


def test_the_same_attacks_in_another_order_are_the_same_worst_case() -> None:
    """The worst case is a per-example minimum over the attacks: pgd, autoattack and autoattack,
    pgd give the same quantity, compared without a 'different attacks' note."""
    b = fixtures.strong().model_copy(deep=True)
    for evaluation in b.evaluations:
        for r in evaluation.records:
            if r.name == "worst_case_robust_accuracy" and r.condition.get("attack") == "pgd+autoattack":
                r.condition["attack"] = "autoattack+pgd"
    comparison = compare_runs(fixtures.strong(), b)
    assert not any("different attacks" in n for n in comparison.notes)


def test_mean_corruption_accuracy_pairs_across_the_cells_it_averages() -> None:
    """The record's condition says which cells it averages (older results: none): the two runs'
    means are still one row, with a note when they average different cells."""
    from robench.results import EvaluationResult, MetricRecord

    def run(condition: dict) -> object:
        r = fixtures.strong().model_copy(deep=True)
        record = MetricRecord.proportion("corruptions", "mean_corruption_accuracy", 300, 500, condition)
        r.evaluations.append(EvaluationResult(key="corruptions", section="corruptions", name="corruptions", status="success", records=[record]))
        return r

    comparison = compare_runs(run({}), run({"benchmark_corruptions": 15, "severities": 5}))
    rows = [d for d in comparison.deltas if _name(d) == "mean_corruption_accuracy"]
    assert len(rows) == 1 and rows[0].delta == 0
    assert any("averages different cells" in n and "every declared cell" in n for n in comparison.notes)
    same = compare_runs(run({"benchmark_corruptions": 15, "severities": 5}), run({"benchmark_corruptions": 15, "severities": 5}))
    assert not any("different cells" in n for n in same.notes)


def test_paired_test_on_the_shared_examples_equals_statsmodels_mcnemar() -> None:
    # 12 more examples right of 500: the 95% intervals overlap, but the runs share their examples, and
    # McNemar's exact test on the 28 discordant ones finds the difference
    import numpy as np
    from statsmodels.stats.contingency_tables import mcnemar

    from robench.results import pack_outcomes

    rng = np.random.default_rng(0)
    first = rng.random(500) < 0.88
    second = first.copy()
    flip_up = np.flatnonzero(~first)[:20]  # wrong before, right after
    flip_down = np.flatnonzero(first)[:8]  # right before, wrong after
    second[flip_up], second[flip_down] = True, False
    a, b = fixtures.strong(), fixtures.strong()
    for run, outcome in ((a, first), (b, second)):
        clean = next(e for e in run.evaluations if e.key == "clean")
        clean.records[0] = MetricRecord.proportion("clean", "accuracy", int(outcome.sum()), 500)
        clean.outcomes = {"accuracy": pack_outcomes(outcome)}
    delta = next(d for d in compare_runs(a, b).deltas if d.label == "clean accuracy")
    table = [[int((first & second).sum()), int((first & ~second).sum())], [int((~first & second).sum()), int((~first & ~second).sum())]]
    assert delta.discordant == (8, 20)
    assert delta.paired_p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert delta.outside is False and delta.paired_p < 0.05  # the intervals overlap; the paired test sees it
    _, rows = runs_table(compare_runs(a, b))
    assert next(r for r in rows if r[0] == "clean accuracy")[-1] == f"p = {delta.paired_p:.2g} (8 vs 20)"
    # other examples (another number of examples, split or stride): no paired test
    for update in ({"dataset": b.dataset.model_copy(update={"n_examples": 400})}, {"dataset": b.dataset.model_copy(update={"split": "train"})},
                   {"threat_model": {**b.threat_model, "dataset": {**b.threat_model["dataset"], "stride": 3}}}):  # fmt: skip
        other = b.model_copy(update=update)
        assert next(d for d in compare_runs(a, other).deltas if d.label == "clean accuracy").paired_p is None, update


def test_outcomes_round_trip_and_refuse_a_wrong_length() -> None:
    import numpy as np

    from robench.results import pack_outcomes, unpack_outcomes

    flags = np.random.default_rng(1).random(37) < 0.5
    assert np.array_equal(unpack_outcomes(pack_outcomes(flags), 37), flags)
    assert unpack_outcomes(pack_outcomes(flags), 45) is None and unpack_outcomes("not base64!", 37) is None


def test_certified_accuracies_zero_by_construction_get_no_delta() -> None:
    """cifar10-audit vs cifar10-audit-fast: both smoothing headlines read 'n/a: not certifiable with
    these settings', and compare wrote '+0.00 pp' and 'CIs disjoint: no' between them."""
    def uncertifiable(results):  # type: ignore[no-untyped-def]
        results = results.model_copy(deep=True)
        for evaluation in results.evaluations:
            evaluation.records = [r.model_copy(update={"value": 0.0, "ci_low": 0.0, "ci_high": 0.3,
                                                       "condition": {**r.condition, "certifiable": False}})
                                  if r.name == "certified_accuracy" and "threat_eps" in r.condition else r
                                  for r in evaluation.records]  # fmt: skip
        return results

    comparison = compare_runs(uncertifiable(fixtures.certified()), uncertifiable(fixtures.certified()))
    [certified] = [d for d in comparison.deltas if d.a is not None and d.a.name == "certified_accuracy"]
    assert certified.delta is None and certified.outside is None and certified.paired_p is None
    row = next(r for r in runs_table(comparison)[1] if r[0] == certified.label)
    assert row[1].startswith("n/a: not certifiable") and row[3] == "–" and row[4] == "–"
    # a certifiable one still gets its delta
    plain = compare_runs(fixtures.certified(), fixtures.certified())
    assert next(d for d in plain.deltas if d.a is not None and d.a.name == "certified_accuracy").delta == 0.0
