"""The committed example report (reports/example/, scripts/example_report.py) still loads and renders.

It is generated once (about 8 minutes on a CPU), not in CI: these tests catch a results schema or a
report that drifted away from it, and files that disagree with each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robench.cli import format_record
from robench.report.checklist import checklist
from robench.report.render import build_sections, render_html, summary_records
from robench.results import Results, load_results, not_certifiable

EXAMPLE = Path(__file__).resolve().parents[2] / "reports" / "example"


@pytest.fixture(scope="module")
def example() -> Results:
    return load_results(EXAMPLE / "results.json")


def test_the_example_ran_every_section_and_succeeded(example: Results) -> None:
    assert example.status == "success" and all(e.status == "success" for e in example.evaluations)
    assert example.threat_model["name"] == "mnist-example-audit"
    ran = {s["name"] for s in build_sections(example) if s["data"] is not None}
    assert {"clean", "attacks", "corruptions", "stability", "calibration", "certification"} <= ran


def test_the_example_renders_with_the_current_report(example: Results) -> None:
    html = render_html(example)
    assert "did not run" not in html.split('id="leaderboard"')[0]  # every section before the leaderboard ran
    assert {i.status for i in checklist(example)} <= {"pass", "n/a"}, [(i.key, i.status) for i in checklist(example)]


def test_the_committed_files_agree_with_the_results(example: Results) -> None:
    summary = (EXAMPLE / "summary.md").read_text()
    committed_html = (EXAMPLE / "report.html").read_text()
    for record in summary_records(example):
        value, interval = format_record(record)
        if not_certifiable(record) is not None:  # 0 by construction: the files say so (as a label of older files, or as the value)
            value = "not certifiable with these settings"
        assert value in summary and value in committed_html, record
    assert not (EXAMPLE / "journal.bin").exists()  # resume state is not part of the example
    assert {"evaluation", "name", "value", "n", "ci_low", "ci_high"} <= set((EXAMPLE / "metrics.csv").read_text().splitlines()[0].split(","))


def test_the_corruptions_section_names_its_worst_cell_and_a_table_made_for_other_images(example: Results) -> None:
    """The mean (93.5%) hid contrast at severity 5 (11%), and the CIFAR-10 table on 28 px gray digits
    read as the benchmark."""
    from robench.report.sections.corruptions import _table_mismatch, build

    section = build(example)
    worst = min((r for r in example.records("corruptions", "accuracy")), key=lambda r: r.value)
    assert section["worst_cell"] == worst and worst.value < 0.5
    assert section["table_mismatch"].startswith("the cifar10 severity table was made for RGB 32 px natural images; on these gray 28 px")
    assert _table_mismatch({"source": "generated", "table": "cifar10"}, [3, 32, 32]) is None
    assert _table_mismatch({"source": "released", "table": "cifar10"}, [1, 28, 28]) is None
    html = render_html(example)
    assert "Worst cell: contrast at severity 5" in html and "not the benchmark itself" in html


def test_the_corruption_example_grid_is_drawn_with_its_row_and_column_names(example: Results) -> None:
    from robench.report.sections.corruptions import _labelled_grid

    examples = example.evaluation("corruptions").artifacts["examples"]
    raw = "data:image/png;base64," + examples["png_base64"]
    drawn = _labelled_grid(examples)
    assert drawn.startswith("data:image/png;base64,") and drawn != raw
    assert _labelled_grid({**examples, "png_base64": "bm90IGEgcG5n"}) == "data:image/png;base64,bm90IGEgcG5n"  # unreadable: as recorded


def test_the_checklist_shows_every_certifiers_number_at_the_threat_radius(example: Results) -> None:
    """It showed one certified accuracy, the last record found (Lipschitz), with no reason given; and
    smoothing's 0% [0.0, 3.6] at Linf 0.3, which is 0 by construction (L2 8.4 needed, 0.6755 possible)."""
    item = next(i for i in checklist(example) if i.key == "clean_and_robust")
    for certifier in ("ibp", "lipschitz"):
        assert f"certified accuracy: {certifier} " in item.evidence
    assert "smoothing" not in item.evidence


def test_the_summary_brackets_robust_accuracy_between_a_sound_verifier_and_the_attacks(example: Results) -> None:
    """The example runs IBP at the threat model's eps on the attacks' examples: the summary states that
    the robust accuracy lies between IBP's verified accuracy and the attacks' worst case; smoothing
    (another classifier) is not used as the lower end."""
    from robench.report.render import headline

    worst = example.records(name="worst_case_robust_accuracy")[-1]
    ibp = next(r for r in example.records(evaluation="certification/ibp", name="certified_accuracy") if "threat_eps" in r.condition)
    text = headline(example)["bracket"]
    assert text.startswith(f"On these {worst.n:,} examples (the first {worst.n:,} of the split, for the attacks and the verifier alike) "
                           f"the model's robust accuracy lies between {100 * ibp.value:.1f}% (ibp verified: a sound lower bound) and "
                           f"{100 * worst.value:.1f}% (the attacks' worst case: an upper bound).")
    # IBP verifies none at eps 0.3: the lower end is trivially true, and the sentence says so
    assert ibp.value != 0 or text.endswith("ibp verifies none at this radius: only the attacks' upper bound says something here.")
    assert text in (EXAMPLE / "summary.md").read_text()
    from markupsafe import escape

    assert str(escape(text)) in render_html(example)
    without = example.model_copy(update={"evaluations": [e for e in example.evaluations if e.key != "certification/ibp"]})
    assert headline(without)["bracket"] is None


def test_a_leaderboard_section_with_no_board_is_one_line(example: Results) -> None:
    """No MNIST board: the section says why in one line, without the ranking legend of a comparison."""
    html = render_html(example)
    section = html.split('id="leaderboard"')[1].split("<h2")[0]
    assert "Rank = 1 + number" not in section and section.count('class="notrun"') == 1
