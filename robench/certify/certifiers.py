"""The registered certifiers (kind ``certifier``): thin shells over the functional cores.

Each is a class with a static ``evaluate(model, data, threat, spec, params, ctx)`` that the
``certification`` section calls; it batches through :meth:`EvalContext.map_batches` (journal,
resume, cost) and writes records with ``n`` and Clopper-Pearson intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import AfterValidator, BeforeValidator, Field
from torch import fx

from robench._errors import ConfigError
from robench._numerics import IEEE_FP32, ieee_fp32
from robench.attacks._speed import StepModel, precision_label
from robench.certify import crown, ibp, lipschitz
from robench.certify._records import add_acr, add_curve, add_headline_l2, add_table_points, record_certified_outcomes
from robench.certify._trace import trace
from robench.certify.guarantees import unproven
from robench.certify.smoothing import (
    ABSTAIN,
    NoiseSampler,
    at_ceiling,
    ceiling_warning,
    certify_from_counts,
    make_generators,
    max_certified_radius,
    predict_from_counts,
    radius_grid,
)
from robench.context import EvalContext, EvaluationOutput, shortfall_warning
from robench.data.base import Dataset
from robench.models.wrapper import ModelHandle, check_logits
from robench.registry import register
from robench.results import Check, ConditionValue, MetricRecord
from robench.threat_model import Adversary, Eps, EvaluationSpec, Schema, ThreatModel, parse_eps, radius_box_error


class _Params(Schema):
    """Base of the certifiers' parameters."""


def _fractions(values: Any) -> Any:
    """Radii may be written as fractions (``"1/300"``, as eps can: :func:`robench.threat_model.parse_eps`)."""
    if isinstance(values, (list, tuple)):
        return [parse_eps(v) if isinstance(v, str) else v for v in values]
    return values


def _radii(values: tuple[float, ...]) -> tuple[float, ...]:
    if not values or any(not (math.isfinite(v) and v >= 0) for v in values):
        raise ValueError(f"expected a non-empty list of finite radii >= 0, got {list(values)}")
    return tuple(sorted(set(values)))


Radii = Annotated[tuple[float, ...], BeforeValidator(_fractions), AfterValidator(_radii)]


def _check_l2_radii(radii: tuple[float, ...] | None, data: Dataset, threat: ThreatModel, method: str) -> None:
    """Raises :class:`~robench.ConfigError` when a declared L2 radius of the curve exceeds the L2
    diameter of the input box (:func:`~robench.threat_model.radius_box_error`): its ball holds every
    input, as an adversary's eps may not (a radius of 1e308 ran, to fail on writing its records)."""
    if not radii:
        return
    bounds = threat.adversary.bounds if threat.adversary is not None else (0.0, 1.0)
    problem = radius_box_error("L2", max(radii), bounds, data.input_shape, f"certification: {method} radius {max(radii):g}")
    if problem is not None:
        raise ConfigError(problem)


class SmoothingParams(_Params):
    """Parameters of :class:`RandomizedSmoothing` (defaults: Cohen et al. 2019's CERTIFY)."""

    sigma: float = Field(gt=0, le=10, description="noise standard deviation in [0,1] pixel units")
    n0: int = Field(default=100, ge=1, le=10**7, description="selection samples (choose cA)")
    n: int = Field(default=100_000, ge=1, le=10**9, description="estimation samples (bound pA)")
    alpha: float = Field(default=0.001, gt=0, lt=0.5, description="failure probability per certificate")
    batch: int = Field(default=1000, ge=1, le=1 << 20, description="noisy samples per batch (one call of the model)")
    radii: Radii | None = Field(default=None, description="L2 radii of the curve (default 0, 0.25 .. 4 sigma)")
    n_predict: int = Field(default=0, ge=0, le=10**9, description="samples for PREDICT (0: not run)")
    n_examples: int | None = Field(default=None, gt=0, description="certify only the first n examples")
    images_per_batch: int = Field(default=32, ge=1, le=100_000, description="images per journalled batch")
    mode: Literal["exact", "fast"] = Field(default="exact", description="fast: bf16 autocast + channels_last base classifier")
    compile: bool = Field(default=False, description="torch.compile the base classifier")


@register("certifier", "smoothing", params=SmoothingParams)
class RandomizedSmoothing:
    """Randomized smoothing (Cohen et al. 2019): certified L2 radii of the Gaussian-smoothed classifier."""

    @staticmethod
    def preflight(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: SmoothingParams, ctx: EvalContext
    ) -> None:
        """Before any section runs: the declared radii fit the input box."""
        _check_l2_radii(params.radii, data, threat, "smoothing")

    @staticmethod
    def evaluate(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: SmoothingParams, ctx: EvalContext
    ) -> EvaluationOutput:
        """CERTIFY (and optionally PREDICT) every example; certified accuracy at radii, ACR, abstain rate."""
        key = f"certification/{spec.key}"
        short = shortfall_warning(params.n_examples, len(data))
        data = data.subset(params.n_examples)
        num_classes = int(model.info.num_classes or data.num_classes)
        stepper = StepModel(model.module, params.mode, params.compile)
        sampler = NoiseSampler(stepper, num_classes, params.sigma, params.batch)
        ctx.cost.precision = precision_label(params.mode, ctx.device).replace(" (success in fp32)", "")

        def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            seeds = torch.randint(0, 1 << 62, (x.shape[0],), generator=generator)
            generators = make_generators(seeds, x.device)
            out = {"counts0": sampler.counts(x, params.n0, generators), "counts": sampler.counts(x, params.n, generators), "labels": y}
            if params.n_predict:
                out["counts_predict"] = sampler.counts(x, params.n_predict, generators)
            return out

        with stepper.prepared():
            out = ctx.map_batches("certify", data, batch, model.counter, batch_size=params.images_per_batch, desc=f"certify {spec.key}")
        labels = out["labels"]
        certificates = [certify_from_counts(c0, c, params.alpha, params.sigma) for c0, c in zip(out["counts0"], out["counts"])]
        prediction = torch.tensor([c.prediction for c in certificates], dtype=torch.long)
        radius = torch.tensor([c.radius for c in certificates], dtype=torch.float64)
        correct = prediction == labels
        condition: dict[str, ConditionValue] = {"certifier": spec.key, "norm": "L2", "sigma": params.sigma}
        output = EvaluationOutput()
        grid = params.radii or radius_grid(4 * params.sigma)
        ceiling = max_certified_radius(params.n, params.alpha, params.sigma)
        curve = add_curve(output, key, "radius", grid, lambda r: correct & (radius >= r), condition, ceiling)
        add_headline_l2(output, key, threat, radius, correct, math.prod(data.input_shape), condition, ceiling)
        acr = add_acr(output, key, radius, correct, condition)
        abstained = prediction == ABSTAIN
        n = int(labels.numel())
        examples = [
            {"label": int(label), "prediction": c.prediction, "count": c.count, "n": c.n, "p_lower": c.p_lower, "radius": c.radius}
            for label, c in zip(labels.tolist(), certificates)
        ]
        add_table_points(output, key, curve, examples, condition, ceiling)
        if short is not None:
            output.warnings.append(short)
        if params.mode == "fast":
            output.warnings.append(
                "mode: fast: the certificates are those of the smoothed classifier of the model under bf16 autocast (the "
                "base classifier sampled), not of the fp32 model's; nothing is re-checked in fp32, as an attack's success is"
            )
        capped = ceiling_warning(sum(at_ceiling(e, ceiling) for e in examples), n, params.n, params.alpha, params.sigma)
        if capped is not None:
            output.warnings.append(capped)
        output.records.append(MetricRecord.proportion(key, "abstain_rate", int(abstained.sum()), n, condition))
        if params.n_predict:
            predicted = [predict_from_counts(c, params.alpha)[0] for c in out["counts_predict"]]
            smoothed = torch.tensor(predicted, dtype=torch.long)
            output.records.append(MetricRecord.proportion(key, "smoothed_accuracy", int((smoothed == labels).sum()), n, condition))
            output.records.append(MetricRecord.proportion(key, "predict_abstain_rate", int((smoothed == ABSTAIN).sum()), n, condition))
        samples_per_s = ctx.cost.forward_passes / ctx.cost.wall_time_s if ctx.cost.wall_time_s > 0 else None
        resolved = params.model_dump(mode="json")
        resolved["radii"] = list(grid)
        output.resolved = resolved
        output.artifacts |= {
            "certifier": "smoothing",
            "norm": "L2",
            "params": resolved,
            "curve": curve,
            "acr": acr,
            "noisy_samples": int(out["counts0"].sum() + out["counts"].sum()),  # CERTIFY's n0 + n per image
            "predict_samples": int(out["counts_predict"].sum()) if params.n_predict else 0,  # PREDICT's, drawn afresh
            "samples_per_s": samples_per_s,
            "max_certified_radius": ceiling,
            "examples": examples,
        }
        ctx.shared[key] = {"radius": radius, "prediction": prediction, "labels": labels}
        return output


class IBPParams(_Params):
    """Parameters of :class:`IntervalBoundPropagation`."""

    eps: Eps | None = Field(default=None, description="radius (default: the adversary's eps)")
    eps_fractions: Radii = Field(default=(0.25, 0.5, 0.75, 1.0), description="curve points as fractions of eps")
    fold_specification: bool = Field(default=True, description="fold z_y - z_j into the last linear layer")
    rounding: bool = Field(default=True, description="margins must clear a bound on the float model's own rounding")
    pgd_check_steps: int = Field(default=20, ge=0, le=10_000, description="PGD steps on verified examples (0: no check)")


class _BoxVerifier:
    """What IBP and CROWN share before a run: the radius they bound."""

    method: ClassVar[str]

    @classmethod
    def check_threat(cls, params: IBPParams | CROWNParams, adversary: Adversary | None) -> None:
        """Raises :class:`~robench.ConfigError` when no eps is given (``params.eps`` or the adversary's),
        or when a radius of the curve exceeds the width of the input bounds: its Linf box holds every
        input, as an adversary's eps may not (an eps of 1e308 ran, to fail on writing its records)."""
        eps = _box_eps(params, adversary, cls.method)
        bounds = adversary.bounds if adversary is not None else (0.0, 1.0)
        fraction = max(params.eps_fractions)  # the curve's points are f * eps, and eps itself
        radius = f"eps {eps:g}" if fraction <= 1 else f"eps {eps:g} x eps_fractions {fraction:g} = {fraction * eps:g}"
        problem = radius_box_error("Linf", max(eps, fraction * eps), bounds, None, f"{cls.method} {radius}")
        if problem is not None:
            raise ConfigError(f"{problem}: its box holds every input")


@register("certifier", "ibp", params=IBPParams)
class IntervalBoundPropagation(_BoxVerifier):
    """Interval bound propagation (Gowal et al. 2018): verified accuracy in the threat model's ball."""

    method = "IBP"

    @staticmethod
    def preflight(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: IBPParams, ctx: EvalContext
    ) -> None:
        """Before any section runs: the model traces, and every layer has an interval rule (one example bounded)."""
        graph = _traced(model, data, ctx, "IBP")
        x, y = (t.to(model.device) for t in data.load(slice(0, 1)))
        bounds = threat.adversary.bounds if threat.adversary is not None else (0.0, 1.0)
        with ieee_fp32():
            ibp.verdicts(graph, x, y, _box_eps(params, threat.adversary, "IBP"), bounds, params.fold_specification, params.rounding)

    @staticmethod
    def evaluate(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: IBPParams, ctx: EvalContext
    ) -> EvaluationOutput:
        """Verified accuracy at eps (and fractions of it), with a PGD consistency check."""
        graph = _traced(model, data, ctx, "IBP")

        def verify(x: torch.Tensor, y: torch.Tensor, eps: float, bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
            return ibp.verdicts(graph, x, y, eps, bounds, params.fold_specification, params.rounding)

        return _verify_section(model, data, threat, spec, params, ctx, "ibp", verify)


class CROWNParams(_Params):
    """Parameters of :class:`CROWNCertifier`."""

    eps: Eps | None = Field(default=None, description="radius (default: the adversary's eps)")
    eps_fractions: Radii = Field(default=(0.25, 0.5, 0.75, 1.0), description="curve points as fractions of eps")
    pgd_check_steps: int = Field(default=20, ge=0, le=10_000, description="PGD steps on verified examples (0: no check)")
    max_elements: int = Field(default=crown.DEFAULT_MAX_ELEMENTS, ge=1024, le=1 << 34, description="memory bound: numbers per backward pass (of the precision's dtype)")
    rounding: bool = Field(default=True, description="margins must clear a bound on the float model's own rounding")
    precision: Literal["float64", "model"] = Field(
        default="float64",
        description="arithmetic of the bounds: float64 (CROWN's own rounding far below the model's; about 2x the time on "
        "a CPU and twice the memory, unmeasured on GPUs, whose float64 speed varies by model) or the model's dtype "
        "(CROWN's own rounding then unbounded: not a guaranteed certificate, and the run says so)",
    )


@register("certifier", "crown", params=CROWNParams)
class CROWNCertifier(_BoxVerifier):
    """CROWN backward linear relaxation (Zhang et al. 2018) on ReLU networks with residual additions: verified accuracy in the ball."""

    method = "CROWN"

    @staticmethod
    def preflight(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: CROWNParams, ctx: EvalContext
    ) -> None:
        """Before any section runs: the model traces, and CROWN has a relaxation for every node."""
        crown.parse_graph(_traced(model, data, ctx, "CROWN"), data.load(slice(0, 1))[0].to(model.device))

    @staticmethod
    def evaluate(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: CROWNParams, ctx: EvalContext
    ) -> EvaluationOutput:
        """Verified accuracy at eps (and fractions of it), with a PGD consistency check."""
        graph = _traced(model, data, ctx, "CROWN")
        dtype = torch.float64 if params.precision == "float64" else None

        def verify(x: torch.Tensor, y: torch.Tensor, eps: float, bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
            return crown.verdicts(graph, x, y, eps, bounds, params.max_elements, params.rounding, dtype)

        return _verify_section(model, data, threat, spec, params, ctx, "crown", verify)


def _refuse_randomized(ctx: EvalContext, method: str) -> None:
    """IBP, CROWN and Lipschitz bound one function; a randomized model is another function at every
    pass (a model flipping its logits' sign on 2% of passes passed the trace check, IBP verified 7
    of 8 examples, and sampled passes misclassified them). Smoothing stays valid: its counts draw
    the model's randomness with the noise."""
    if ctx.shared.get("randomized"):
        raise ConfigError(
            f"certification: {method} bounds a deterministic model, and this one is randomized (two passes on one input "
            "differ, or --randomized was given); use randomized smoothing, or certify the model with its randomness off"
        )


def _traced(model: ModelHandle, data: Dataset, ctx: EvalContext, method: str) -> fx.GraphModule:
    """The model's graph, checked against the model on the first examples (see :func:`trace`)."""
    _refuse_randomized(ctx, method)
    return trace(model.module, data.load(slice(0, min(4, len(data))))[0].to(model.device))


def _box_eps(params: IBPParams | CROWNParams, adversary: Adversary | None, method: str) -> float:
    """The radius a box verifier bounds: ``params.eps``, else the adversary's."""
    eps = params.eps if params.eps is not None else (adversary.eps if adversary is not None else None)
    if eps is None:
        raise ConfigError(f"{method} needs an eps (params.eps or an adversary)")
    return eps


def _arithmetic(params: IBPParams | CROWNParams) -> str:
    """What the bounds computed in: the model's float32 (TF32 off), or float64 on its operands."""
    if getattr(params, "precision", "model") == "float64":
        return "float64 bounds on the model's own operands, TF32 off"
    return "float32, TF32 off"


def _verify_section(
    model: ModelHandle,
    data: Dataset,
    threat: ThreatModel,
    spec: EvaluationSpec,
    params: IBPParams | CROWNParams,
    ctx: EvalContext,
    certifier: str,
    verify: Callable[[torch.Tensor, torch.Tensor, float, tuple[float, float]], tuple[torch.Tensor, torch.Tensor]],
) -> EvaluationOutput:
    """Records of a box verifier (IBP, CROWN): ``verify(x, y, eps, bounds) -> (verified, verified
    without the rounding allowance)``, each ``(B,)`` bool."""
    key = f"certification/{spec.key}"
    ctx.cost.precision = IEEE_FP32  # its batches run in ieee_fp32 (no TF32), whatever the device's default
    method = certifier.upper()
    adversary = threat.adversary
    eps = _box_eps(params, adversary, method)
    norm = adversary.norm if adversary is not None else "Linf"
    bounds = adversary.bounds if adversary is not None else (0.0, 1.0)
    # 12 significant digits: a product's float noise (3 x 0.1 = 0.30000000000000004) is not recorded as a radius
    grid = tuple(sorted({*(float(f"{f * eps:.12g}") for f in params.eps_fractions if f > 0), eps}))

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        correct = model.predict_logits(x).argmax(dim=1) == y
        out = {"correct": correct, "labels": y}
        # the curve's start: verified at the point itself (the bound's rounding allowance can reject a correct example)
        verified, without = verify(x, y, 0.0, bounds)
        out["verified_at_zero"] = verified & correct
        out["rejected_at_zero"] = without & correct & ~verified
        for index, value in enumerate(grid):
            verified, without = verify(x, y, value, bounds)
            out[f"verified_{index}"] = verified & correct
            # correct examples whose margin bound was positive but not beyond the rounding allowance, at each radius
            out[f"rejected_{index}"] = without & correct & ~verified
        if params.pgd_check_steps:  # at every radius of the curve: at the threat's eps often nothing is verified
            for index, value in enumerate(grid):
                out[f"broken_{index}"] = _pgd_broken(model, x, y, out[f"verified_{index}"], norm, value, bounds, params.pgd_check_steps, generator)
        return out

    with ieee_fp32():  # bounds in TF32 need not contain the float32 model's outputs
        out = ctx.map_batches("verify", data, batch, model.counter, desc=f"verify {spec.key}")
    output = EvaluationOutput()
    condition: dict[str, ConditionValue] = {"certifier": spec.key, "norm": norm, "box": "Linf"}
    n = int(out["labels"].numel())
    output.records.append(MetricRecord.proportion(key, "clean_accuracy", int(out["correct"].sum()), n, condition))
    curve = add_curve(output, key, "eps", (0.0, *grid), lambda e: out["verified_at_zero"] if e == 0 else out[f"verified_{grid.index(e)}"], condition)
    at_eps = out[f"verified_{grid.index(eps)}"]
    if adversary is None or math.isclose(eps, adversary.eps, rel_tol=1e-12, abs_tol=0.0):
        output.records.append(
            MetricRecord.proportion(key, "certified_accuracy", int(at_eps.sum()), n, {**condition, "threat_norm": norm, "threat_eps": eps})
        )
        record_certified_outcomes(output, at_eps)
    else:  # params.eps: the curve's radius, not the threat model's (its record was labelled the threat's; attacks at eps "broke" it)
        output.warnings.append(
            f"{method} bounded eps = {eps:.4g} (params.eps), not the threat model's {norm} eps = {adversary.eps:.4g}: no certified "
            f"accuracy at the threat model's eps is recorded (the curve holds eps {eps:.4g}), and no attack is compared with it"
        )
    if params.pgd_check_steps:
        flags = torch.stack([out[f"verified_{i}"] for i in range(len(grid))])  # (radii, examples)
        output.checks.append(_pgd_consistency(certifier, params.pgd_check_steps, grid, [int(f.sum()) for f in flags],
                                              [int(out[f"broken_{i}"].sum()) for i in range(len(grid))],
                                              int(flags.any(dim=0).sum())))  # fmt: skip
    per_eps = [int(out["rejected_at_zero"].sum()), *(int(out[f"rejected_{i}"].sum()) for i in range(len(grid)))]
    rejected = per_eps[1 + grid.index(eps)]
    if any(per_eps):
        where = ", ".join(f"{k} at eps {e:.4g}" for e, k in zip((0.0, *grid), per_eps) if k)
        output.warnings.append(
            f"the allowance for the model's floating-point rounding rejected correct examples whose margin bounds were positive "
            f"({where}; a worst-case bound, far above typical rounding); with rounding: false they would count as verified, as "
            "they do for verifiers that ignore rounding"
        )
    if norm != "Linf":
        output.warnings.append(f"{norm} ball bounded by the enclosing Linf box: sound but loose")
    resolved = {**params.model_dump(mode="json"), "eps": eps, "norm": norm, "grid": list(grid), "arithmetic": _arithmetic(params)}
    output.resolved = resolved
    _warn_unproven(output, certifier, resolved)
    # a result, not a parameter: examples whose positive margin bound the rounding allowance rejected at eps
    output.artifacts = {"certifier": certifier, "norm": norm, "params": resolved, "curve": curve, "rejected_by_rounding_allowance": rejected,
                        "rejected_by_rounding_per_eps": {"eps": [0.0, *grid], "rejected": per_eps}}  # fmt: skip
    return output


def _warn_unproven(output: EvaluationOutput, certifier: str, resolved: dict[str, Any], estimated: list[str] | None = None) -> None:
    """A warning when the settings give up the certificate's guarantee (:func:`guarantees.unproven`)."""
    reason = unproven(certifier, resolved, estimated)
    if reason is not None:
        output.warnings.append(reason)


def _pgd_consistency(
    certifier: str, steps: int, grid: tuple[float, ...], verified: list[int], broken: list[int], distinct: int
) -> Check:
    """PGD must break no verified example at any radius of the curve: ``fail`` if it breaks one (the
    bounds are unsound), ``inconclusive`` when nothing is verified at any radius (0 of 0 cannot fail).

    ``verified`` and ``broken`` count examples per radius; ``distinct`` is the number of examples
    verified at some radius. The evidence's ``n`` is ``distinct``, and ``pairs`` the (example,
    radius) pairs attacked, ``sum(verified)``: one example verified at 5 radii is 5 pairs, not 5 examples.
    """
    per_eps = "; ".join(f"eps {e:.4g}: {b} of {v}" for e, v, b in zip(grid, verified, broken))
    pairs = sum(verified)
    evidence = {"eps": list(grid), "verified": verified, "broken": broken, "n": distinct, "pairs": pairs, "budget": {"pgd_steps": steps}}
    name = f"{certifier}_pgd_consistency"
    scope = f"{distinct} distinct example(s), {pairs} (example, radius) pair(s)"
    if sum(broken):
        return Check(name=name, status="fail", evidence=evidence,
                     message=f"PGD-{steps} broke {sum(broken)} verified (example, radius) pair(s) ({per_eps}): the bounds are unsound (a robench bug)")
    if not pairs:
        return Check(name=name, status="inconclusive", evidence=evidence,
                     message=f"inconclusive: no example is verified at any radius, so PGD-{steps} had nothing to break ({per_eps})")
    return Check(name=name, status="pass", evidence=evidence,
                 message=f"PGD-{steps} broke none of the verified examples ({scope}; {per_eps})")


def _pgd_broken(model, x, y, mask, norm, eps, bounds, steps, generator) -> torch.Tensor:
    from robench.attacks.pgd import PGD

    broken = torch.zeros_like(mask)
    if bool(mask.any()):
        attack = PGD(steps=steps, restarts=1, loss="margin")
        result = attack(model.module, x[mask], y[mask], norm=norm, eps=eps, bounds=bounds, generator=generator)
        broken[mask] = result.success
    return broken


class LipschitzParams(_Params):
    """Parameters of :class:`LipschitzCertifier`."""

    method: Literal["bound", "power"] = Field(default="bound", description="conv norms: guaranteed bound or power iteration")
    power_iterations: int = Field(default=100, ge=1, le=100_000)
    power_margin: float = Field(default=0.05, ge=0, le=10, description="relative margin on power-iteration estimates")
    radii: Radii = Field(default=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0), description="L2 radii of the curve")


@register("certifier", "lipschitz", params=LipschitzParams)
class LipschitzCertifier:
    """Global Lipschitz bound (product of layer norms): certified L2 radius margin / (sqrt(2) L)."""

    @staticmethod
    def preflight(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: LipschitzParams, ctx: EvalContext
    ) -> None:
        """Before any section runs: the radii fit the input box, the model traces, and every layer has a
        norm rule (no norm computed)."""
        _check_l2_radii(params.radii, data, threat, "Lipschitz")
        _refuse_randomized(ctx, "Lipschitz")
        example = data.load(slice(0, 1))[0].to(model.device)
        lipschitz.lipschitz_bound(model.module, example, params.method, check_only=True)

    @staticmethod
    def evaluate(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: LipschitzParams, ctx: EvalContext
    ) -> EvaluationOutput:
        """Certified accuracy at L2 radii and at the threat model's ball; checks the bound on gradients."""
        key = f"certification/{spec.key}"
        _refuse_randomized(ctx, "Lipschitz")
        ctx.cost.precision = IEEE_FP32  # the bound and the batches run in ieee_fp32 (no TF32)
        example = data.load(slice(0, 1))[0].to(model.device)
        with ieee_fp32():  # no TF32: the bound and the margins are those of the float32 model
            constant, layer_norms = lipschitz.lipschitz_bound(
                model.module, example, params.method, params.power_iterations, params.power_margin
            )
        graph = trace(model.module, data.load(slice(0, min(4, len(data))))[0].to(model.device))
        estimated = lipschitz.power_estimated(graph) if params.method == "power" else []
        bounds = threat.adversary.bounds if threat.adversary is not None else (0.0, 1.0)

        def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            with torch.enable_grad():
                inputs = x.clone().requires_grad_(True)
                logits = model.module(inputs)
                check_logits(logits, None)
                margin = lipschitz.logit_margin(logits, y)
                (gradient,) = torch.autograd.grad(margin.sum(), inputs)
            logits = logits.detach()
            return {
                "radius": lipschitz.rounded_l2_radius(graph, x, logits, y, constant, bounds),
                "correct": logits.argmax(dim=1) == y,
                "prediction": logits.argmax(dim=1),
                "gradient_norm": gradient.flatten(1).norm(dim=1),
                "labels": y,
            }

        with ieee_fp32():
            out = ctx.map_batches("certify", data, batch, model.counter, desc=f"lipschitz {spec.key}")
        radius, correct = out["radius"].double(), out["correct"]
        output = EvaluationOutput()
        condition: dict[str, ConditionValue] = {"certifier": spec.key, "norm": "L2", "method": params.method}
        curve = add_curve(output, key, "radius", params.radii, lambda r: correct & (radius > 0) & (radius >= r), condition)
        headline_flags = add_headline_l2(output, key, threat, radius, correct & (radius > 0), math.prod(data.input_shape), condition)
        if headline_flags is not None:
            record_certified_outcomes(output, headline_flags)
        acr = add_acr(output, key, radius, correct, condition)
        output.records.append(MetricRecord(evaluation=key, name="lipschitz_bound", value=constant, condition=condition, unit="l2->l2"))
        largest = float(out["gradient_norm"].max()) if out["gradient_norm"].numel() else 0.0
        bound = math.sqrt(2.0) * constant
        ctx.add_check(
            output, "lipschitz_vs_gradients", largest <= bound * (1 + 1e-4),
            f"largest margin-gradient norm {largest:.4g} vs sqrt(2) L = {bound:.4g}",
            warn_only=bool(estimated), largest_gradient_norm=largest, sqrt2_lipschitz=bound,
            n=int(out["gradient_norm"].numel()), budget={"gradients_per_example": 1},
        )  # fmt: skip
        resolved = params.model_dump(mode="json")
        output.resolved = resolved
        _warn_unproven(output, "lipschitz", resolved, estimated)
        examples = [{"label": int(label), "prediction": int(p), "radius": float(r) if c else 0.0}
                    for label, p, r, c in zip(out["labels"].tolist(), out["prediction"].tolist(), radius.tolist(), correct.tolist())]  # fmt: skip
        add_table_points(output, key, curve, examples, condition)
        output.artifacts |= {
            "certifier": "lipschitz", "norm": "L2", "params": resolved, "curve": curve, "acr": acr,
            "lipschitz_bound": constant, "layer_norms": layer_norms, "power_estimated_layers": estimated, "examples": examples,
        }  # fmt: skip
        return output
