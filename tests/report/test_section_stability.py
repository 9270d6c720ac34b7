"""The stability section of the report: the note on a perturbation table made for other images
(shared with the corruptions section), the translation range, perturbed first frames, the bar
chart's legend and value labels, and no empty flip-rate column."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from robench.report.render import _environment
from robench.report.sections import stability
from robench.report.sections.corruptions import build as build_corruptions
from robench.report.sections.corruptions import table_mismatch
from robench.results import Results, load_results
from robench.stability.params import sequence_params
from tests.report.test_formatting import _visible_text

EXAMPLE = Path(__file__).resolve().parents[2] / "reports" / "example" / "results.json"


@pytest.fixture(scope="module")
def example() -> Results:
    return load_results(EXAMPLE)


def _text(results: Results) -> str:
    page = _environment().get_template("sections/stability.html.j2").render(section=stability.build(results), results=results)
    return " ".join(_visible_text(page).split())


def test_cifar10_sequences_on_gray_digits_carry_the_corruptions_sections_stress_test_note(example: Results) -> None:
    """The corruptions section called the cifar10 table on 28 px gray digits a stress test; the
    stability section used the same parameters and said nothing."""
    section = stability.build(example)
    corruptions = build_corruptions(example)
    assert corruptions["table_mismatch"] and "stress test" in corruptions["table_mismatch"]
    expected = table_mismatch({"source": "generated", "table": "cifar10"}, [1, 28, 28], "perturbation sequences", "perturbation table")
    assert section["mismatch"] == expected and "28 px" in expected and "not the benchmark itself" in expected
    assert f"Note: {expected}." in _text(example)
    matching = copy.deepcopy(example)
    matching.dataset.input_shape = [3, 32, 32]
    assert stability.build(matching)["mismatch"] is None


def test_the_translation_range_and_perturbed_first_frames_are_stated(example: Results) -> None:
    """translate carries most of the mean (16.63 of 19.53 points summed): its digit slides from -7
    to +8 px, and its frame 0 is already shifted (predicted 2 for a 0), not the clean image."""
    params = sequence_params("translate", "cifar10")
    low, high = params.values["shift0"], params.values["shift0"] + params.frames - 1
    text = _text(example)
    assert f"translate shifts the image horizontally from {low:+d} to {high:+d} px" in text and "28 px width" in text
    first = dict(stability.build(example)["perturbed_first"])
    assert first["translate"] == f"shifted by {low:+d} px"
    assert "zoom_blur" not in first and "gaussian_noise" not in first  # these start from the clean image
    assert "their frame 0 is itself perturbed, not the clean image" in text
    assert "(frame 0 is already shifted by -7 px)" in text


def _captured_figure(monkeypatch: pytest.MonkeyPatch, results: Results) -> Any:
    figures: list[Any] = []

    def keep(fig: Any, dpi: int = 110) -> str:
        figures.append(fig)
        return "data:image/png;base64,"

    monkeypatch.setattr(stability, "figure_data_uri", keep)
    stability.build(results)
    (fig,) = figures
    return fig.axes[0]


def test_the_bar_chart_has_a_legend_and_labels_every_bar_with_its_value(example: Results, monkeypatch: pytest.MonkeyPatch) -> None:
    """The colours were explained only in the alt text, and the noise bars (~0) were invisible."""
    ax = _captured_figure(monkeypatch, example)
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["noise", "sequential"]
    labels = [t.get_text() for t in ax.texts]
    records = [r for r in example.evaluation("stability").records if r.name == "flip_probability"]
    assert labels == [f"{100 * r.value:.2f}%" for r in records]
    assert "0.00%" in labels  # gaussian_noise: a bar of height 0, still labelled


def test_an_empty_flip_rate_column_is_dropped_with_its_reason(example: Results) -> None:
    text = _text(example)
    assert "Flip rate ×100" not in text and "No flip-rate column" in text
    assert "the threat model declares no baseline" in text


def test_where_the_random_draws_ran_is_stated(example: Results) -> None:
    """results.json recorded random_draws_on, and neither section said it (a device stream gives
    other numbers than the CPU's for the same seed)."""
    assert "random draws on the CPU)." in _text(example)
    on_device = copy.deepcopy(example)
    next(e for e in on_device.evaluations if e.section == "stability").resolved["random_draws_on"] = "cuda"
    assert "random draws on the device (cuda: other numbers than the CPU's for the same seed))." in _text(on_device)
    page = _environment().get_template("sections/corruptions.html.j2").render(section=build_corruptions(example), results=example)
    assert "severity table (Hendrycks & Dietterich 2019; random draws on the CPU) and classified" in " ".join(_visible_text(page).split())
