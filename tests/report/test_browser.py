"""The report in a real headless Chromium (the system package; CI installs it): no console errors,
no network requests, every image decodes, and a screenshot of the first screen for the test log."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from robench.report import render_report
from tests.report import fixtures
from tests.report._chromium import HEIGHT, WIDTH, find_chromium, load_page

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no system Chromium (apt-get install chromium, or set ROBENCH_CHROMIUM); .ci/run installs it",
)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _check_report(page: Path, tmp_path: Path, name: str) -> None:
    report = load_page(CHROMIUM, page, tmp_path / f"profile-{name}")  # type: ignore[arg-type]
    assert report.errors == [], report.errors
    assert [u for u in report.requests if not u.startswith(("file:", "data:"))] == []  # self-contained
    assert report.images, "the report has figures"
    broken = [i for i in report.images if i["error"] or i["width"] == 0 or i["height"] == 0]
    assert broken == [], broken
    shot = tmp_path / f"{name}-first-screen.png"
    shot.write_bytes(report.screenshot)
    assert _png_size(report.screenshot) == (WIDTH, HEIGHT)
    print(f"screenshot of the first screen: {shot}")


@pytest.mark.parametrize("name", ["strong", "certified"])
def test_fixture_report_in_chromium(name: str, tmp_path: Path) -> None:
    page = render_report(fixtures.FIXTURES[name](), tmp_path / f"{name}.html")
    _check_report(page, tmp_path, name)


def test_real_run_report_in_chromium(tmp_path: Path, tiny_threat: Path) -> None:
    import robench
    from tests.conftest import QuadrantNet

    results = robench.evaluate(QuadrantNet(), tiny_threat, out_dir=tmp_path / "out", progress=False, batch_size=16,
                               data_root=tiny_threat.parent / "data")  # fmt: skip
    _check_report(render_report(results, tmp_path / "out" / "report.html"), tmp_path, "run")


def test_the_harness_sees_errors(tmp_path: Path) -> None:
    """A page with a console error, an exception, a broken image and a network request fails every check."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img alt='broken' src='data:image/png;base64,AAAA'>"
        "<img alt='remote' src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    report = load_page(CHROMIUM, page, tmp_path / "profile")  # type: ignore[arg-type]
    text = " ".join(report.errors)
    assert "console.error: boom" in text and "undefinedFunction" in text
    assert any(i["alt"] == "broken" and (i["error"] or i["width"] == 0) for i in report.images)
    assert any(u.startswith("http://127.0.0.1:9") for u in report.requests)
