"""Certification: method, parameters and assumptions of each certificate, curves, ACR, abstains, cost."""

from __future__ import annotations

import bisect
from typing import Any

from robench.report.plots import figure_data_uri, line_style, new_figure
from robench.results import EvaluationResult, MetricRecord, Results
from robench.stats import clopper_pearson

# What each certificate guarantees and assumes, shown next to its numbers.
METHODS: dict[str, dict[str, str]] = {
    "smoothing": {
        "title": "Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019)",
        "guarantee": (
            "Certifies the smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, σ²I), not the base "
            "classifier f: g answers with the certified class everywhere within the L2 radius, and the base "
            "model's own predictions may differ. Each certificate holds with probability at least 1 − α over "
            "the Monte-Carlo noise (CERTIFY: n0 samples choose the class, n fresh samples give a one-sided "
            "Clopper-Pearson lower bound pA; radius σ·Φ⁻¹(pA); abstain when pA ≤ 1/2). Deploying the "
            "certificate means deploying g, which costs n forward passes per prediction."
        ),
    },
    "ibp": {
        "title": "Interval bound propagation (Gowal et al. 2018)",
        "guarantee": (
            "Deterministic and sound for the model as it computes, in floating point: every point of the input box "
            "is classified correctly for a verified example, whose margin bound must also clear a bound on the "
            "model's own rounding over the box (worst-case dot-product error, Jia & Rinard 2021; parameter rounding, "
            "recorded; on GPUs TF32 is switched off while bounding). Bounds are propagated layer by layer through the "
            "traced model (affine layers in centre/radius form, monotone activations on both ends); the "
            "margin specification is folded into the last linear layer. L2 balls are bounded by their "
            "enclosing Linf box: sound but loose. IBP is loose for models not trained with it."
        ),
    },
    "crown": {
        "title": "CROWN linear relaxation bounds (Zhang et al. 2018)",
        "guarantee": (
            "Deterministic and sound, like IBP (the same allowance for the model's floating-point rounding; TF32 off): "
            "every point of the input box is classified correctly for a verified example. Each ReLU is bounded by linear functions of its "
            "input (stable neurons exactly; unstable ones by the chord above and an adaptive line of slope 0 "
            "or 1 below), and these are propagated backward from every layer to the input (full CROWN, as "
            "auto_LiRPA's method 'CROWN'), with the margin specification folded in. Usually much tighter than "
            "IBP (not guaranteed neuron by neuron) but costlier: about 2·(neurons)·(depth) backward passes per "
            "example. Supports affine layers, ReLUs and residual additions (ResNet/WideResNet blocks), not max "
            "pooling or other activations; L2 balls use their enclosing Linf box."
        ),
    },
    "lipschitz": {
        "title": "Global Lipschitz bound",
        "guarantee": (
            "Deterministic: L bounds the model's L2 Lipschitz constant as the product of per-layer operator "
            "norms (sums at residual additions); an example is certified at radius margin / (√2·L). With "
            "method 'bound' the convolution norms are guaranteed upper bounds (circulant embedding); with "
            "'power' they are power-iteration estimates times (1 + margin), not guaranteed. Product bounds are "
            "loose for deep unconstrained networks. The margin is the float model's at the example; rounding at "
            "the other points of the ball is not bounded."
        ),
    },
}


def _find(evaluation: EvaluationResult, name: str, excluded: tuple[str, ...] = ("radius", "eps")) -> MetricRecord | None:
    return next((r for r in evaluation.records if r.name == name and not set(excluded) & set(r.condition)), None)


# Points of an exact curve drawn from per-example radii: beyond this many distinct radii, a grid.
_MAX_CURVE_POINTS = 1000


def exact_curve(examples: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Certified accuracy at every distinct certified radius, from a certifier's per-example records
    (smoothing's and Lipschitz's ``artifacts["examples"]``: label, prediction, radius).

    ``acc(r) = #{correct and radius >= r} / n`` is constant on ``(r_(k-1), r_k]`` between two distinct
    radii: the points are ``(r_k, acc(r_k))`` with their Clopper-Pearson intervals, and one more at the
    largest radius, just past which the curve is 0. Above :data:`_MAX_CURVE_POINTS` distinct radii the
    curve is evaluated on as many evenly spaced radii instead.
    """
    n = len(examples)
    radii = sorted(float(e["radius"]) for e in examples if e["prediction"] == e["label"] and e["prediction"] >= 0)
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


def _curve_figure(rows: list[dict[str, Any]], grid_key: str, xlabel: str) -> str | None:
    plotted = [r for r in rows if (r["curve"] or r.get("exact")) and r["grid_key"] == grid_key]
    if not plotted:
        return None
    fig, ax = new_figure()
    for index, row in enumerate(plotted):
        style = line_style(index)
        exact = row.get("exact")
        points = exact or row["curve"]
        if exact and exact[-1]["value"] > 0:  # past the largest radius the curve is 0: draw the drop
            end = max([p[grid_key] for p in row["curve"]] + [1.05 * exact[-1][grid_key]])
            points = [*exact, {grid_key: end, "value": 0.0, **dict(zip(("ci_low", "ci_high"), clopper_pearson(0, len(row["examples"]))))}]
        xs = [point[grid_key] for point in points]
        ys = [point["value"] for point in points]
        lows = [point["ci_low"] for point in points]
        highs = [point["ci_high"] for point in points]
        # Certified accuracy is known at the points and falls with the radius: between two of them only
        # the value at the larger one is certain (exact: it is that value), so each step takes its
        # right-hand value.
        label = f"{row['key']} (from {len(row['examples'])} per-example radii)" if exact else row["key"]
        ax.step(xs, ys, where="pre", label=label, color=style["color"], linestyle=style["linestyle"])
        ax.fill_between(xs, lows, highs, step="pre", alpha=0.15, color=style["color"])
        if exact and row["curve"]:  # the table's grid points on the exact curve
            ax.plot([p[grid_key] for p in row["curve"]], [p["value"] for p in row["curve"]], linestyle="none",
                    marker=style["marker"], color=style["color"], markersize=4)  # fmt: skip
        if row.get("max_radius") is not None:
            ax.axvline(row["max_radius"], color=style["color"], linestyle=":", linewidth=1,
                       label=f"{row['key']}: largest certifiable radius {row['max_radius']:.3g}")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("certified accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    return figure_data_uri(fig)


def build(results: Results) -> dict[str, Any] | None:
    """One row per certifier (parameters, headline numbers, curve, cost) and the curve figures."""
    evaluations = [e for e in results.evaluations if e.section == "certification"]
    if not evaluations:
        return None
    rows = []
    for evaluation in evaluations:
        certifier = evaluation.artifacts.get("certifier", evaluation.name)
        curve = evaluation.artifacts.get("curve") or []
        grid_key = "eps" if certifier in ("ibp", "crown") else "radius"
        headline = next((r for r in evaluation.records if r.name == "certified_accuracy" and "threat_eps" in r.condition), None)
        examples = (evaluation.artifacts.get("examples") or []) if certifier in ("smoothing", "lipschitz") else []
        needed, ceiling = evaluation.artifacts.get("threat_radius_l2"), evaluation.artifacts.get("max_certified_radius")
        rows.append(
            {
                "key": evaluation.key.split("/", 1)[1],
                "certifier": certifier,
                "method": METHODS.get(certifier, {"title": certifier, "guarantee": ""}),
                "status": evaluation.status,
                "error": evaluation.error,
                "params": evaluation.resolved,
                "norm": evaluation.artifacts.get("norm", ""),
                "curve": curve,
                "grid_key": grid_key,
                "headline": headline,
                "threat_radius_l2": needed,
                "max_radius": ceiling,
                "not_certifiable": needed is not None and ceiling is not None and needed > ceiling,
                "examples": examples,
                "exact": exact_curve(examples) if examples else None,
                "acr": _find(evaluation, "average_certified_radius"),
                "abstain": _find(evaluation, "abstain_rate"),
                "smoothed": _find(evaluation, "smoothed_accuracy"),
                "predict_abstain": _find(evaluation, "predict_abstain_rate"),
                "clean": _find(evaluation, "clean_accuracy"),
                "lipschitz": evaluation.artifacts.get("lipschitz_bound"),
                "samples_per_s": evaluation.artifacts.get("samples_per_s"),
                "noisy_samples": evaluation.artifacts.get("noisy_samples"),
                "cost": evaluation.cost,
                "warnings": evaluation.warnings,
            }
        )
    return {
        "rows": rows,
        "figure_radius": _curve_figure(rows, "radius", "L2 radius (pixel units, [0,1] scale)"),
        "figure_eps": _curve_figure(rows, "eps", "Linf radius ε of the input box"),
        "plotted_radius": ", ".join(r["key"] for r in rows if (r["curve"] or r["exact"]) and r["grid_key"] == "radius"),
        "plotted_eps": ", ".join(r["key"] for r in rows if r["curve"] and r["grid_key"] == "eps"),
        "checks": [c for e in evaluations for c in e.checks],
    }
