"""The corruptions section of the report: what its intervals of means are, a heatmap whose colours
show the differences, and no empty CE columns."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from robench.report.render import _environment
from robench.report.sections import corruptions
from robench.results import MetricRecord, Results, load_results
from tests.report.test_formatting import _tables, _visible_text

EXAMPLE = Path(__file__).resolve().parents[2] / "reports" / "example" / "results.json"


@pytest.fixture(scope="module")
def example() -> Results:
    return load_results(EXAMPLE)


def _page(results: Results) -> str:
    return _environment().get_template("sections/corruptions.html.j2").render(section=corruptions.build(results), results=results)


def test_the_mean_interval_is_said_to_be_approximate_conservative_and_blind_to_the_draw(example: Results) -> None:
    """[89.18, 96.52] is CP(187.07, 200): a binomial bound on a non-integer sum, which the report did
    not say, nor that the corruptions were drawn once."""
    mean = next(r for r in example.records("corruptions", "mean_corruption_accuracy"))
    text = " ".join(_visible_text(_page(example)).split())
    assert f"({mean.value * mean.n:.2f} of {mean.n} for the mean corruption accuracy), which is not an integer" in text
    assert "approximate" in text and "conservative" in text and "variance at most p (1 − p)" in text
    assert "each corruption was drawn once (its random draws fixed by the seed)" in text


def test_the_heatmap_colours_spread_the_cells_that_a_0_to_1_scale_made_alike(example: Results) -> None:
    """On a linear 0-1 accuracy scale every cell but contrast's took 10% of the colours (88-98%)."""
    cells = [r for r in example.records("corruptions", "accuracy") if r.condition.get("corruption") != "contrast"]
    values = np.array([r.value for r in cells])
    assert values.max() - values.min() < 0.11  # what the old scale spread them over
    norm = corruptions.error_norm(np.array([r.value for r in example.records("corruptions", "accuracy")]), 200)
    shown = np.array([float(norm(1 - v)) for v in values])
    assert shown.max() - shown.min() > 0.4
    worst = min(r.value for r in example.records("corruptions", "accuracy"))  # contrast s5
    assert float(norm(1 - worst)) == pytest.approx(1.0)  # the largest error tops the scale
    assert float(norm(0.0)) == 0.0  # an error of 0 is clipped to the bottom, not lost
    assert corruptions._heatmap(["a"], [1], np.array([[1.0]]), 200).startswith("data:image/png;base64,")  # no error at all


def test_empty_ce_columns_are_dropped_and_why_is_said_once(example: Results) -> None:
    page = _page(example)
    header = next(rows[0] for _, rows in _tables(page).tables if rows and rows[0][0] == "Corruption")
    assert header == ["Corruption", "Group", "Accuracy (mean over severities 1, 3, 5)", "95% CI", "n"]
    text = " ".join(_visible_text(page).split())
    assert text.count("normalised by AlexNet's ImageNet-C errors") == 1
    assert "No CE or relative CE columns: CE/mCE are normalised by AlexNet's ImageNet-C errors" in text
    with_ce = copy.deepcopy(example)
    evaluation = with_ce.evaluation("corruptions")
    evaluation.records.append(MetricRecord(evaluation="corruptions", name="corruption_error", value=0.5, n=200, ci_low=0.4, ci_high=0.6,
                                           condition={"corruption": "fog"}, unit="ratio"))  # fmt: skip
    header = next(rows[0] for _, rows in _tables(_page(with_ce)).tables if rows and rows[0][0] == "Corruption")
    assert header == ["Corruption", "Group", "Accuracy (mean over severities 1, 3, 5)", "95% CI", "n", "CE"]
    assert "No CE or relative CE columns" not in _page(with_ce)


def test_heatmap_cells_round_halves_up_like_the_tables() -> None:
    """193/200 = 96.5% read 96 in its cell (round half to even) beside 96.5% in the table: a cell rounds
    the table's one-decimal text, halves up (96.49% shows as 96.5% there, so 97 here)."""
    assert [corruptions.cell_label(v) for v in (0.965, 0.975, 0.11, 0.9649, 0.9644, 1.0, 0.0)] == ["97", "98", "11", "97", "96", "100", "0"]


def test_generated_images_are_said_to_skip_the_released_sets_quantisation(example: Results) -> None:
    """The released CIFAR-10-C was truncated to uint8 and ImageNet-C saved as JPEG 85; generated images
    stay in float, which the section did not say (a review's finding; accuracy may differ by it)."""
    assert "The corrupted images stay in floating point" in " ".join(_visible_text(_page(example)).split())
    released = copy.deepcopy(example)
    section = next(e for e in released.evaluations if e.section == "corruptions")
    section.resolved["source"] = "released"
    assert "stay in floating point" not in _visible_text(_page(released))


@pytest.mark.parametrize(
    ("quantize", "said"),
    [
        ("uint8", "Each corrupted image was quantised as CIFAR-10-C's were before it was classified (quantize: uint8): truncated to 8 bits"),
        ("jpeg85", "Each corrupted image was quantised as ImageNet-C's were before it was classified (quantize: jpeg85): truncated to 8 bits and saved as JPEG at quality 85"),
        ("none", "The corrupted images stay in floating point (quantize: none)"),
    ],
)
def test_the_section_says_how_the_generated_images_were_quantised(example: Results, quantize: str, said: str) -> None:
    """The run's ``quantize`` setting replaces the sentence that generated images are not quantised."""
    run = copy.deepcopy(example)
    section = next(e for e in run.evaluations if e.section == "corruptions")
    section.resolved["quantize"] = quantize
    text = " ".join(_visible_text(_page(run)).split()).replace("( ", "(").replace(" )", ")")  # spaces the text puts around <code>
    assert said in text
    assert ("stay in floating point" in text) == (quantize == "none")


def test_the_per_corruption_accuracy_is_said_to_be_a_mean_over_severities(example: Results) -> None:
    """The table's 'Accuracy' of contrast, 62.8%, is its mean over severities 1, 3 and 5 (96.5, 81.5,
    10.5), which the header did not say while the text above it spoke of cells of one severity."""
    rows = next(rows for _, rows in _tables(_page(example)).tables if rows and rows[0][0] == "Corruption")
    contrast = dict(zip(rows[0], next(r for r in rows if r[0] == "contrast")))
    cells = [r.value for r in example.records("corruptions", "accuracy") if r.condition.get("corruption") == "contrast"]
    assert len(cells) == 3 and contrast["Accuracy (mean over severities 1, 3, 5)"] == f"{100 * sum(cells) / 3:.1f}%" == "62.8%"


def test_a_released_sweep_names_the_set_it_read(example: Results) -> None:
    """A sweep on a custom released set (a synthetic stand-in for CIFAR-10-C) read "as stored in the
    released files", naming no set: results.json recorded which, the report did not say it."""
    released = copy.deepcopy(example)
    section = next(e for e in released.evaluations if e.section == "corruptions")
    section.resolved["source"] = "released"
    section.resolved["released"] = {"manifest": "cifar10csyn", "manifest_file": "/tmp/yard/cifar10csyn.yaml",
                                    "manifest_sha256": "0415185e45323b1e137f63dddcd843436a6e5145b1d156ad198f2aef56e6f8fe",
                                    "root": "/tmp/yard/data/cifar10csyn"}  # fmt: skip
    text = " ".join(_visible_text(_page(released)).split())
    assert ("as stored in the released files of cifar10csyn (manifest /tmp/yard/cifar10csyn.yaml, sha256 0415185e4532; "
            "files under /tmp/yard/data/cifar10csyn) and classified") in text
    section.resolved.pop("released")  # older results did not record it
    assert "as stored in the released files and classified" in " ".join(_visible_text(_page(released)).split())
