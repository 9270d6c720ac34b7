"""The report's figures: intervals drawn where the records have them (and none made up where they
do not), axes that start at 0, lines told apart by marker and dash, per-bin counts in reliability diagrams."""

from __future__ import annotations

from typing import Any

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from robench.report.plots import PALETTE, line_style
from robench.report.render import render_html
from robench.report.sections import calibration
from robench.results import EvaluationResult, MetricRecord
from tests.report import fixtures


def _ece(corruption: str, severity: int, value: float) -> MetricRecord:
    return MetricRecord(evaluation="calibration", name="ece", value=value, n=500, ci_low=value - 0.01, ci_high=value + 0.02,
                        condition={"condition": "corruption", "corruption": corruption, "severity": severity}, unit="probability")  # fmt: skip


def test_ece_against_severity_starts_at_zero_with_error_bars(figures: list[Any]) -> None:
    names = [f"c{i}" for i in range(10)]
    records = [_ece(name, s, 0.10 + 0.02 * s) for name in names for s in (1, 2, 3)]
    calibration._severity_figure(records, None)
    (ax,) = figures[-1].axes
    assert ax.get_ylim()[0] == 0
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == len(names)
    # the interval of c0 at severity 1 is drawn: [11%, 14%]
    segments = bars[0].lines[2][0].get_segments()
    assert segments[0][:, 1].tolist() == pytest.approx([11.0, 14.0])
    styles = {(c.lines[0].get_color(), c.lines[0].get_marker(), c.lines[0].get_linestyle()) for c in bars}
    assert len(styles) == len(names)  # ten lines, no two alike
    assert all(line_style(i)["color"] in PALETTE for i in range(10))


def test_reliability_diagrams_show_the_count_per_bin(figures: list[Any]) -> None:
    render_html(fixtures.strong())
    diagrams = [f for f in figures if len(f.axes) == 2 and f.axes[1].get_ylabel() == "n"]
    assert len(diagrams) == 2  # clean and under attack, one figure each so that they stack on a phone
    counts = [round(p.get_height()) for p in diagrams[0].axes[1].patches]
    assert counts == [0] * 9 + [5, 10, 15, 30, 90, 350]
    assert {t.get_text() for t in diagrams[0].axes[1].texts} == {"5", "10", "15", "30", "90", "350"}


def _corruptions(with_group_records: bool) -> EvaluationResult:
    records = [MetricRecord.proportion("corruptions", "accuracy", k, 100, {"corruption": c, "severity": s})
               for c, k in (("gaussian_noise", 60), ("fog", 80)) for s in (1, 2)]  # fmt: skip
    records += [MetricRecord.proportion("corruptions", "corruption_accuracy", k, 100, {"corruption": c}) for c, k in (("gaussian_noise", 60), ("fog", 80))]
    if with_group_records:
        records += [MetricRecord.proportion("corruptions", "group_accuracy", k, 100, {"group": g}) for g, k in (("noise", 60), ("weather", 80))]
    return EvaluationResult(key="corruptions", section="corruptions", name="corruptions", status="success", records=records,
                            artifacts={"groups": {"gaussian_noise": "noise", "fog": "weather"}})  # fmt: skip


def _group_axes(figures: list[Any]) -> Any:
    return next(f.axes[0] for f in figures if "mean accuracy" in f.axes[0].get_ylabel() or f.axes[0].get_ylabel() == "accuracy (95% CI)")


def test_group_bars_have_error_bars_only_from_recorded_intervals(figures: list[Any]) -> None:
    results = fixtures.strong()
    results.evaluations.append(_corruptions(with_group_records=False))
    page = render_html(results)
    ax = _group_axes(figures)
    assert ax.get_ylabel() == "mean accuracy (point estimate)" and not any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    assert "cells, a point estimate without an interval" in page
    figures.clear()
    results.evaluations[-1] = _corruptions(with_group_records=True)
    page = render_html(results)
    ax = _group_axes(figures)
    assert ax.get_ylabel() == "accuracy (95% CI)" and any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    assert "cells, a point estimate without an interval" not in page


def test_eps_curve_has_interval_bands(figures: list[Any]) -> None:
    radii = [0.01, 0.02, 0.03]
    records = [MetricRecord.proportion("attacks/gradient_masking", "pgd_robust_accuracy_at_eps", k, 100, {"eps": e}) for e, k in zip(radii, (90, 70, 50))]
    masking = EvaluationResult(key="attacks/gradient_masking", section="attacks", name="gradient_masking", status="success", records=records,
                               resolved={"steps": 20},
                               artifacts={"kind": "masking", "n_examples": 100, "curve": {"eps": radii, "robust_accuracy": [0.9, 0.7, 0.5]}})  # fmt: skip
    results = fixtures.strong()
    results.evaluations[3] = masking
    render_html(results)
    ax = next(f.axes[0] for f in figures if f.axes[0].get_xlabel() == "ε")
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    low, high = records[1].ci_low, records[1].ci_high
    ys = bands[0].get_paths()[0].vertices[:, 1]
    assert min(abs(ys - low)) < 1e-9 and min(abs(ys - high)) < 1e-9
    # the attacks without a curve are points with their interval as error bars
    assert sum(1 for c in ax.containers if c.has_yerr) == 2
