"""The HTML report: self-contained, escaped, built from results.json alone, robust to partial runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markupsafe import escape

import robench
from robench.report import render_report
from robench.report.render import render_html, summary_records
from tests.conftest import QuadrantNet


@pytest.fixture
def run(tmp_path: Path, tiny_threat: Path) -> robench.Results:
    text = tiny_threat.read_text().replace("name: tiny-linf", "name: tiny-linf\ndescription: <script>alert(1)</script>")
    tiny_threat.write_text(text)
    return robench.evaluate(QuadrantNet(), tiny_threat, out_dir=tmp_path / "out", progress=False, batch_size=16,
                            data_root=tiny_threat.parent / "data")


def test_self_contained_and_escaped(run: robench.Results, tmp_path: Path) -> None:
    html = render_report(tmp_path / "out" / "results.json", tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    external = re.findall(r'(?:src|href)="(https?:[^"]+)"', html)
    assert external == [], external  # no network needed to view it
    assert "data:image/png;base64," in html  # figures are inlined
    for text in ("Clean accuracy", "Empirical robustness", "robust", "95%"):
        assert text in html
    assert "did not run" in html  # sections absent from this threat model say so


def test_summary_numbers_appear(run: robench.Results) -> None:
    html = render_html(run)
    for record in summary_records(run):
        assert f"{100 * record.value:.1f}%" in html


def test_partial_run_renders_with_warning(run: robench.Results) -> None:
    broken = run.model_copy(update={"status": "error", "error": "model returned NaN logits"})
    broken.evaluations[-1].status = "error"
    html = render_html(broken)
    assert "did not finish" in html and "NaN logits" in html


def test_file_names_with_html_render_as_text(tmp_path: Path, tiny_threat: Path) -> None:
    import torch

    checkpoint = tmp_path / "<img src=x onerror=alert(1)>.pt"
    torch.save(QuadrantNet().state_dict(), checkpoint)
    results = robench.evaluate(checkpoint, tiny_threat, arch="tests.conftest:QuadrantNet", progress=False,
                               batch_size=16, data_root=tiny_threat.parent / "data", only=["clean"])
    html = render_html(results)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_attack_section_states_how_a_randomized_model_is_counted() -> None:
    """The attack section said misclassified clean examples are not attacked, which is not how a
    randomized model is scored (docs/randomized_models.md)."""
    from tests.report import fixtures

    results = fixtures.strong()
    deterministic = "an example misclassified clean counts as a failure, whether the attack leaves it unperturbed"
    assert deterministic in render_html(results)
    results.model.randomized = True
    html = render_html(results)
    assert deterministic not in html
    assert "The model is randomized: every example is attacked" in html and "share of fresh passes" in html


def test_the_dataset_row_says_which_examples_and_where_from(run: robench.Results) -> None:
    html = render_html(run)
    assert f"Examples: {escape(run.dataset.selection)}" in html and run.dataset.selection.startswith("all of split")
    bare = run.model_copy(update={"dataset": run.dataset.model_copy(update={"selection": "", "source": "somewhere &amp; else"})})
    assert "Examples:" not in render_html(bare) and "Source: somewhere &amp;amp; else" in render_html(bare)


@pytest.mark.parametrize(
    ("fixture", "key", "artifacts", "section"),
    [("strong", "calibration", {"reliability": "x"}, "calibration"),
     ("strong", "calibration", {"reliability": [{"condition": {"condition": "clean"}, "edges": None}]}, "calibration"),
     ("certified", "certification/smoothing", {"curve": "x"}, "certification"),
     ("certified", "certification/smoothing", {"noisy_samples": [1]}, "certification"),
     ("strong", "attacks/pgd", {"convergence": {"n": 5, "budget": "x"}}, "attacks"),  # read by the section's template
     # an integer beyond a C long: matplotlib's OverflowError was an internal error
     ("strong", "calibration", {"reliability": [{"label": "clean", "condition": {"condition": "clean"}, "ece": 0.05, "edges": [0.0, 0.5, 1.0],
                                                 "count": [10**30, 1], "confidence": [0.2, 0.7], "accuracy": [0.2, 0.7]}]}, "calibration")],
)
def test_damaged_artifacts_are_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture: str, key: str,
                                                artifacts: dict, section: str) -> None:
    """An evaluation's artifacts (free-form JSON the sections plot and tabulate) of another shape than
    robench writes crashed `robench report` with an internal error (TypeError, ValueError...)."""
    import json

    from robench.cli import main
    from tests.report import fixtures

    data = json.loads(getattr(fixtures, fixture)().model_dump_json())
    evaluation = next(e for e in data["evaluations"] if e["key"] == key)
    evaluation["artifacts"].update(artifacts)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    from robench.report.plots import plt

    open_before = plt.get_fignums()
    assert main(["report", str(path), "--out", str(tmp_path / "report.html")]) == 2
    assert plt.get_fignums() == open_before  # the sections' half-drawn figures are closed
    err = capsys.readouterr().err
    assert err.startswith(f"robench: error: the {section} section cannot read these results (") and err.count("\n") == 1, err
    assert not (tmp_path / "report.html").exists()
    assert "damaged or not of this robench version" in err  # the fixtures' results name no revision


def test_a_section_failing_on_this_robench_s_own_results_says_it_is_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results written by the same clean commit that cannot be rendered point at robench, not at the file."""
    from robench import runner
    from robench._errors import ConfigError
    from robench.report.render import render_html
    from tests.report import fixtures

    results = fixtures.strong()
    evaluation = next(e for e in results.evaluations if e.key == "calibration")
    evaluation.artifacts["reliability"] = "x"
    monkeypatch.setattr(runner, "git_revision", lambda: "abc123")
    results.environment.git_revision = "abc123"
    with pytest.raises(ConfigError, match="this is a robench bug"):
        render_html(results)
    results.environment.git_revision = "abc123+dirty"  # local changes: the file may be what changed
    with pytest.raises(ConfigError, match="damaged or not of this robench version"):
        render_html(results)


def test_an_evaluation_without_model_passes_states_no_precision_or_batch() -> None:
    """Calibration re-scores the other sections' outputs: its cost row read 'fp32, batch 128' beside
    0 forward passes, a precision and batch of passes that never ran."""
    import re

    from robench.report.render import render_html
    from tests.report import fixtures

    results = fixtures.strong()
    html = render_html(results)
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([^<]+)</td><td class=\"status-[a-z]+\">success</td>.*?</tr>", html)}
    assert "no model passes: it scored outputs other sections computed" in rows["calibration"]
    assert "no model passes" not in rows["attacks/pgd"] and "fp32" in rows["attacks/pgd"]


def test_warnings_stand_once_at_the_top_and_the_limitations_point_to_them() -> None:
    """Every warning stood three times: under the summary, in its section and again in the Limitations."""
    from robench.report.render import render_html
    from tests.report import fixtures

    results = fixtures.strong()
    results.evaluations[0].warnings = ["a warning only this test gives"]
    html = render_html(results)
    top, limitations = html.split('<h2 id="limitations">')
    assert top.count("a warning only this test gives") >= 1 and 'id="warnings"' in top
    assert "a warning only this test gives" not in limitations
    assert 'warning is listed <a href="#warnings">under the summary</a>' in limitations
