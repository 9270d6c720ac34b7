"""Certification: method, parameters and assumptions of each certificate, curves, ACR, abstains, cost."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from robench.certify.curves import certified_radii, exact_curve, table_points
from robench.certify.smoothing import capped_count, ceiling_warning, max_certified_radius
from robench.report.checklist import certified_but_broken, unproven_certificate
from robench.report.plots import figure_data_uri, line_style, new_figure
from robench.results import EvaluationResult, MetricRecord, Results, not_certifiable
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
            "Deterministic and sound, like IBP (the same allowance for the model's floating-point rounding; TF32 off; "
            "bounds computed in float64 unless precision says otherwise, so that CROWN's own rounding stays far below it): "
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
            "loose for deep unconstrained networks. Each margin first loses twice a bound on the float model's own "
            "rounding over a box around the ball (at the example and at the far point; the allowance IBP uses) and "
            "IBP's rounding tolerance, so that the certified radius holds for the model as it computes."
        ),
    },
}


def _find(evaluation: EvaluationResult, name: str, excluded: tuple[str, ...] = ("radius", "eps")) -> MetricRecord | None:
    return next((r for r in evaluation.records if r.name == name and not set(excluded) & set(r.condition)), None)


def grid_value(value: float) -> str:
    """A radius of a table or curve for a reader: ``k/255`` when it is one, else at most 4 significant
    digits (``0.001`` for ``0.3 * 0.0033333333``, not ``0.00099999999``)."""
    as_255 = Fraction(value).limit_denominator(255)
    if as_255.denominator == 255 and as_255.numerator and abs(float(as_255) - value) < 1e-12:
        return f"{as_255.numerator}/255"
    return f"{value:.4g}"


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
                       label=f"{row['key']}: largest certifiable radius {row['max_radius']:.4g}")  # fmt: skip
    if grid_key == "eps":
        # the box verifiers' curves fall within a few percent of eps: a log axis (linear through 0,
        # where the curve starts) spreads them out, and a dashed line marks the threat model's eps
        positive = [p[grid_key] for row in plotted for p in row["curve"] if p[grid_key] > 0]
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
            # 0 and the decades from the first grid point up (a decade inside the linear part crowds 0's label)
            low = math.ceil(math.log10(min(positive)))
            high = math.ceil(math.log10(max(positive + [p.get("threat_eps") or 0 for p in plotted])))
            ax.set_xticks([0.0] + [10.0**k for k in range(low, high + 1)])
        threat = sorted({row["threat_eps"] for row in plotted if row.get("threat_eps") is not None})
        for eps in threat:
            ax.axvline(eps, color="black", linestyle="--", linewidth=1, label=f"threat model ε = {grid_value(eps)}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("certified accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    return figure_data_uri(fig)


# Parameters whose name alone does not say what they are (the others are glossed in the method's text).
PARAMETER_GLOSSES: dict[str, str] = {
    "n0": "noise samples that choose the class",
    "n": "noise samples that bound its probability",
    "batch": "noisy samples per batch (one call of the model)",
    "n_predict": "noise samples for PREDICT, the smoothed classifier's answer with abstention; 0: not run",
    "n_examples": "first examples certified",
    "images_per_batch": "images per journalled batch",
    "mode": "exact: fp32; fast: bf16",
    "fold_specification": "margin folded into the last linear layer",
    "rounding": "margins must clear the model's rounding",
    "pgd_check_steps": "PGD steps against verified examples",
}
# Keys of ``resolved`` that are not parameters: the grid (its own table) and results of older files.
_NOT_PARAMETERS = frozenset({"radii", "grid", "eps_fractions", "rejected_by_rounding_allowance"})


def _parameters(resolved: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v, "gloss": PARAMETER_GLOSSES.get(k, "")} for k, v in resolved.items() if k not in _NOT_PARAMETERS and v is not None]


def _rejected_elsewhere(artifacts: dict[str, Any]) -> str | None:
    """The rounding allowance's rejections at the curve's other radii (eps 0 included), in words;
    ``None`` when it rejected none there or the results do not record them (an older robench)."""
    per_eps = artifacts.get("rejected_by_rounding_per_eps")
    if not isinstance(per_eps, dict):
        return None
    threat = (artifacts.get("params") or {}).get("eps")
    pairs = [(e, k) for e, k in zip(per_eps.get("eps") or [], per_eps.get("rejected") or []) if k and e != threat]
    return "; ".join(f"{k} at ε = {grid_value(float(e))}" for e, k in pairs) or None


def _ceiling(certifier: str, artifacts: dict[str, Any], params: dict[str, Any]) -> float | None:
    """Smoothing's largest certifiable radius: recorded, else from its parameters (a run without adversary did not record it)."""
    recorded = artifacts.get("max_certified_radius")
    if isinstance(recorded, (int, float)):
        return float(recorded)
    if certifier == "smoothing" and all(isinstance(params.get(k), (int, float)) for k in ("n", "alpha", "sigma")):
        return max_certified_radius(int(params["n"]), float(params["alpha"]), float(params["sigma"]))
    return None


def _capped(examples: list[dict[str, Any]], ceiling: float | None, params: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """How many certificates sit at smoothing's ceiling, and the warning when too many do (written
    here for results of a robench that did not write it)."""
    if ceiling is None or not examples:
        return None
    k = capped_count(examples, ceiling)
    warning = None
    if all(isinstance(params.get(key), (int, float)) for key in ("n", "alpha", "sigma")):
        warning = ceiling_warning(k, len(examples), int(params["n"]), float(params["alpha"]), float(params["sigma"]))
    return {"k": k, "n": len(examples), "ceiling": ceiling, "warning": None if warning in warnings else warning}


def _looseness(evaluation: EvaluationResult) -> dict[str, float] | None:
    """√2·L against the largest margin-gradient norm the Lipschitz soundness check sampled (a lower
    bound on the margin's Lipschitz constant): how loose the global bound may be on these examples."""
    check = next((c for c in evaluation.checks if c.name == "lipschitz_vs_gradients"), None)
    if check is None:
        return None
    bound, largest = check.evidence.get("sqrt2_lipschitz"), check.evidence.get("largest_gradient_norm")
    if not (isinstance(bound, (int, float)) and isinstance(largest, (int, float)) and largest > 0):
        return None
    return {"bound": float(bound), "largest": float(largest), "factor": float(bound) / float(largest)}


def build(results: Results) -> dict[str, Any] | None:
    """One row per certifier (parameters, headline numbers, curve, cost) and the curve figures."""
    evaluations = [e for e in results.evaluations if e.section == "certification"]
    if not evaluations:
        return None
    rows = []
    adversary = results.threat_model.get("adversary") or {}
    for evaluation in evaluations:
        certifier = evaluation.artifacts.get("certifier", evaluation.name)
        curve = evaluation.artifacts.get("curve") or []
        grid_key = "eps" if certifier in ("ibp", "crown") else "radius"
        headline = next((r for r in evaluation.records if r.name == "certified_accuracy" and "threat_eps" in r.condition
                         and (not adversary or r.condition["threat_eps"] == adversary.get("eps"))), None)  # an older IBP's params.eps: not the threat's
        examples = (evaluation.artifacts.get("examples") or []) if certifier in ("smoothing", "lipschitz") else []
        needed = evaluation.artifacts.get("threat_radius_l2")
        ceiling = _ceiling(certifier, evaluation.artifacts, evaluation.resolved)
        capped = _capped(examples, ceiling, evaluation.resolved, evaluation.warnings) if certifier == "smoothing" else None
        certified = certified_radii(examples)
        verified = [p[grid_key] for p in curve if p[grid_key] > 0 and (p.get("value") or 0) > 0]
        rejected = evaluation.artifacts.get("rejected_by_rounding_allowance", evaluation.resolved.get("rejected_by_rounding_allowance"))
        rows.append(
            {
                "key": evaluation.key.split("/", 1)[1],
                "certifier": certifier,
                "method": METHODS.get(certifier, {"title": certifier, "guarantee": ""}),
                "unproven": None if (reason := unproven_certificate(evaluation)) in evaluation.warnings else reason,
                "status": evaluation.status,
                "error": evaluation.error,
                "params": evaluation.resolved,
                "parameters": _parameters(evaluation.resolved),
                "norm": evaluation.artifacts.get("norm", ""),
                "curve": curve,
                "table": table_points(curve, examples, ceiling if certifier == "smoothing" else None)
                if grid_key == "radius" else [{**p, "note": ""} for p in curve],
                "grid_key": grid_key,
                "headline": headline,
                "headline_note": not_certifiable(headline, evaluation.artifacts) if headline is not None else None,
                "threat_radius_l2": needed,
                # the dashed line of the eps figure: the threat model's eps, not a verifier's params.eps
                "threat_eps": headline.condition.get("threat_eps") if headline is not None else adversary.get("eps", evaluation.resolved.get("eps")),
                "max_radius": ceiling,
                "capped": capped,
                "largest": max(certified) if certified else None,
                "largest_verified": max(verified) if verified else None,
                "looseness": _looseness(evaluation) if certifier == "lipschitz" else None,
                "rejected": rejected if isinstance(rejected, int) else None,
                "rejected_elsewhere": _rejected_elsewhere(evaluation.artifacts),
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
                "predict_samples": evaluation.artifacts.get("predict_samples"),
                "cost": evaluation.cost,
                "warnings": evaluation.warnings,
            }
        )
    for row in rows:
        for point in row["table"]:
            point["shown"] = grid_value(point[row["grid_key"]])
    return {
        "rows": rows,
        "figure_radius": _curve_figure(rows, "radius", "L2 radius (pixel units, [0,1] scale)"),
        "figure_eps": _curve_figure(rows, "eps", "Linf radius ε of the input box"),
        "plotted_radius": ", ".join(r["key"] for r in rows if (r["curve"] or r["exact"]) and r["grid_key"] == "radius"),
        "plotted_eps": ", ".join(r["key"] for r in rows if r["curve"] and r["grid_key"] == "eps"),
        "checks": [c for e in evaluations for c in e.checks],
        "cross_checks": certified_but_broken(results),
    }
