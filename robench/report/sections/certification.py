"""Certification: method, parameters and assumptions of each certificate, curves, ACR, abstains, cost."""

from __future__ import annotations

from typing import Any

from robench.report.plots import figure_data_uri, new_figure
from robench.results import EvaluationResult, MetricRecord, Results

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


def _curve_figure(rows: list[dict[str, Any]], grid_key: str, xlabel: str) -> str | None:
    plotted = [r for r in rows if r["curve"] and r["grid_key"] == grid_key]
    if not plotted:
        return None
    fig, ax = new_figure()
    for row in plotted:
        xs = [point[grid_key] for point in row["curve"]]
        ys = [point["value"] for point in row["curve"]]
        lows = [point["ci_low"] for point in row["curve"]]
        highs = [point["ci_high"] for point in row["curve"]]
        # Certified accuracy is known at the grid's radii and falls with the radius: between two of them
        # only the value at the larger one is certain, so each step takes its right-hand value.
        ax.step(xs, ys, where="pre", label=row["key"])
        ax.fill_between(xs, lows, highs, step="pre", alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("certified accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend()
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
        "checks": [c for e in evaluations for c in e.checks],
    }
