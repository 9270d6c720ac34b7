"""Every number the way MetricRecord.formatted writes it, with its interval and its own n; no raw
Python values (None, lists) in the report; caveats where a number is weaker than it looks."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

from robench.report._labels import check_finding, show
from robench.report.checklist import checklist
from robench.report.render import render_html, sample_sizes
from robench.results import Check, EvaluationResult, MetricRecord
from tests.report import fixtures


class _Tables(HTMLParser):
    """Tables as lists of rows of cell texts (``<br>`` kept as a space)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append((dict(attrs).get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def _visible_text(page: str) -> str:
    page = re.sub(r"<(style|pre)[^>]*>.*?</\1>", " ", page, flags=re.S)  # the declared threat model is JSON on purpose
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", page))


def _text(record: MetricRecord) -> str:
    return " ".join(record.formatted())


def test_attack_table_shows_every_proportion_with_its_interval_and_n() -> None:
    results = fixtures.strong()
    rows = next(rows for cls, rows in _tables(render_html(results)).tables if cls == "attacks")
    header = rows[0]
    assert "Worst-class gap (point estimate)" in header
    pgd = dict(zip(header, next(r for r in rows if r[0] == "pgd white-box")))
    records = {r.name: r for r in results.evaluation("attacks/pgd").records if "class" not in r.condition}
    assert pgd["n"] == "500"
    assert pgd["Clean accuracy"] == _text(records["clean_accuracy"])  # n as the row's: not repeated
    assert pgd["Robust accuracy"] == _text(records["robust_accuracy"])
    success = records["attack_success_rate"]
    assert success.n == 440 and pgd["Success rate on clean-correct"] == f"{_text(success)} n = 440"
    assert pgd["Worst-class gap (point estimate)"] == "12.0%"
    assert pgd["Worst case so far"] == _text(records["worst_case_robust_accuracy"])
    # every success at ||delta|| = eps (Linf): the column would repeat eps, so it is left out and that is said
    assert "Median ‖δ‖ of successes" not in header
    assert "Every successful perturbation has ‖δ‖ = ε" in _visible_text(render_html(results))
    records["median_perturbation_norm"].value = 0.02  # below eps: informative, shown with its own n
    rows = next(rows for cls, rows in _tables(render_html(results)).tables if cls == "attacks")
    pgd = dict(zip(rows[0], next(r for r in rows if r[0] == "pgd white-box")))
    assert pgd["Median ‖δ‖ of successes"] == f"{records['median_perturbation_norm'].formatted()[0]} n = 140"


def test_every_success_is_said_to_sit_at_eps_only_when_the_mean_norm_is_eps() -> None:
    """The left-out norm column was explained by 'Every successful perturbation has ||delta|| = eps'
    whenever the medians were eps, and even with no norm recorded: a median says it of half the successes."""
    results = fixtures.strong()
    for evaluation in results.evaluations:
        for record in evaluation.records:
            if record.name == "mean_perturbation_norm":
                record.value = 0.8 * record.value  # some successes inside the ball; every median still at eps
    text = " ".join(_visible_text(render_html(results)).split())
    assert "Every successful perturbation" not in text and "Median ‖δ‖ of successes" not in text
    assert "Each attack's median ‖δ‖ over its successes is ε (most step to the ball's surface), so no column" in text
    for evaluation in results.evaluations:
        evaluation.records = [r for r in evaluation.records if "perturbation_norm" not in r.name]
    text = " ".join(_visible_text(render_html(results)).split())
    assert "Every successful perturbation" not in text and "median ‖δ‖" not in text  # nothing recorded: nothing claimed


def _autoattack(results):  # type: ignore[no-untyped-def]
    evaluation = results.evaluation("attacks/autoattack")
    evaluation.artifacts.update(kind="autoattack", version="standard", breakdown=[
        {"attack": "clean", "robust_accuracy": 0.88, "n_robust": 440, "n_attacked": 0},
        {"attack": "apgd-ce", "robust_accuracy": 0.6, "n_robust": 300, "n_attacked": 440},
        {"attack": "apgd-t", "robust_accuracy": 0.56, "n_robust": 280, "n_attacked": 300},
    ])  # fmt: skip
    condition = {"attack": "autoattack", "after": "apgd-ce", "order": 1}
    evaluation.records.append(MetricRecord.proportion("attacks/autoattack", "robust_accuracy_after", 300, 500, condition))
    return results


def test_autoattack_breakdown_has_intervals() -> None:
    page = render_html(_autoattack(fixtures.strong()))
    rows = next(rows for cls, rows in _tables(page).tables if rows and rows[0][0] == "After")
    assert rows[0] == ["After", "Examples attacked", "Robust", "Robust accuracy", "95% CI", "n"]
    for row, robust in zip(rows[1:], (440, 300, 280)):
        value, interval = MetricRecord.proportion("x", "y", robust, 500).formatted()
        assert row[3:] == [value, interval, "500"]
    assert "88.00%" not in page


def test_masking_findings_carry_interval_and_n() -> None:
    check = Check(name="iterative_at_least_single_step", status="pass", message="iterative robust accuracy 69.00% <= single-step 85.00%",
                  evidence={"iterative": 0.6899999976158142, "single_step": 0.8500000238418579, "tolerance": 0.01, "n": 100, "source": "this check"})  # fmt: skip
    evaluation = EvaluationResult(key="attacks/gradient_masking", section="attacks", name="gradient_masking", checks=[check],
                                  artifacts={"kind": "masking", "n_examples": 100})  # fmt: skip
    iterative, single = (_text(MetricRecord.proportion("x", "y", k, 100)) for k in (69, 85))
    expected = f"iterative robust accuracy {iterative} (n = 100) <= single-step {single} (n = 100)"
    assert check_finding(check, evaluation, fixtures.strong()) == expected
    results = fixtures.strong()
    results.evaluations[3] = evaluation
    page = render_html(results)
    assert expected.replace("<", "&lt;") in page and "69.00%" not in page


def test_calibration_table_uses_the_report_format() -> None:
    results = fixtures.strong()
    accuracy = MetricRecord.proportion("calibration", "accuracy", 971, 1000, {"condition": "clean"})
    results.evaluation("calibration").records.append(accuracy)
    page = render_html(results)
    assert "97.1%" in page and "[95.9, 98.0]" in page
    assert "97.10%" not in page and "[95.86, 98.05]" not in page


def test_checklist_names_the_worst_case_as_the_summary_does() -> None:
    evidence = {i.key: i for i in checklist(fixtures.strong())}["clean_and_robust"].evidence
    assert "worst-case robust accuracy over pgd, autoattack: 56.0% [51.5, 60.4], n = 500" in evidence
    assert "attacks/autoattack worst_case_robust_accuracy" not in evidence


def test_no_raw_python_values_in_the_report() -> None:
    for name, build in fixtures.FIXTURES.items():
        text = _visible_text(render_html(build()))
        assert not re.search(r"\bNone\b", text), (name, re.findall(r".{40}\bNone\b.{20}", text))
        assert "['" not in text and "{'" not in text, name
    assert "other_threats: L2:0.5" in _visible_text(render_html(fixtures.weak()))
    # the bins the threat model declares when the evaluation did not record them
    assert "15 equal-width bins" in render_html(fixtures.strong())
    assert show(None) == "–" and show(["a", 1]) == "a, 1" and show({"a": None, "b": [1, 2]}) == "b=1, 2"


def test_weak_only_headline_card_has_a_caveat() -> None:
    caveat = "weak attacks only: an upper bound, likely optimistic"
    assert caveat in render_html(fixtures.weak())
    assert caveat not in render_html(fixtures.strong()) and "likely optimistic" not in render_html(fixtures.strong())


def test_limitations_state_the_n_of_each_section() -> None:
    results = fixtures.certified()
    smoothing = results.evaluation("certification/smoothing")
    smoothing.records = [r.model_copy(update={"n": 50}) if r.name == "certified_accuracy" else r for r in smoothing.records]
    sentence = sample_sizes(results)
    assert sentence.startswith("Accuracies are measured on n = 500 examples (n = 50 for certification/smoothing);")
    page = render_html(results)
    assert sentence in page and "Every accuracy is measured on" not in page
    assert sample_sizes(fixtures.strong()).startswith("Accuracies are measured on n = 500 examples;")


def test_summary_labels_read_as_words_and_are_unique() -> None:
    # internal keys ("attacks/pgd robust_accuracy", "calibration ece (condition=clean)") read as words
    from robench.report.render import record_label, summary_records

    labels = [record_label(r) for r in summary_records(fixtures.strong())]
    assert labels == ["clean accuracy", "robust accuracy: pgd", "robust accuracy: autoattack",
                      "worst-case robust accuracy over pgd, autoattack", "ECE, clean", "ECE under autoattack"]  # fmt: skip
    certified = [record_label(r) for r in summary_records(fixtures.certified())]
    assert "certified accuracy: smoothing (sigma=0.25) at L2 eps=0.5" in certified
    assert all("_" not in label for label in labels + certified)


def test_a_certification_grid_point_at_the_declared_eps_is_not_a_second_summary_row() -> None:
    # IBP's eps grid ends at the declared eps: that grid point and the threat-model record are one number
    from robench.report.render import record_label, summary_records

    results = fixtures.certified()
    key = "certification/ibp"
    condition = {"certifier": "ibp", "norm": "L2", "box": "L2"}
    records = [MetricRecord.proportion(key, "certified_accuracy", 200, fixtures.N, {**condition, "eps": 0.5}),
               MetricRecord.proportion(key, "certified_accuracy", 200, fixtures.N, {**condition, "threat_norm": "L2", "threat_eps": 0.5})]  # fmt: skip
    results.evaluations.append(EvaluationResult(key=key, section="certification", name="ibp", status="success", records=records))
    rows = [record_label(r) for r in summary_records(results) if r.evaluation == key]
    assert rows == ["certified accuracy: ibp (box=L2) at L2 eps=0.5"]


def test_limitations_do_not_call_pass_mean_intervals_exact() -> None:
    # a randomized model's Clopper-Pearson interval on a rounded pass-mean count is an approximation
    results = fixtures.strong()
    pgd = results.evaluation("attacks/pgd")
    pgd.records = [r.model_copy(update={"interval": "clopper-pearson (rounded pass-mean count)"}) if r.name == "robust_accuracy" else r
                   for r in pgd.records]  # fmt: skip
    sentence = sample_sizes(results)
    assert "exact 95% Clopper-Pearson" not in sentence and "approximate" in sentence


def test_limitations_call_only_plain_counts_exact_and_speak_of_the_split() -> None:
    # a mean corruption accuracy's Clopper-Pearson interval is on a non-integer sum: approximate (conservative), not exact;
    # an interval is about the split the examples come from, if they are representative of it, not "for that sample"
    results = fixtures.strong()
    pgd = results.evaluation("attacks/pgd")
    over = "clopper-pearson over examples (mean score per example; cells share their examples)"
    pgd.records = [r.model_copy(update={"interval": over}) if r.name == "robust_accuracy" else r for r in pgd.records]
    sentence = sample_sizes(results)
    assert "exact for the 0/1 counts (clean, attacks/autoattack)" in sentence
    assert "approximate for attacks/pgd (conservative: applied to a sum of per-example mean scores" in sentence
    assert "exact 95% Clopper-Pearson" not in sentence
    for plain in (sentence, sample_sizes(fixtures.strong())):
        assert "for that sample" not in plain and "not for other data" not in plain
        assert "assume the evaluated examples are representative of it" in plain and "the test split" in plain
    assert "exact 95% Clopper-Pearson intervals (on 0/1 counts)" in sample_sizes(fixtures.strong())


def test_masking_checks_state_their_n_and_budgets() -> None:
    """Each check's row says on how many examples (and how many of them clean-correct) and with
    which steps, restarts and queries it ran; an inconclusive check is counted apart from warnings."""
    check = Check(name="white_box_at_least_black_box", status="inconclusive",
                  message="inconclusive: black-box queries 60 (fewer than 1000 cannot show it); observed: ...",
                  evidence={"n": 200, "eligible": 176, "budget": {"pgd_steps": 20, "pgd_restarts": 1, "pgd_random_start": True,
                            "pgd_step_size_at_eps": 0.0039, "square_queries": 60, "square_restarts": 1}})  # fmt: skip
    old = Check(name="autoattack_own_checks", status="pass", message="AutoAttack's own checks raised no warning")
    results = fixtures.strong()
    results.evaluations[3].checks = [check, old]
    page = render_html(results)
    scope = "n = 200 (176 clean-correct); PGD 20 steps x 1 restart (random start yes, step size 0.0039 at eps); Square 60 queries x 1 restart"
    rows = [row for _, table in _tables(page).tables for row in table if row and row[0] in ("white_box_at_least_black_box", "attacks/gradient_masking")]
    assert len(rows) == 4, rows  # the attacks section's table and the sanity-check table
    assert all(scope in row for row in rows if "inconclusive" in row), rows
    assert all("n and budget not recorded" in row for row in rows if "pass" in row), rows
    assert "Gradient-masking and sanity checks (0 warnings, 1 inconclusive)" in page
    assert "status-inconclusive" in page


def _calibration_under_two_attacks():  # type: ignore[no-untyped-def]
    results = fixtures.strong()
    calibration = results.evaluation("calibration")
    second = fixtures._panel("attack")
    second["condition"] = {"condition": "attack", "attack": "pgd"}
    second["ece"] = 0.09
    calibration.artifacts["reliability"].append(second)
    calibration.records.append(MetricRecord(evaluation="calibration", name="ece", value=0.09, n=fixtures.N, ci_low=0.06, ci_high=0.12,
                                            condition=second["condition"], unit="probability", interval="bootstrap"))  # fmt: skip
    return results


def test_calibration_under_attack_says_clean_errors_are_included_and_how_the_worst_attack_is_chosen() -> None:
    """The attacked conditions include the examples already misclassified clean, and the 'worst
    attack' reliability diagram is the one of highest ECE: the report said neither."""
    page = render_html(_calibration_under_two_attacks())
    text = " ".join(_visible_text(page).split())
    assert "including those the model already misclassifies clean" in text
    assert 'alt="Reliability diagram: worst attack by ECE: attack pgd"' in page
    assert "the worst of 2 attacks by ECE" in text and "chosen by the ECE point estimate" in text
    rows = next(rows for _, rows in _tables(page).tables if rows and rows[0][0] == "Condition")
    by_label = {row[0]: row for row in rows[1:]}
    assert by_label["attack autoattack"][-1] == "500 440 clean-correct"  # autoattack's clean accuracy: 440 of 500
    assert by_label["attack pgd"][-1] == "500 440 clean-correct" and by_label["clean"][-1] == "500"


def test_stability_means_and_columns_show_their_intervals_or_say_point_estimate() -> None:
    """mT5D, mFR, the top-5 distance and the flip rate had intervals in the records but the report
    showed them bare next to the flip probability's interval; a mean without one says so."""
    from robench.results import EvaluationResult

    condition = {"perturbation": "rotate", "difficulty": 1, "source": "generated"}
    means = {"difficulty": 1, "source": "generated", "perturbations": 1}
    records = [
        MetricRecord(evaluation="stability", name="flip_probability", value=0.05, n=100, ci_low=0.03, ci_high=0.08,
                     condition=condition, unit="probability", interval="x"),
        MetricRecord(evaluation="stability", name="top5_distance", value=0.25, n=100, ci_low=0.125, ci_high=0.375,
                     condition=condition, unit="rank distance", interval="x"),
        MetricRecord(evaluation="stability", name="flip_rate", value=0.5, n=100, ci_low=0.3, ci_high=0.8,
                     condition={**condition, "baseline_flip_probability": 0.1}, unit="ratio", interval="x"),
        MetricRecord(evaluation="stability", name="mean_flip_probability", value=0.05, n=100, ci_low=0.03, ci_high=0.08,
                     condition=means, unit="probability", interval="x"),
        MetricRecord(evaluation="stability", name="mean_top5_distance", value=0.25, n=100, ci_low=0.125, ci_high=0.375,
                     condition=means, unit="rank distance", interval="x"),
        MetricRecord(evaluation="stability", name="mean_flip_rate", value=0.5, condition=means, unit="ratio"),  # unpaired: no interval
    ]  # fmt: skip
    results = fixtures.strong()
    results.evaluations.append(EvaluationResult(key="stability", section="stability", name="stability", status="success", records=records,
                                                resolved={"source": "generated"}, artifacts={"perturbations": [{"perturbation": "rotate", "frames": 30}],
                                                "table": "cifar10", "difficulty": 1, "noise_level": 1, "top5_distance_max": 18.0}))  # fmt: skip
    page = render_html(results)
    text = " ".join(_visible_text(page).split())
    assert "mean top-5 distance 0.250 [0.125, 0.375]" in text
    assert "mFR 50.0 (point estimate, no interval)" in text
    rows = next(rows for _, rows in _tables(page).tables if rows and rows[0][0] == "Perturbation")
    assert rows[1][5:7] == ["0.250 [0.125, 0.375]", "50.0 [30.0, 80.0]"]


def test_calibration_under_attack_says_where_each_attack_scores_the_examples_it_did_not_fool() -> None:
    """AutoAttack leaves an unbroken example at the clean input, PGD at its best iterate: their ECEs
    under attack measure different things, and the report did not say so."""
    results = _calibration_under_two_attacks()
    results.evaluation("attacks/autoattack").artifacts["procedure"] = {"unfooled_at": "the clean input (as AutoAttack)"}
    results.evaluation("attacks/pgd").artifacts.pop("procedure", None)  # an older robench's results
    text = " ".join(_visible_text(render_html(results)).split())
    assert "autoattack: the clean input (as AutoAttack); pgd: not recorded" in text
    assert "not comparable with those of an attack scored at its best point" in text


def test_resolved_threat_model_leaves_out_fields_that_do_not_apply() -> None:
    # an untargeted adversary's "targets" and calibration's holdout_fraction without temperature scaling mean nothing there
    results = fixtures.strong()
    page = render_html(results)
    block = re.search(r"<details><summary>Threat model as resolved \(defaults filled in[^<]*</summary><pre>(.*?)</pre>", page, re.S)
    assert block is not None and "Threat model as declared" not in page
    shown = html_lib.unescape(block.group(1))
    assert '"targets"' not in shown and '"holdout_fraction"' not in shown and '"n_bins": 15' in shown and '"goal": "untargeted"' in shown
    assert results.threat_model["adversary"]["targets"] == "random"  # the recorded model (and its sha256) keep every field
    results.threat_model["adversary"]["goal"] = "targeted"
    results.threat_model["evaluations"]["calibration"]["temperature_scaling"] = True
    shown = html_lib.unescape(render_html(results))
    assert '"targets": "random"' in shown and '"holdout_fraction": 0.2' in shown


def test_threat_model_row_is_the_formal_statement_and_the_description_has_its_own_row() -> None:
    results = fixtures.strong()
    results.threat_model["description"] = "Free-text notes of the threat model's author."
    rows = {row[0]: row[1] for _, table in _tables(render_html(results)).tables for row in table if len(row) == 2}
    assert rows["Threat model"] == "Untargeted white-box adversary, Linf ball of radius ε = 8/255 around each input, inputs kept in [0.0, 1.0]."
    assert rows["Threat model notes"].startswith("Free-text notes of the threat model's author.")
    assert rows["Threat model notes"].endswith("As written in the threat model's file; the numbers and their n say what ran.")
    # the shipped audits' notes say "on all 10,000 test images": a run with --n-examples says what it took
    results.threat_model["dataset"]["n_examples"] = 10_000
    rows = {row[0]: row[1] for _, table in _tables(render_html(results)).tables for row in table if len(row) == 2}
    assert f"which declares n_examples = 10,000: this run took n = {results.dataset.n_examples:,} (--n-examples or the n_examples argument)" in rows["Threat model notes"]
    results.threat_model["description"] = ""
    assert "Threat model notes" not in render_html(results)


def test_the_example_threat_model_states_no_runtime_figure() -> None:
    # a runtime in the description is contradicted by any run that takes longer (the example's took 10.7 min)
    from robench.threat_model import load_threat_model, resolve_path

    description = load_threat_model(resolve_path("mnist-example-audit")).description
    assert not re.search(r"\d+\s*(?:to\s*\d+\s*)?(?:s|min|minutes|seconds)\b", description)


def test_headline_labels_say_all_corruptions_and_name_the_difficulty() -> None:
    from robench.report._labels import record_label
    from robench.report.sections.corruptions import _mean_over

    mean = MetricRecord(evaluation="corruptions", name="mean_corruption_accuracy", value=0.9, n=200,
                        condition={"benchmark_corruptions": 15, "severities": 3}, unit="fraction")  # fmt: skip
    assert _mean_over(mean) == "over all 15 benchmark corruptions x 3 severities (a subset: not comparable with the published benchmark mean)"
    assert _mean_over(mean.model_copy(update={"condition": {"benchmark_corruptions": 4, "severities": 3}})).startswith(
        "over 4 of the 15 benchmark corruptions")
    flips = MetricRecord(evaluation="stability", name="mean_flip_probability", value=0.02, n=200, unit="probability",
                         condition={"difficulty": 1, "source": "generated", "perturbations": 10})  # fmt: skip
    assert record_label(flips) == "mean flip probability (10 generated perturbations, ImageNet-P difficulty 1)"


def test_the_corruption_headline_says_when_the_severity_table_was_made_for_other_images() -> None:
    from robench.report.exports import markdown_summary

    results = fixtures.strong()
    mean = MetricRecord(evaluation="corruptions", name="mean_corruption_accuracy", value=0.9, n=fixtures.N, ci_low=0.87, ci_high=0.92,
                        condition={"benchmark_corruptions": 15, "severities": 3}, unit="fraction", interval="clopper-pearson over examples")  # fmt: skip
    results.evaluations.append(EvaluationResult(key="corruptions", section="corruptions", name="corruptions", status="success",
                                                records=[mean], resolved={"source": "generated", "table": "cifar10"}))  # fmt: skip
    label = "mean corruption accuracy (15 corruptions x 3 severities; CIFAR-10-C parameters on 28 px gray images)"
    results.dataset.input_shape = [1, 28, 28]
    assert label in markdown_summary(results) and label in render_html(results)
    results.dataset.input_shape = [3, 32, 32]  # the images the table was made for: no caveat
    assert "mean corruption accuracy (15 corruptions x 3 severities) |" in markdown_summary(results)


def test_certification_names_intervals_and_formats_read_alike() -> None:
    """The abstain rate lost its interval, ACR claimed a 95% CI it has not, ``smoothing (smoothing)``
    printed one name twice, and the checks had three names; the checklist wrote ``compile=False``."""
    results = fixtures.certified()
    page = render_html(results)
    text = " ".join(_visible_text(page).split())
    assert "ACR (average certified radius; point estimate)" in text
    for record in results.evaluations:
        abstain = next((r for r in record.records if r.name == "abstain_rate" and r.ci_low is not None), None)
        if abstain is not None:
            assert f"{100 * abstain.value:.1f}% [{100 * abstain.ci_low:.1f}, {100 * abstain.ci_high:.1f}]" in text
    assert not re.search(r"<code>(\w+)</code> \(\1\)", page)
    assert "Gradient-masking checks</a>" not in page and "Gradient-masking and convergence checks" not in page
    assert 'alt="Verified accuracy' not in page
    item = next(i for i in checklist(results) if i.key == "certification")
    assert "=False" not in item.evidence and "=True" not in item.evidence


def test_a_certificate_at_a_k_over_255_eps_is_labelled_as_the_threat_model_writes_it() -> None:
    # cifar10-audit's smoothing headline read "at Linf eps=0.03137254901960784" beside "ECE under ... at Linf eps=8/255"
    from robench.report.render import record_label

    record = MetricRecord.proportion("certification/smoothing", "certified_accuracy", 0, 10,
                                     {"certifier": "smoothing", "norm": "L2", "sigma": 0.25, "threat_norm": "Linf", "threat_eps": 8 / 255})  # fmt: skip
    assert record_label(record) == "certified accuracy: smoothing (norm=L2, sigma=0.25) at Linf eps=8/255"
    other = record.model_copy(update={"condition": {**record.condition, "threat_eps": 0.5}})
    assert record_label(other).endswith("at Linf eps=0.5")
