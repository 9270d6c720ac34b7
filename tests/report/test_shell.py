"""The report shell: checklist first, every section present, leaderboard section, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import robench
from robench.report import render_html, render_report
from robench.report.checklist import checklist
from robench.report.render import SECTIONS
from robench.results import load_results
from tests.conftest import QuadrantNet
from tests.report import fixtures
from tests.report.test_checklist import GOLDEN

SHELL_IDS = ("checklist", "summary", "checks", "reproducibility", "limitations")


@pytest.fixture
def demo_like(tmp_path: Path, tiny_threat: Path) -> Path:
    """A real run of clean + FGSM + PGD + calibration under attack on the tiny fixture; its results.json."""
    threat = yaml.safe_load(tiny_threat.read_text())
    threat["evaluations"]["calibration"] = {"n_bins": 5, "conditions": ["clean", "attacks"]}
    threat["claims"] = {"source": "<script>alert('claims')</script>", "norm": "Linf", "eps": 0.1}
    tiny_threat.write_text(yaml.safe_dump(threat))
    robench.evaluate(QuadrantNet(), tiny_threat, out_dir=tmp_path / "out", progress=False, batch_size=16,
                     data_root=tiny_threat.parent / "data")  # fmt: skip
    return tmp_path / "out" / "results.json"


def _h2_ids(html: str) -> list[str]:
    return re.findall(r'<h2 id="([^"]+)"', html)


def test_demo_like_report_has_every_section(demo_like: Path, tmp_path: Path) -> None:
    html = render_report(demo_like, tmp_path / "report.html").read_text()
    ids = _h2_ids(html)
    assert ids == ["checklist", "summary", *(name for name, _ in SECTIONS), "checks", "reproducibility", "limitations"]
    # Sections the threat model does not declare say so; the leaderboard says why it has nothing.
    for name in ("corruptions", "stability", "certification"):
        body = html.split(f'<h2 id="{name}">', 1)[1].split("<h2", 1)[0]
        assert "did not run" in body
    assert "no published board matches" in html.split('<h2 id="leaderboard">', 1)[1].split("<h2", 1)[0]
    assert "<script>alert(" not in html and "&lt;script&gt;alert(" in html
    assert re.findall(r'(?:src|href)="(https?:[^"]+)"', html) == []
    results = load_results(demo_like)
    for item in checklist(results):
        assert f'<tr id="check-{item.key}" data-status="{item.status}">' in html
    assert "Total cost" in html and "forward and" in html


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_fixture_reports(name: str) -> None:
    html = render_html(fixtures.FIXTURES[name]())
    states = dict(re.findall(r'<tr id="check-([a-z_]+)" data-status="([^"]+)">', html))
    assert states == GOLDEN[name]
    assert set(_h2_ids(html)) >= {*SHELL_IDS, *(n for n, _ in SECTIONS)}
    leaderboard = html.split('<h2 id="leaderboard">', 1)[1].split("<h2", 1)[0]
    if name == "weak":
        assert "Scrutiny needed" in leaderboard and "rank 1 of" in leaderboard
    elif name == "strong":
        assert "cifar10/Linf at ε = 8/255: rank" in leaderboard and "Scrutiny" not in leaderboard
    else:  # certified: no attack ran, and certified accuracies are not AutoAttack numbers
        assert "no attack ran" in leaderboard and "not comparable" in leaderboard
