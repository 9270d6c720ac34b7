"""The calibration section of the report: which attack's reliability diagram it draws, the order of
its conditions (section and headline), short figure titles, and how it states the MCE's bins."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from robench.report.render import _environment, summary_records
from robench.report.sections.calibration import build
from robench.results import MetricRecord, Results, load_results
from tests.report import fixtures
from tests.report.test_formatting import _visible_text

EXAMPLE = Path(__file__).resolve().parents[2] / "reports" / "example" / "results.json"


@pytest.fixture(scope="module")
def example() -> Results:
    return load_results(EXAMPLE)


@pytest.fixture(scope="module")
def page(example: Results) -> str:
    return _section_html(example)


def _attack(condition: dict) -> str | None:
    return condition.get("attack")


def _section_html(results: Results) -> str:
    """The calibration section alone, as the report renders it (the whole example takes seconds)."""
    return _environment().get_template("sections/calibration.html.j2").render(section=build(results), results=results)


def test_the_worst_attack_diagram_is_chosen_among_attacks_scored_at_their_adversarial_point(example: Results, page: str) -> None:
    """AutoAttack scores its unbroken examples at the clean input (ECE 23.19%, PGD 7.58%): the section
    calls such ECEs not comparable, yet drew AutoAttack's diagram as the worst attack."""
    panels = example.evaluation("calibration").artifacts["reliability"]
    attacks = [p for p in panels if p["condition"].get("condition") == "attack"]
    flagged = {_attack(p["condition"]) for p in attacks if p["condition"].get("unbroken_at") == "clean input"}
    at_point = [p for p in attacks if _attack(p["condition"]) not in flagged]
    assert flagged == {"autoattack"} and max(attacks, key=lambda p: p["ece"])["condition"]["attack"] == "autoattack"
    expected = max(at_point, key=lambda p: p["ece"])["condition"]["attack"]  # pgd
    section = build(example)
    assert section is not None
    drawn = [f["label"] for f in section["reliability_figures"]]
    assert any(label.endswith(f"attack {expected}") for label in drawn), drawn
    assert not any("autoattack" in label for label in drawn), drawn
    text = " ".join(_visible_text(page).split())
    assert f"the worst by ECE of the {len(at_point)} attacks scored at their adversarial point" in text
    assert "autoattack is left out of that choice: its unbroken examples are scored at the clean input" in text


def test_with_only_attacks_scored_clean_the_worst_is_drawn_and_said_to_mix_clean_outputs(example: Results) -> None:
    results = copy.deepcopy(example)
    calibration = results.evaluation("calibration")
    calibration.artifacts["reliability"] = [
        p for p in calibration.artifacts["reliability"] if p["condition"].get("condition") != "attack" or _attack(p["condition"]) == "autoattack"
    ]
    calibration.records = [r for r in calibration.records if r.condition.get("condition") != "attack" or _attack(r.condition) == "autoattack"]
    section = build(results)
    assert any("autoattack" in f["label"] for f in section["reliability_figures"])
    assert section["worst_attack"]["left_out"] == [] and not section["worst_attack"]["at_point"]


def test_conditions_run_clean_then_attacks_at_their_point_then_those_scored_clean(example: Results) -> None:
    """The headline listed AutoAttack's ECE (unbroken examples scored clean) first, before fgsm and pgd."""
    eces = [r for r in summary_records(example) if r.evaluation == "calibration" and r.name == "ece"]
    assert [r.condition.get("attack", r.condition["condition"]) for r in eces] == ["clean", "fgsm", "pgd", "autoattack"]
    rows = [row["label"] for row in build(example)["rows"]]
    assert rows[:4] == ["clean", "attack fgsm", "attack pgd", "attack autoattack (unbroken examples scored clean)"]
    assert all(" s" in label for label in rows[4:])  # the corruption cells follow
    others = [r for r in summary_records(example) if r.evaluation != "calibration"]
    assert [r.name for r in others][:2] == ["accuracy", "robust_accuracy"]  # other sections keep their order


def test_reliability_diagrams_have_short_titles_and_the_long_label_as_caption(example: Results, page: str) -> None:
    """'worst attack by ECE: attack autoattack (unbroken examples scored clean) (ECE 23.19%)' as a
    title squeezed a 3-inch figure's axes."""
    section = build(example)
    for figure in section["reliability_figures"]:
        assert len(figure["title"]) <= 16, figure["title"]
        assert figure["title"].rstrip("*") in figure["label"]
    for figure in section["reliability_figures"]:
        assert f"<figcaption class=\"muted\" style=\"max-width:330px\">{figure['label']} (ECE" in page


def test_the_mce_states_its_minimum_bin_count_or_that_an_older_run_took_every_bin(example: Results, page: str) -> None:
    text = " ".join(_visible_text(page).split())
    assert example.evaluation("calibration").artifacts["mce_min_count"] == 10
    assert "MCE is the largest bin gap over the bins holding at least 10 examples" in text
    older = copy.deepcopy(example)  # results of a robench that took every non-empty bin record no minimum
    del older.evaluation("calibration").artifacts["mce_min_count"]
    older.evaluation("calibration").resolved.pop("mce_min_count")
    old = " ".join(_visible_text(_section_html(older)).split())
    assert "MCE is the largest gap over every non-empty bin (recorded by an older robench" in old


def test_a_missing_mce_is_shown_as_a_dash() -> None:
    """No bin of the minimum count: the record has no value, and the table says so without a number."""
    results = fixtures.strong()
    calibration = results.evaluation("calibration")
    calibration.artifacts["mce_min_count"] = 10
    calibration.records.append(MetricRecord(evaluation="calibration", name="max_calibration_error", value=None, n=8,
                                            condition={"condition": "clean"}, unit="probability"))  # fmt: skip
    row = next(r for r in build(results)["rows"] if r["label"] == "clean")
    assert row["metrics"]["max_calibration_error"].value is None
    assert "–" in _section_html(results)
