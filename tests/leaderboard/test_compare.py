"""Rank, neighbours, deltas and flags against a brute-force reading of the raw files (pandas) and
statsmodels' Clopper-Pearson intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from robench.cli import main
from robench.leaderboard import build_snapshot, compare_to_leaderboard, load_snapshot
from robench.results import EvaluationResult, MetricRecord, Results
from tests.leaderboard.conftest import SHARED_MODEL_INFO
from tests.report import fixtures

N = fixtures.N


def _raw(folder: Path, eps: str | None = "8/255") -> pd.DataFrame:
    rows = []
    for path in folder.glob("*.json"):
        info = json.loads(path.read_text())
        ranked = info.get("corruptions_acc") or info.get("external") or info["autoattack_acc"]
        rows.append({"id": path.stem, "eps": info.get("eps"), "clean": float(info["clean_acc"]) / 100, "ranked": float(ranked) / 100})
    frame = pd.DataFrame(rows)
    return frame[frame["eps"] == eps] if eps is not None else frame


def _with_worst_case(results: Results, robust: int, attack: str = "autoattack") -> Results:
    results = results.model_copy(deep=True)
    for evaluation in results.evaluations:
        evaluation.records = [
            MetricRecord.proportion(r.evaluation, r.name, robust, N, r.condition) if r.name == "worst_case_robust_accuracy" else r
            for r in evaluation.records
        ]
    return results


@pytest.mark.parametrize("robust", [0, 120, 222, 275, 276, 300, 355, 356, 400, 500])
def test_rank_neighbours_and_deltas_match_brute_force(model_info: Path, robust: int) -> None:
    snapshot = build_snapshot(model_info)
    results = _with_worst_case(fixtures.strong(), robust)
    [comparison] = compare_to_leaderboard(results, snapshot)
    raw = _raw(model_info / "cifar10" / "Linf")
    value = robust / N
    assert comparison.board == "cifar10/Linf" and comparison.eps == "8/255"
    assert comparison.n_entries == len(raw) and comparison.excluded == ("Eps2019Old",)
    assert comparison.rank == 1 + int((raw["ranked"] > value).sum())
    low, high = proportion_confint(robust, N, alpha=0.05, method="beta")
    above, below = raw[raw["ranked"] > value], raw[raw["ranked"] <= value]
    expected = {}
    if len(above):
        expected["above"] = above.loc[above["ranked"].idxmin()]
    if len(below):
        expected["below"] = below.loc[below["ranked"].idxmax()]
    expected["best"] = raw.loc[raw["ranked"].idxmax()]
    assert [n.role for n in comparison.neighbours] == list(expected)
    clean = 440 / N
    for n in comparison.neighbours:
        row = expected[n.role]
        assert n.entry.id == row["id"]
        assert n.delta_robust == pytest.approx(value - row["ranked"], abs=1e-9)
        assert n.delta_clean == pytest.approx(clean - row["clean"], abs=1e-9)
        assert n.robust_outside_ci == (not (low - 1e-12 <= row["ranked"] <= high + 1e-12))
    assert comparison.beats_sota == (value > raw["ranked"].max())
    assert not comparison.scrutiny  # the strong fixture's number comes from AutoAttack


def test_a_frozen_copy_of_the_manifest_matches_the_same_board(model_info: Path) -> None:
    """`robench data freeze cifar10 --out my-cifar10.yaml` keeps the manifest's name (cifar10): the
    run is compared like one on the shipped manifest, not with a board named after the file."""
    snapshot = build_snapshot(model_info)
    shipped = _with_worst_case(fixtures.strong(), 300)
    frozen = shipped.model_copy(deep=True)
    frozen.threat_model["dataset"]["manifest"] = "/home/u/manifests/my-cifar10.yaml"
    assert frozen.dataset.manifest == "cifar10"
    [a], [b] = compare_to_leaderboard(shipped, snapshot), compare_to_leaderboard(frozen, snapshot)
    assert (a.board, a.rank) == (b.board, b.rank) == ("cifar10/Linf", a.rank)


def test_a_run_on_the_train_split_is_said_not_comparable(model_info: Path) -> None:
    results = _with_worst_case(fixtures.strong(), 300)
    [test] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert not any("split" in n for n in test.notes)
    results.dataset.split = "train"
    [train] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert any("train split, the published numbers on the test split: not comparable" in n for n in train.notes)


def test_weak_evaluation_beating_sota_is_flagged(model_info: Path) -> None:
    [comparison] = compare_to_leaderboard(fixtures.weak(), build_snapshot(model_info))
    assert comparison.beats_sota and comparison.strong_attack is False and comparison.scrutiny
    assert comparison.rank == 1
    assert any("too weak" in note for note in comparison.notes)
    assert any("n = 500" in note for note in comparison.notes)  # fewer test points than the board


def test_strong_evaluation_beating_sota_is_not_flagged(model_info: Path) -> None:
    [comparison] = compare_to_leaderboard(_with_worst_case(fixtures.strong(), 450), build_snapshot(model_info))
    assert comparison.beats_sota and comparison.strong_attack and not comparison.scrutiny


def test_entries_count_only_at_the_same_eps(model_info: Path) -> None:
    results = fixtures.strong().model_copy(deep=True)
    results.threat_model["adversary"]["eps"] = 0.031
    for evaluation in results.evaluations:
        evaluation.records = [r.model_copy(update={"condition": {**r.condition, "eps": 0.031}}) if "eps" in r.condition else r for r in evaluation.records]
    [comparison] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert comparison.n_entries == 1 and [n.entry.id for n in comparison.neighbours][-1] == "Eps2019Old"


def _corruption_run(names: list[str], mean: int) -> Results:
    results = fixtures.strong().model_copy(deep=True)
    results.threat_model["adversary"] = None
    results.threat_model["evaluations"] = {"clean": True, "corruptions": {"source": "released", "corruptions": names, "severities": [1, 2, 3, 4, 5]}}
    results.evaluations = [
        results.evaluations[0],
        EvaluationResult(key="corruptions", section="corruptions", name="corruptions", status="success",
                         records=[MetricRecord.proportion("corruptions", "mean_corruption_accuracy", mean, N)]),
    ]  # fmt: skip
    return results


def test_an_entry_whose_footnote_names_another_eps_is_left_out(model_info: Path) -> None:
    """RobustBench's Zhang2020Geometry and three CIFAR-100 LBGAT entries say eps 8/255 but their
    footnote "Uses \\(\\ell_{\\infty} \\) = 0.031 ~ 7.9/255 instead of 8/255": like the six entries
    whose eps field says 0.031, they are not ranked against 8/255 runs."""
    import json

    path = model_info / "cifar10" / "Linf" / "Gamma2021.json"
    info = json.loads(path.read_text())
    info["footnote"] = "Uses \\(\\ell_{\\infty} \\) = 0.031 \u2248 7.9/255 instead of 8/255."
    path.write_text(json.dumps(info))
    snapshot = build_snapshot(model_info)
    entry = next(e for e in snapshot.boards["cifar10/Linf"].entries if e.id == "Gamma2021")
    assert (entry.eps, entry.eps_value) == ("8/255", 0.031) and "0.031 instead of 8/255" in entry.eps_note
    [comparison] = compare_to_leaderboard(_with_worst_case(fixtures.strong(), 300), snapshot)
    assert set(comparison.excluded) == {"Eps2019Old", "Gamma2021"} and comparison.n_entries == 4


@pytest.mark.skipif(not SHARED_MODEL_INFO.is_dir(), reason="needs ../shared/leaderboards")
def test_the_shipped_snapshot_reads_the_eps_footnotes() -> None:
    """Re-derived from the published files: every entry evaluated at 0.031 (field or footnote)."""
    import json

    expected = set()
    for path in SHARED_MODEL_INFO.glob("*/Linf/*.json"):
        info = json.loads(path.read_text())
        if info.get("eps") == "0.031" or "0.031" in str(info.get("footnote") or ""):
            expected.add(f"{path.parts[-3]}/{path.stem}")
    shipped = {f"{b.dataset}/{e.id}" for b in load_snapshot().boards.values() for e in b.entries if e.eps_value == 0.031}
    assert shipped == expected and len(expected) == 10


def test_corruption_board(model_info: Path) -> None:
    from robench.threat_model import BENCHMARK_CORRUPTIONS

    [comparison] = compare_to_leaderboard(_corruption_run(list(BENCHMARK_CORRUPTIONS), 400), build_snapshot(model_info))
    raw = _raw(model_info / "cifar10" / "corruptions", eps=None)
    assert comparison.board == "cifar10/corruptions" and comparison.metric == "mean_corruption_accuracy"
    assert comparison.rank == 1 + int((raw["ranked"] > 0.8).sum()) and comparison.strong_attack is None
    assert not any("not comparable" in n for n in comparison.notes)
    [subset] = compare_to_leaderboard(_corruption_run(["fog"], 400), build_snapshot(model_info))
    assert any("not comparable" in n for n in subset.notes)


def test_a_sweep_of_another_released_set_is_said_not_comparable(model_info: Path) -> None:
    """A run whose manifest is named cifar10 but whose sweep read a custom released set (a synthetic
    stand-in frozen as cifar10csyn) was ranked among the CIFAR-10-C entries without a word."""
    from robench.threat_model import BENCHMARK_CORRUPTIONS

    def ranked(released: str | None, recorded: str | None) -> tuple[str, ...]:
        results = _corruption_run(list(BENCHMARK_CORRUPTIONS), 400)
        if released is not None:
            results.threat_model["evaluations"]["corruptions"]["released_manifest"] = released
        if recorded is not None:
            results.evaluations[1].resolved = {"source": "released", "released": {"manifest": recorded}}
        [comparison] = compare_to_leaderboard(results, build_snapshot(model_info))
        return comparison.notes

    assert any("released set 'cifar10csyn', not cifar10c" in n and "not comparable" in n
               for n in ranked("/data/cifar10csyn.yaml", "cifar10csyn"))
    assert any("released set 'cifar10csyn'" in n for n in ranked(None, "cifar10csyn"))  # the recorded name decides
    assert any("released set 'mine'" in n for n in ranked("/data/mine.yml", None))  # older results: the path's name
    # the shipped set, or a frozen copy of it (its manifest keeps the name cifar10c), is the board's
    assert not any("not comparable" in n for n in ranked("cifar10c", None))
    assert not any("not comparable" in n for n in ranked("/data/my-frozen-cifar10c.yaml", "cifar10c"))
    assert not any("not comparable" in n for n in ranked(None, None))


def test_a_manifest_named_like_the_board_but_of_another_format_is_flagged(model_info: Path) -> None:
    """A synthetic .npz test set whose manifest was named cifar10 was ranked 73rd of 93 on cifar10/Linf
    without a word; the shipped manifest reads the official python batches."""
    run = _with_worst_case(fixtures.strong(), 300)
    assert not any("reads npz files" in n for c in compare_to_leaderboard(run, build_snapshot(model_info)) for n in c.notes)
    run.dataset.format = "npz"
    notes = [n for c in compare_to_leaderboard(run, build_snapshot(model_info)) for n in c.notes]
    assert any(n.startswith("the run's manifest 'cifar10' reads npz files, robench's shipped cifar10 manifest the official cifar_python")
               for n in notes)
    # robench's own CIFAR-10-C (placed on the cifar10 boards) is held against its own shipped manifest, not cifar10's
    run.dataset.manifest, run.dataset.format = "cifar10c", "cifar_c_npy"
    assert not any("reads cifar_c_npy files" in n for c in compare_to_leaderboard(run, build_snapshot(model_info)) for n in c.notes)
    run.dataset.format = "npz"
    assert any(n.startswith("the run's manifest 'cifar10c' reads npz files, robench's shipped cifar10c manifest the official cifar_c_npy")
               for c in compare_to_leaderboard(run, build_snapshot(model_info)) for n in c.notes)


def test_corruption_board_reads_what_the_mean_averaged(model_info: Path) -> None:
    """All 19 corruptions declared: the mean covers the 15 benchmark ones x 5 severities (its
    condition says so), which is the board's quantity; a mean over 15 x 3 severities is not."""
    from robench.threat_model import ALL_CORRUPTIONS

    results = _corruption_run(list(ALL_CORRUPTIONS), 400)
    record = results.evaluations[1].records[0]
    record.condition = {"benchmark_corruptions": 15, "severities": 5}
    [comparison] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert not any("not comparable" in n for n in comparison.notes)
    record.condition = {"benchmark_corruptions": 15, "severities": 3}
    [subset] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert any("not comparable" in n for n in subset.notes)


def test_corruption_board_small_sample_note_reads_the_mean_record(model_info: Path) -> None:
    """The mean's own n decides the note (corruptions.n_examples can be below the dataset's)."""
    from robench.threat_model import BENCHMARK_CORRUPTIONS

    results = _corruption_run(list(BENCHMARK_CORRUPTIONS), 0)
    results.dataset.n_examples = 10_000
    results.evaluations[1].records = [MetricRecord.proportion("corruptions", "mean_corruption_accuracy", 160, 200)]
    [comparison] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert any("n = 200 examples" in note for note in comparison.notes), comparison.notes


def test_unmatched_settings_give_nothing(model_info: Path) -> None:
    snapshot = build_snapshot(model_info)
    mnist = fixtures.strong().model_copy(deep=True)
    mnist.threat_model["dataset"]["manifest"] = "mnist5k"
    mnist.dataset.manifest = "mnist5k"
    assert compare_to_leaderboard(mnist, snapshot) == []
    assert compare_to_leaderboard(fixtures.certified(), load_snapshot()) == []  # certificates are not AutoAttack numbers
    from robench.leaderboard.compare import unmatched_reason

    assert unmatched_reason(mnist, snapshot).endswith("matches this run: the snapshot has no mnist5k/Linf board")
    why = unmatched_reason(fixtures.certified(), load_snapshot())
    assert "board cifar10/L2 ranks empirical robust accuracy, but no attack finished" in why and "certified accuracy" in why


def test_shipped_snapshot_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "weak.json"
    fixtures.weak().save(path)
    assert main(["compare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cifar10/Linf at eps 8/255: rank 1 of" in out and "SCRUTINY" in out and "this run" in out
    assert main(["compare", str(tmp_path / "absent.json")]) == 2


def test_rank_interval_and_weak_attack_caveat(model_info: Path) -> None:
    """Every rank the run's 95% interval allows, from the raw entries; a board of AutoAttack numbers
    compared with a run that has no AutoAttack says so."""
    results = fixtures.strong().model_copy(deep=True)
    [comparison] = compare_to_leaderboard(results, build_snapshot(model_info))
    worst = [r for r in results.records(name="worst_case_robust_accuracy") if "class" not in r.condition][-1]
    raw = _raw(model_info / "cifar10" / "Linf")
    assert comparison.rank_range == (1 + int((raw["ranked"] > worst.ci_high).sum()), 1 + int((raw["ranked"] > worst.ci_low).sum()))
    assert comparison.rank_range[0] <= comparison.rank <= comparison.rank_range[1]
    assert not any("AutoAttack before comparing" in n for n in comparison.notes)
    results.evaluations = [e for e in results.evaluations if e.name != "autoattack"]
    [weaker] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert any("AutoAttack before comparing" in n for n in weaker.notes)


def test_a_randomized_model_is_said_not_comparable_with_autoattack_rand_entries() -> None:
    from robench.leaderboard import compare_to_leaderboard, load_snapshot
    from tests.report import fixtures

    results = fixtures.strong()
    results.model = results.model.model_copy(update={"randomized": True})
    notes = [note for c in compare_to_leaderboard(results, load_snapshot()) for note in c.notes]
    assert any("the model is randomized" in note and "not comparable" in note for note in notes)


def test_a_targeted_or_box_restricted_adversary_is_said_not_comparable(model_info: Path) -> None:
    """RobustBench ranks untargeted robust accuracy over the whole pixel range [0, 1]: a targeted run
    (which AutoAttack refuses) or one whose bounds are narrower measures another quantity."""
    results = _with_worst_case(fixtures.strong(), 300)
    [plain] = compare_to_leaderboard(results, build_snapshot(model_info))
    assert not any("not comparable" in n for n in plain.notes)
    targeted = results.model_copy(deep=True)
    targeted.threat_model["adversary"]["goal"] = "targeted"
    [comparison] = compare_to_leaderboard(targeted, build_snapshot(model_info))
    assert any("goal is targeted" in n and "not comparable" in n for n in comparison.notes), comparison.notes
    boxed = results.model_copy(deep=True)
    boxed.threat_model["adversary"]["bounds"] = [0.1, 0.9]
    [comparison] = compare_to_leaderboard(boxed, build_snapshot(model_info))
    assert any("bounds are [0.1, 0.9]" in n and "not comparable" in n for n in comparison.notes), comparison.notes


@pytest.mark.parametrize("robust", [0, 275, 276, 300, 450])
def test_the_table_ranks_run_and_entries_on_one_scale(model_info: Path, robust: int) -> None:
    """The run's "r/n+1" counts the run among the entries; an entry's rank in the same column does too:
    the run at 0.552 is 3rd of 6 (above Delta2020's 0.551), so Delta2020 is 4th, not "3" beside "3/6"."""
    from robench.leaderboard import board_table

    [comparison] = compare_to_leaderboard(_with_worst_case(fixtures.strong(), robust), build_snapshot(model_info))
    value = robust / N
    raw = _raw(model_info / "cifar10" / "Linf")
    _, rows = board_table(comparison)
    assert rows[0][1].startswith(f"{comparison.rank}/{len(raw) + 1}")
    for row in rows[1:]:
        entry = raw[raw["id"] == row[0].split(": ", 1)[1].split(" ")[0]].iloc[0]
        assert int(row[1]) == 1 + int((raw["ranked"] > entry["ranked"]).sum()) + int(value > entry["ranked"])


def test_the_comparison_says_the_published_numbers_carry_no_interval(model_info: Path) -> None:
    """The run has a 95% interval, RobustBench's numbers none (and another n): said on every board,
    with the full test set too, where no sample-size note is given."""
    from robench.threat_model import BENCHMARK_CORRUPTIONS

    results = _with_worst_case(fixtures.strong(), 300)
    corrupted = _corruption_run(list(BENCHMARK_CORRUPTIONS), 400)
    for run in (results, corrupted):
        [comparison] = compare_to_leaderboard(run, build_snapshot(model_info))
        assert any("10,000 test points, with no interval" in n for n in comparison.notes), comparison.notes


def test_the_report_section_defines_the_rank_it_shows() -> None:
    """The section's legend matches the table: every rank counts the run and the compared entries, and
    the published numbers have no interval."""
    from robench.report.render import render_html

    html = render_html(_with_worst_case(fixtures.strong(), 364))
    assert "1 + the number of the others (compared entries and this run) with a strictly higher number" in html
    assert "the published numbers carry no interval" in html


def test_imagenet_comparisons_say_the_images_are_not_robustbenchs_list() -> None:
    """robench takes the first 5,000 of its class-interleaved ImageNet order; RobustBench its own fixed
    list: at n = 5,000 nothing said the images differ (a review's finding)."""
    from robench.leaderboard.compare import _sample_note

    results = fixtures.strong()
    results.dataset = results.dataset.model_copy(update={"split": "val", "n_examples": 5000})
    assert any("its own fixed list of 5,000 validation images" in n for n in _sample_note(results, "imagenet", None))
    assert not any("fixed list" in n for n in _sample_note(fixtures.strong(), "cifar10", None))
