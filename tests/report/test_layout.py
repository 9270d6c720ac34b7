"""Phone and desktop layout: wide tables scroll inside their own box instead of widening the page,
intervals in numeric cells never break, reliability diagrams stack on a narrow screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from robench.report import render_report
from robench.report.render import render_html
from tests.report import fixtures
from tests.report._chromium import find_chromium, measure_layout

CHROMIUM = find_chromium()


@pytest.mark.parametrize("name", sorted(fixtures.FIXTURES))
def test_every_table_is_in_a_scrolling_box(name: str) -> None:
    page = render_html(fixtures.FIXTURES[name]())
    assert page.count("<table") == page.count('<div class="scroll"><table') > 0
    assert re.search(r"td\.num \{[^}]*white-space: nowrap", page)
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", page)


@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium, or set ROBENCH_CHROMIUM)")
@pytest.mark.parametrize("width", [1280, 420])
def test_layout_in_chromium(width: int, tmp_path: Path) -> None:
    page = render_report(fixtures.strong(), tmp_path / "strong.html")
    layout = measure_layout(CHROMIUM, page, tmp_path / "profile", width, tmp_path / f"strong-{width}.png")  # type: ignore[arg-type]
    print(f"screenshot: {tmp_path / f'strong-{width}.png'}")
    assert layout["scrollWidth"] <= layout["width"], layout["wide"]  # nothing widens the page
    assert layout["wide"] == [] and layout["unscrolled"] == 0 and layout["wrapped"] == 0
    (clean_left, clean_top, clean_width), (attack_left, attack_top, _) = layout["panels"]
    assert clean_width <= layout["width"]
    if width == 420:
        assert attack_top > clean_top and attack_left == clean_left  # stacked
    else:
        assert attack_top == clean_top and attack_left > clean_left  # side by side
