"""Certified accuracy from a certifier's per-example records (smoothing's and Lipschitz's
``artifacts["examples"]``: label, prediction, radius): the exact curve, and the points of the
per-radius table beyond the grid (the largest certified radius, smoothing's ceiling, round radii where
the grid lies above every certificate).

One functional core for the evaluators, which record the table's points as metric records (so that
``metrics.csv`` holds every number the report tabulates), and the report's section, which draws
and tabulates them (also for results of a robench that did not record them).
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from robench.certify.smoothing import at_ceiling, past_ceiling
from robench.stats import clopper_pearson

# Points of an exact curve drawn from per-example radii: beyond this many distinct radii, a grid.
_MAX_CURVE_POINTS = 1000


def _counted(example: dict[str, Any]) -> bool:
    """A per-example record that can count as certified: classified correctly, not abstained on (-1),
    with a positive radius (a Lipschitz margin of exactly 0, a tie of two logits, certifies nothing: the
    certifiers' grid records count ``radius > 0`` too; smoothing's radii of non-abstained examples are > 0)."""
    return bool(example["prediction"] == example["label"] and example["prediction"] >= 0 and float(example["radius"]) > 0)


def certified_radii(examples: list[dict[str, Any]]) -> list[float]:
    """The certified radii of the examples that count (:func:`_counted`), sorted."""
    return sorted(float(e["radius"]) for e in examples if _counted(e))


def exact_curve(examples: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Certified accuracy at every distinct certified radius, from a certifier's per-example records
    (smoothing's and Lipschitz's ``artifacts["examples"]``: label, prediction, radius).

    ``acc(r) = #{correct and radius >= r} / n`` is constant on ``(r_(k-1), r_k]`` between two distinct
    radii: the points are ``(r_k, acc(r_k))`` with their Clopper-Pearson intervals, and one more at the
    largest radius, just past which the curve is 0. Above :data:`_MAX_CURVE_POINTS` distinct radii the
    curve is evaluated on as many evenly spaced radii instead.
    """
    n = len(examples)
    radii = certified_radii(examples)
    if not n:
        return []
    points = sorted({0.0, *radii})
    if len(points) > _MAX_CURVE_POINTS:
        top = points[-1]
        points = [top * i / (_MAX_CURVE_POINTS - 1) for i in range(_MAX_CURVE_POINTS)]
    curve = []
    for r in points:
        k = len(radii) - bisect.bisect_left(radii, r)
        low, high = clopper_pearson(k, n)
        curve.append({"radius": r, "value": k / n, "ci_low": low, "ci_high": high})
    return curve


def _point(examples: list[dict[str, Any]], radius: float, flags: list[bool] | None = None, note: str = "") -> dict[str, Any]:
    """Certified accuracy at ``radius`` from the per-example radii (correct and radius >= ``radius``),
    or from per-example ``flags`` where the comparison is decided otherwise (the ceiling)."""
    n = len(examples)
    if flags is None:
        flags = [_counted(e) and float(e["radius"]) >= radius for e in examples]
    k = sum(bool(f) and e["prediction"] == e["label"] for f, e in zip(flags, examples))
    low, high = clopper_pearson(k, n)
    return {"radius": radius, "value": k / n, "ci_low": low, "ci_high": high, "note": note, "k": k, "n": n}


def _nice_step(top: float, count: int = 4) -> float:
    """The 1, 2 or 5 x 10^k step that cuts ``(0, top)`` into about ``count`` parts."""
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def table_points(curve: list[dict[str, Any]], examples: list[dict[str, Any]], ceiling: float | None = None) -> list[dict[str, Any]]:
    """The rows of a certifier's per-radius table: its grid ``curve``, and, from the per-example radii,
    the exact curve at the largest certified radius, at the ``ceiling`` (smoothing's largest possible
    radius: the examples :func:`~robench.certify.smoothing.at_ceiling`), and at a few round radii
    below the largest when the grid has fewer than two there (Lipschitz's grid 0.05.. lay above all its
    radii, max 0.039: every row read 0%). Sorted by radius; added rows carry a ``note`` and their
    count ``k`` of ``n`` (a grid point the added radius falls on keeps its row, without them)."""
    rows = [{**p, "note": ""} for p in curve]
    largest = max(certified_radii(examples), default=0.0)
    if not examples or largest <= 0:
        return rows
    added = []
    inside = [p for p in curve if 0 < p["radius"] < largest]
    if len(inside) < 2:
        step = _nice_step(largest)
        added += [_point(examples, round(i * step, 12), note="from the per-example radii") for i in range(1, 5) if i * step < largest * (1 - 1e-9)]
    if ceiling is not None and ceiling > 0:
        added.append(_point(examples, ceiling, [at_ceiling(e, ceiling) for e in examples], "the ceiling σ·Φ⁻¹(α^(1/n)): all n samples for the class"))
    if ceiling is None or not math.isclose(largest, ceiling, rel_tol=1e-9):
        added.append(_point(examples, largest, note="largest certified radius"))
    else:
        added[-1]["note"] += ", the largest certified radius"
    taken = [p["radius"] for p in rows]
    for point in added:  # a grid point at the same radius keeps its row and gains the note
        same = next((r for r in rows if math.isclose(r["radius"], point["radius"], rel_tol=1e-9, abs_tol=1e-15)), None)
        if same is not None:
            same["note"] = "; ".join(x for x in (same["note"], point["note"]) if x)
        elif point["radius"] not in taken:
            rows.append(point)
            taken.append(point["radius"])
    if ceiling is not None:  # past the ceiling the value is 0 for any model: no measurement, no interval
        rows = [{**p, "value": None, "ci_low": None, "ci_high": None, "note": "; ".join(x for x in (p["note"], "above the ceiling: 0 by construction") if x)}
                if past_ceiling(p["radius"], ceiling) else p for p in rows]  # fmt: skip
    return sorted(rows, key=lambda p: p["radius"])


__all__ = ["certified_radii", "exact_curve", "table_points"]
