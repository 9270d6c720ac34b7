"""Certified-accuracy curves and table points from per-example records, against brute-force counts
and statsmodels' Clopper-Pearson intervals."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from statsmodels.stats.proportion import proportion_confint

from robench.certify.curves import exact_curve, table_points


def _certified_at(examples: list[dict[str, Any]], r: float) -> int:
    """Brute force: correct, not abstained, positive radius, and radius >= r."""
    return sum(e["prediction"] == e["label"] and e["prediction"] >= 0 and e["radius"] > 0 and e["radius"] >= r for e in examples)


def _grid(examples: list[dict[str, Any]], radii: list[float]) -> list[dict[str, Any]]:
    n = len(examples)
    return [{"radius": r, "value": _certified_at(examples, r) / n, "ci_low": 0.0, "ci_high": 1.0} for r in radii]


def test_exact_curve_beyond_its_point_budget_spans_zero_to_the_largest_radius() -> None:
    """Above 1000 distinct radii the curve is 1000 evenly spaced radii from 0 to the largest (a
    spacing of top / 1000 stopped one step short of it, so no point said where the curve ends)."""
    rng = random.Random(0)
    examples = [{"label": 0, "prediction": 0 if i % 5 else 1, "radius": rng.uniform(0.01, 2.0)} for i in range(1500)]
    top = max(e["radius"] for e in examples if e["prediction"] == 0)
    curve = exact_curve(examples)
    assert len(curve) == 1000
    assert curve[0]["radius"] == 0.0 and curve[-1]["radius"] == pytest.approx(top, rel=1e-12)
    steps = [b["radius"] - a["radius"] for a, b in itertools.pairwise(curve)]
    assert max(steps) == pytest.approx(top / 999, rel=1e-9) and min(steps) == pytest.approx(top / 999, rel=1e-9)
    for point in curve[::97] + curve[-1:]:
        k = _certified_at(examples, point["radius"])
        assert point["value"] == k / 1500
        assert (point["ci_low"], point["ci_high"]) == pytest.approx(proportion_confint(k, 1500, method="beta"), abs=1e-10)
    assert curve[-1]["value"] == 1 / 1500


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ([0.0, 0.5, 1.0], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0]),  # no grid radius below the largest certificate
        ([0.0, 0.3, 1.0], [0.0, 0.1, 0.2, 0.3, 0.4, 1.0]),  # one: still too few, 0.3 keeps its grid row
        ([0.0, 0.1, 0.2, 0.5], [0.0, 0.1, 0.2, 0.4, 0.5]),  # two: only the largest radius is added
    ],
)
def test_table_points_below_a_sparse_grid_are_brute_force_counts(grid: list[float], expected: list[float]) -> None:
    """A grid with fewer than two radii inside (0, largest certificate = 0.4): the table adds 0.1,
    0.2, 0.3 (the 1-2-5 step of 0.4 / 4 is 0.1 itself) and the largest radius, each counted as
    correct with radius >= r (an example exactly at the added radius counts; none that is wrong)."""
    examples = [
        {"label": 1, "prediction": 1, "radius": 0.4},
        {"label": 1, "prediction": 1, "radius": 0.2},  # exactly on an added radius
        {"label": 2, "prediction": 2, "radius": 0.1},
        {"label": 0, "prediction": 2, "radius": 0.35},  # wrong: never counts
        {"label": 0, "prediction": -1, "radius": 0.0},  # abstained
        {"label": 0, "prediction": 0, "radius": 0.05},
    ]
    rows = table_points(_grid(examples, grid), examples)
    assert [r["radius"] for r in rows] == pytest.approx(expected, abs=1e-12)
    for row in rows:
        k = _certified_at(examples, row["radius"])
        assert row["value"] == k / 6, row
        if "k" in row:
            assert (row["k"], row["n"]) == (k, 6)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(proportion_confint(k, 6, method="beta"), abs=1e-10)
    largest = next(r for r in rows if r["radius"] == 0.4)
    assert largest["note"] == "largest certified radius" and largest["k"] == 1


def test_the_ceiling_point_counts_only_correct_examples_with_every_vote() -> None:
    """At smoothing's ceiling the examples are those whose n samples all voted for the class
    (count == n); a wrong class certified at the ceiling is no certified accuracy."""
    ceiling = 0.9
    examples = [
        {"label": 1, "prediction": 1, "radius": ceiling, "count": 100, "n": 100},
        {"label": 1, "prediction": 1, "radius": ceiling, "count": 100, "n": 100},
        {"label": 0, "prediction": 3, "radius": ceiling, "count": 100, "n": 100},  # wrong class at the ceiling
        {"label": 2, "prediction": 2, "radius": 0.6, "count": 99, "n": 100},
        {"label": 2, "prediction": -1, "radius": 0.0, "count": 40, "n": 100},
    ]
    rows = table_points(_grid(examples, [0.0, 0.25, 0.5, 0.75, 1.0]), examples, ceiling)
    at = [r for r in rows if r["radius"] == ceiling]
    assert len(at) == 1 and at[0]["note"].startswith("the ceiling") and "largest certified radius" in at[0]["note"]
    assert (at[0]["k"], at[0]["n"], at[0]["value"]) == (2, 5, 2 / 5)
    above = [r for r in rows if r["radius"] > ceiling]
    assert [r["radius"] for r in above] == [1.0] and above[0]["value"] is None


def test_table_points_without_a_certified_example_are_the_grid() -> None:
    """No example certified (all wrong, abstained or at radius 0): nothing to add, and no round-radius
    step is derived from a largest radius of 0 (``log10(0)``)."""
    examples = [{"label": 0, "prediction": 1, "radius": 0.3}, {"label": 1, "prediction": -1, "radius": 0.0}, {"label": 2, "prediction": 2, "radius": 0.0}]
    grid = _grid(examples, [0.0, 0.5])
    assert table_points(grid, examples) == [{**p, "note": ""} for p in grid]
    assert [p["value"] for p in exact_curve(examples)] == [0.0]
