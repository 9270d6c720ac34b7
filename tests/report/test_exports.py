"""CSV and Markdown exports: every record round-trips through pandas; the summary carries the checklist."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from robench.cli import main
from robench.report.checklist import checklist
from robench.results import capped_note
from robench.report.exports import CSV_COLUMNS, markdown_summary, records_csv, write_exports
from tests.report import fixtures


@pytest.mark.parametrize("name", sorted(fixtures.FIXTURES))
def test_csv_round_trips_every_record(name: str) -> None:
    results = fixtures.FIXTURES[name]()
    frame = pd.read_csv(io.StringIO(records_csv(results)))
    records = results.records()
    assert len(frame) == len(records)
    assert list(frame.columns[: len(CSV_COLUMNS)]) == list(CSV_COLUMNS)
    for (_, row), record in zip(frame.iterrows(), records):
        assert (row["evaluation"], row["name"]) == (record.evaluation, record.name)
        assert row["value"] == record.value  # repr() keeps every digit of a float
        for column in ("ci_low", "ci_high"):
            expected = getattr(record, column)
            assert (math.isnan(row[column]) if expected is None else row[column] == expected)
        evaluation = results.evaluation(record.evaluation)
        note = results.formatted(record)[0] if record.condition.get("certifiable") is False else None
        capped = capped_note(record, evaluation.artifacts if evaluation else None)
        assert (isinstance(row["note"], float) and math.isnan(row["note"])) if note is None and capped is None else row["note"] == (note or capped)
        for key, value in record.condition.items():
            cell = row[f"condition.{key}"]
            assert str(cell) == str(value) or (isinstance(value, (int, float)) and float(cell) == float(value))


def test_markdown_summary() -> None:
    results = fixtures.weak()
    results.evaluations[1].warnings = ["a | pipe and <b>tag</b>"]
    text = markdown_summary(results)
    for item in checklist(results):
        assert f"| {item.title} | **{item.status}** |" in text
    assert "80.0% [76.2, 83.4]" in text  # the worst-case robust accuracy with its interval
    assert "### Leaderboard: cifar10/Linf at eps 8/255, rank 1 of" in text and "too weak" in text
    assert "a \\| pipe and &lt;b>tag&lt;/b>" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.rstrip().endswith("|")


def test_write_exports_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = fixtures.strong()
    paths = write_exports(results, tmp_path / "run")
    assert paths["csv"].name == "metrics.csv" and paths["markdown"].name == "summary.md"
    assert paths["csv"].read_text() == records_csv(results)
    results.save(tmp_path / "results.json")
    assert main(["export", str(tmp_path / "results.json")]) == 0
    assert (tmp_path / "metrics.csv").exists() and (tmp_path / "summary.md").exists()
    assert main(["export", str(tmp_path / "results.json"), "--csv", str(tmp_path / "x.csv"), "--markdown", str(tmp_path / "x.md")]) == 0
    assert (tmp_path / "x.md").read_text() == markdown_summary(results)
    assert main(["export", str(tmp_path / "missing.json")]) == 2
    assert "robench: error:" in capsys.readouterr().err


def test_markdown_names_the_interval_methods_it_uses() -> None:
    text = markdown_summary(fixtures.strong())  # Clopper-Pearson accuracies and bootstrap ECEs
    assert "### Headline numbers (95% intervals; method per metric in metrics.csv)" in text
    assert "Clopper-Pearson intervals)" not in text
    methods = set(pd.read_csv(io.StringIO(records_csv(fixtures.strong())))["interval"].dropna())
    assert {"clopper-pearson", "bootstrap"} <= methods


def test_csv_note_says_which_values_are_zero_by_construction() -> None:
    """A certified accuracy the certifier's settings cannot reach reads 0.0 with a Clopper-Pearson
    interval in its columns; the note column says it measures the settings (as the report does)."""
    results = fixtures.certified()
    evaluation = results.evaluation("certification/smoothing")
    record = next(r for r in evaluation.records if "threat_eps" in r.condition)
    record.condition["certifiable"] = False
    evaluation.artifacts.update(threat_radius_l2=8.4, max_certified_radius=0.9)
    frame = pd.read_csv(io.StringIO(records_csv(results)))
    notes = frame["note"].fillna("")
    row = frame[(frame["condition.certifiable"] == False) & (frame["name"] == "certified_accuracy")]  # noqa: E712
    assert list(notes[row.index]) == ["n/a: not certifiable with these settings (needs L2 r = 8.4 > ceiling 0.9)"]
    assert (notes.drop(row.index) == "").all()


def test_code_rows_say_a_dirty_checkout_matches_no_commit() -> None:
    from robench.report.checklist import DIRTY_NOTE
    from robench.report.render import render_html

    results = fixtures.strong()
    results.environment.git_revision = "0123456789abcdef0123456789abcdef01234567+dirty"
    code = next(line for line in markdown_summary(results, with_leaderboard=False).splitlines() if line.startswith("| Code |"))
    assert f"git 0123456789abcdef0123456789abcdef01234567+dirty ({DIRTY_NOTE})" in code
    html = render_html(results)
    row = next(line for line in html.splitlines() if "<th>Code</th>" in line)
    assert f"git 0123456789abcdef0123456789abcdef01234567+dirty ({DIRTY_NOTE})" in row


def test_hashes_are_full_where_copied_and_one_short_prefix_elsewhere() -> None:
    """summary.md's rows and the report's Summary rows write a hash in full (a reader copies it);
    the header and the checklist write its first SHORT_SHA256 digits, the same number everywhere."""
    from robench.report.render import render_html
    from robench.results import SHORT_SHA256, short_sha256

    results = fixtures.strong()
    results.model.sha256, results.threat_model_sha256 = "0123456789abcdef" * 4, "fedcba9876543210" * 4
    model, threat = results.model.sha256, results.threat_model_sha256
    summary = markdown_summary(results, with_leaderboard=False)
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| ")}
    assert f"`{model}`" in rows["Checkpoint sha256"] and f"`{threat}`" in rows["Threat model"]
    assert short_sha256(model) == model[:SHORT_SHA256] == "0123456789ab"
    items = {i.key: i for i in checklist(results)}
    assert items["provenance"].evidence.endswith(f"checkpoint sha256 {model[:12]}")
    assert f"threat model sha256 {threat[:12]}" in items["threat_model"].evidence and threat[:13] not in items["threat_model"].evidence
    html = render_html(results)
    header = next(line for line in html.splitlines() if line.startswith('<p class="muted">model '))
    assert f"(sha256 {model[:12]})" in header
    assert f"<code>{model}</code>" in html and f"<code>{threat}</code>" in html


def test_the_reproducibility_table_shows_the_numerics_settings() -> None:
    from robench.report.render import render_html
    from robench.results import Numerics

    results = fixtures.strong()
    assert "<th>Numerics</th>" not in render_html(results)  # results written before it was recorded
    results.environment.numerics = Numerics(deterministic_algorithms=False, float32_matmul_precision="highest", cuda_matmul_allow_tf32=False,
                                            cudnn_allow_tf32=True, cudnn_benchmark=False, cudnn_deterministic=False)  # fmt: skip
    row = next(line for line in render_html(results).splitlines() if "<th>Numerics</th>" in line)
    assert "deterministic_algorithms=no" in row and "cudnn_allow_tf32=yes" in row and "float32_matmul_precision=highest" in row


def test_dataset_rows_give_the_manifest_and_file_hashes_in_full() -> None:
    from robench.report.render import render_html

    results = fixtures.strong()
    results.dataset.files_sha256 = {"cifar-10-batches-py/test_batch": "12" * 32}
    row = next(line for line in markdown_summary(results, with_leaderboard=False).splitlines() if line.startswith("| Dataset |"))
    assert f"manifest sha256 {'ef' * 32}; cifar-10-batches-py/test_batch sha256 {'12' * 32}" in row
    html = next(line for line in render_html(results).splitlines() if "<th>Dataset</th>" in line)
    assert f"<code>manifest sha256 {'ef' * 32}; cifar-10-batches-py/test_batch sha256 {'12' * 32}</code>" in html


def test_a_checkpoint_s_provenance_is_shown_when_recorded() -> None:
    from robench.report.render import render_html

    results = fixtures.strong()
    assert "provenance" not in markdown_summary(results, with_leaderboard=False) and "Checkpoint provenance" not in render_html(results)
    results.model.provenance = {"trained_by": "robench demo, adversarial recipe v2", "epochs": 10, "cache_tag": "58f020ab5d42",
                                "checkpoint": "reused from the cache", "trained_with_torch": None}  # fmt: skip
    text = "trained_by robench demo, adversarial recipe v2; epochs 10; cache_tag 58f020ab5d42; checkpoint reused from the cache; trained_with_torch unknown"
    row = next(line for line in markdown_summary(results, with_leaderboard=False).splitlines() if line.startswith("| Checkpoint provenance |"))
    assert text in row
    assert f"<tr><th>Checkpoint provenance</th><td>{text}</td></tr>" in render_html(results)
