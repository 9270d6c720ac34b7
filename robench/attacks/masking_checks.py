"""Gradient-masking sanity checks (Athalye et al. 2018; Carlini et al. 2019, Sec. 5).

Each check is a pure function from measured numbers to a pass/warn :class:`~robench.results.Check`
with its evidence. The ``gradient_masking`` entry measures those numbers on the first
``n_examples`` examples (FGSM, PGD with the margin loss at several radii and at a radius covering
the whole input box, Square, input gradients) and also compares the other attacks of the run
(which the runner runs before it, wherever it is declared), with each other and, per example,
with its own PGD (``declared_at_least_check_pgd``).
Proportions are ``k / n`` in float64, and a value exactly at a threshold passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from robench.attacks.eot import DEFAULT_EOT_SAMPLES
from robench.attacks.losses import cross_entropy, margin
from robench.attacks.norms import get_norm
from robench.attacks.pgd import FGSM, PGD
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench._errors import ModelError
from robench.models.wrapper import NOT_DIFFERENTIABLE, ModelHandle, NonFiniteGradient
from robench.registry import register
from robench.results import Check, MetricRecord
from robench.threat_model import EvaluationSpec, Schema, ThreatModel


_SLACK = 1e-9
"""Comparisons of proportions allow for rounding (k/n as floats): exactly at a threshold passes."""


def _check(name: str, ok: bool, passed: str, failed: str, **evidence: Any) -> Check:
    return Check(name=name, status="pass" if ok else "warn", message=passed if ok else failed, evidence=evidence)


def check_iterative_vs_single_step(iterative: float, single_step: float, tolerance: float = 0.01, **evidence: Any) -> Check:
    """An iterative attack must be at least as strong (robust accuracy no higher) as a single step."""
    return _check(
        "iterative_at_least_single_step", iterative <= single_step + tolerance + _SLACK,
        f"iterative robust accuracy {iterative:.2%} <= single-step {single_step:.2%}",
        f"single-step attack stronger than iterative ({single_step:.2%} < {iterative:.2%}): gradient masking suspected",
        iterative=iterative, single_step=single_step, tolerance=tolerance, **evidence,
    )  # fmt: skip


def check_white_vs_black_box(white_box: float, black_box: float, tolerance: float = 0.01, **evidence: Any) -> Check:
    """A white-box attack must be at least as strong as a black-box one at the same budget."""
    return _check(
        "white_box_at_least_black_box", white_box <= black_box + tolerance + _SLACK,
        f"white-box robust accuracy {white_box:.2%} <= black-box {black_box:.2%}",
        f"black-box attack stronger than white-box ({black_box:.2%} < {white_box:.2%}): gradient masking suspected",
        white_box=white_box, black_box=black_box, tolerance=tolerance, **evidence,
    )  # fmt: skip


def check_monotone_in_eps(eps: Sequence[float], accuracy: Sequence[float], tolerance: float = 0.01) -> Check:
    """Robust accuracy must not increase with the radius."""
    rises = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1) if accuracy[i + 1] > accuracy[i] + tolerance + _SLACK]
    first = rises[0] if rises else (0.0, 0.0)
    return _check(
        "non_increasing_in_eps", not rises,
        "robust accuracy does not increase with eps",
        f"robust accuracy increases between eps {first[0]:g} and {first[1]:g}: attack not converging",
        eps=list(eps), robust_accuracy=list(accuracy), tolerance=tolerance, increases=[list(r) for r in rises],
    )  # fmt: skip


def check_large_eps(eps: float, accuracy: float, threshold: float = 0.05) -> Check:
    """At a radius that covers the whole input box an attack must reach (near) zero accuracy."""
    return _check(
        "near_zero_at_large_eps", accuracy <= threshold + _SLACK,
        f"robust accuracy {accuracy:.2%} at eps {eps:g} (whole input box)",
        f"robust accuracy {accuracy:.2%} > {threshold:.0%} at eps {eps:g} that covers the whole input box: gradient masking suspected",
        eps=eps, robust_accuracy=accuracy, threshold=threshold,
    )  # fmt: skip


def check_gradients(n: int, zero_margin: int, zero_ce: int, non_finite: int, tolerance: float = 0.01) -> Check:
    """Input gradients of the margin loss must be finite and nonzero (CE zeros are reported, not judged).

    CE gradients underflow to exactly zero on very confident examples of healthy models, so the
    verdict uses the margin ``max_{j!=y} z_j - z_y``, whose gradient vanishes only where the model is flat.
    """
    ok = non_finite == 0 and zero_margin <= tolerance * n
    return _check(
        "gradients_nonzero_finite", ok,
        f"input gradients finite and nonzero ({zero_margin}/{n} zero margin gradients)",
        f"{zero_margin}/{n} zero and {non_finite}/{n} non-finite input gradients: gradient masking suspected",
        n=n, zero_margin_gradients=zero_margin, zero_ce_gradients=zero_ce, non_finite_gradients=non_finite, tolerance=tolerance,
    )  # fmt: skip


def large_radius(norm: str, bounds: tuple[float, float], input_numel: int) -> float:
    """A radius whose ball around any input contains the whole input box."""
    width = bounds[1] - bounds[0]
    return {"Linf": width, "L2": width * math.sqrt(input_numel), "L1": width * input_numel}[norm]


def input_gradient_stats(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example flags: zero margin gradient, zero CE gradient, any non-finite gradient."""
    flags = {}
    for name, loss in (("margin", margin), ("ce", cross_entropy)):
        x_in = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            try:
                grad = torch.autograd.grad(loss(model(x_in), y).sum(), x_in)[0].reshape(len(x), -1)
            except ModelError as exc:
                if str(exc) != NOT_DIFFERENTIABLE:
                    raise
                grad = torch.zeros((len(x), x[0].numel()), device=x.device)  # no gradient at all: masked
        flags[f"zero_{name}"] = grad.abs().sum(dim=1) == 0
        flags[f"non_finite_{name}"] = ~torch.isfinite(grad).all(dim=1)
    return {"zero_margin": flags["zero_margin"], "zero_ce": flags["zero_ce"],
            "non_finite": flags["non_finite_margin"] | flags["non_finite_ce"]}  # fmt: skip


class GradientMaskingParams(Schema):
    """Parameters of the ``gradient_masking`` entry."""

    n_examples: int = Field(default=200, gt=0, description="first examples used for the checks")
    steps: int = Field(default=20, gt=0, le=10_000, description="PGD steps")
    eps_factors: tuple[float, ...] = Field(default=(0.25, 0.5, 1.0, 2.0, 4.0), description="PGD radii as multiples of eps")
    square_queries: int = Field(default=1000, ge=0, description="Square queries (0: skip the black-box comparison)")
    tolerance: float = Field(default=0.01, ge=0, le=1, description="allowed accuracy difference in comparisons")
    large_eps_threshold: float = Field(default=0.05, ge=0, le=1)


@register("attack", "gradient_masking", params=GradientMaskingParams, tags=("white-box", "check"))
class GradientMaskingChecks:
    """Gradient-masking sanity checks: single vs iterative, white vs black box, eps sweep, gradients."""

    @staticmethod
    def evaluate(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: GradientMaskingParams, ctx: EvalContext
    ) -> EvaluationOutput:
        """Measure on a subset, then compare; every check is a pass/warn record with its evidence."""
        from robench.attacks.square import Square

        adversary = threat.adversary
        assert adversary is not None
        norm, eps, bounds = get_norm(adversary.norm), adversary.eps, tuple(adversary.bounds)
        subset = data.subset(params.n_examples)
        numel = int(math.prod(data.input_shape))
        radii = sorted({eps * f for f in params.eps_factors} | {eps})  # eps itself: the comparisons' reference
        large = large_radius(norm.name, bounds, numel)
        step = 2.5 / params.steps
        randomized = bool(ctx.shared.get("randomized"))
        eot = DEFAULT_EOT_SAMPLES if randomized else 1
        use_square = params.square_queries > 0 and norm.name in ("Linf", "L2") and bounds == (0.0, 1.0)

        def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            module = model.module
            correct = model.predict_logits(x).argmax(dim=1) == y
            out = {"correct": correct, **input_gradient_stats(module, x, y)}

            def survives(attack: Any, radius: float) -> torch.Tensor:
                try:
                    return correct & ~attack(module, x, y, norm=norm, eps=radius, bounds=bounds, generator=generator).success
                except NonFiniteGradient:
                    # non-finite gradients stop the gradient attacks: the very masking these checks
                    # report (gradients_nonzero_finite warns); they count as not breaking anything
                    return correct.clone()
                except ModelError as exc:  # no gradient at all (x > 0.5, rounding): the same, reported
                    if str(exc) != NOT_DIFFERENTIABLE:
                        raise
                    return correct.clone()

            out["fgsm"] = survives(FGSM(), eps)
            for i, radius in enumerate([*radii, large]):
                # the margin loss: CE gradients vanish on saturated softmax outputs (scaled logits,
                # defensive distillation), which would blind the curve exactly where masking hides
                pgd = PGD(steps=params.steps, rel_step_size=step, loss="margin", eot_samples=eot)
                out[f"pgd_{i}"] = survives(pgd.for_randomized_model() if randomized else pgd, radius)  # no example exempted by one pass
            if use_square:
                square = Square(n_queries=params.square_queries)
                square = square.for_randomized_model() if randomized else square
                out["square"] = correct & ~square(module, x, y, norm=norm, eps=eps, bounds=bounds, generator=generator).success
            return out

        out = ctx.map_batches("masking", subset, batch, model.counter, desc=f"{spec.key}")
        n = len(subset)
        key = f"attacks/{spec.key}"
        output = EvaluationOutput(resolved=params.model_dump(mode="json"))

        def accuracy(name: str) -> float:
            return int(out[name].sum()) / n if n else 0.0  # k / n in float64, not a float32 mean

        pgd_curve = [accuracy(f"pgd_{i}") for i in range(len(radii))]
        large_accuracy = accuracy(f"pgd_{len(radii)}")
        checks = output.checks
        reference = pgd_curve[radii.index(eps)]
        checks.append(check_iterative_vs_single_step(reference, accuracy("fgsm"), params.tolerance, n=n, source="this check"))
        if use_square:
            checks.append(check_white_vs_black_box(reference, accuracy("square"), params.tolerance, n=n, source="this check"))
        checks.append(check_monotone_in_eps(radii, pgd_curve, params.tolerance))
        checks.append(check_large_eps(large, large_accuracy, params.large_eps_threshold))
        checks.append(check_gradients(n, int(out["zero_margin"].sum()), int(out["zero_ce"].sum()), int(out["non_finite"].sum())))
        if not use_square:
            output.warnings.append(
                "white_box_at_least_black_box not checked: the Square comparison runs for Linf and L2 threat models with "
                "bounds [0, 1] and square_queries > 0"
            )
        checks += declared_attack_checks(ctx.shared.get("attacks:summary", {}), params.tolerance)
        if adversary.goal == "untargeted":
            checks += declared_vs_check_pgd(ctx.shared.get("attacks:worst_case"), out[f"pgd_{radii.index(eps)}"], params.tolerance)
        else:  # targeted attacks succeed less often by design: no comparison with this untargeted PGD
            output.warnings.append("declared_at_least_check_pgd not checked: the threat model is targeted, this check's PGD untargeted")
        warnings = ctx.shared.get("attacks:autoattack_warnings")
        if warnings is not None:
            checks.append(
                _check("autoattack_warnings", not warnings, "AutoAttack raised no warning",
                       "AutoAttack warned: " + (warnings[0] if warnings else ""), warnings=list(dict.fromkeys(warnings)))
            )  # fmt: skip
        condition = {"attack": spec.key, "norm": norm.name, "goal": "untargeted"}
        for i, radius in enumerate(radii):
            count = int(out[f"pgd_{i}"].sum())
            output.records.append(MetricRecord.proportion(key, "pgd_robust_accuracy_at_eps", count, n, {**condition, "eps": radius}))
        output.records.append(MetricRecord.proportion(key, "fgsm_robust_accuracy", int(out["fgsm"].sum()), n, {**condition, "eps": eps}))
        if use_square:
            output.records.append(MetricRecord.proportion(key, "square_robust_accuracy", int(out["square"].sum()), n, {**condition, "eps": eps}))
        output.artifacts = {
            "kind": "masking",
            "curve": {"eps": radii, "robust_accuracy": pgd_curve},
            "large_eps": {"eps": large, "robust_accuracy": large_accuracy},
            "n_examples": n,
        }
        return output


def declared_vs_check_pgd(worst: dict[str, Any] | None, check_robust: torch.Tensor, tolerance: float = 0.01) -> list[Check]:
    """The declared attacks (their per-example worst case so far) must be no weaker than this
    entry's own PGD (margin loss) on the same first examples. Declared attacks that are weaker
    (e.g. CE-based PGD on a model whose softmax saturates) have been fooled by the gradients.

    Paired, as McNemar's test: of the examples exactly one side breaks, the check's PGD must not
    break significantly more (one-sided binomial test at 1%), by more than ``tolerance`` of n.
    """
    from scipy.stats import binomtest

    n = int(check_robust.numel())
    if worst is None or n == 0 or worst["rate"].numel() < n:
        return []
    declared_robust = worst["rate"][:n].cpu() >= 0.5
    own = check_robust.cpu()
    only_check = int((declared_robust & ~own).sum())
    only_declared = int((~declared_robust & own).sum())
    excess = (only_check - only_declared) / n
    p_value = binomtest(only_check, only_check + only_declared, 0.5, alternative="greater").pvalue if only_check else 1.0
    attacks = "+".join(worst["attacks"])
    declared_rate, own_rate = int(declared_robust.sum()) / n, int(own.sum()) / n
    return [_check(
        "declared_at_least_check_pgd", not (excess > tolerance + _SLACK and p_value < 0.01),
        f"declared attacks ({attacks}) robust accuracy {declared_rate:.2%} vs this check's PGD (margin loss) {own_rate:.2%} on "
        f"the first {n} examples",
        f"this check's PGD (margin loss) breaks {only_check} examples the declared attacks ({attacks}) did not, they break "
        f"{only_declared} it did not ({own_rate:.2%} vs {declared_rate:.2%} on the first {n}, one-sided p = {p_value:.2g}): "
        "the declared attacks are weak on this model (masked or saturated gradients suspected)",
        n=n, declared=declared_rate, check_pgd=own_rate, only_check_fooled=only_check, only_declared_fooled=only_declared,
        p_value=p_value, tolerance=tolerance, source=f"declared {attacks} vs this check",
    )]  # fmt: skip


def declared_attack_checks(summary: dict[str, dict[str, Any]], tolerance: float = 0.01) -> list[Check]:
    """Compare the attacks already run in this section: iterative vs FGSM, white-box vs black-box, per example too.

    Args:
        summary: ``ctx.shared["attacks:summary"]``: attack key -> robust accuracy, eps, kind, per-example flags.
        tolerance: Allowed difference in robust accuracy.
    """
    checks: list[Check] = []
    bounded = {k: v for k, v in summary.items() if v.get("eps") is not None}
    single = {k: v for k, v in bounded.items() if v.get("name", k) == "fgsm"}  # by registry name, whatever the id
    white = {k: v for k, v in bounded.items() if v.get("kind") == "white-box" and k not in single}
    black = {k: v for k, v in bounded.items() if v.get("kind") in ("score-based", "decision-based")}
    if white:
        best_key = min(white, key=lambda k: white[k]["robust_accuracy"])
        best = white[best_key]
        for key, other in single.items():
            if other["eps"] == best["eps"] and other["n"] == best["n"]:
                only = int((best["robust"] & ~other["robust"]).sum())
                checks.append(check_iterative_vs_single_step(
                    best["robust_accuracy"], other["robust_accuracy"], tolerance,
                    n=best["n"], source=f"declared attacks {best_key} vs {key}", examples_only_single_step_fooled=only))  # fmt: skip
        for key, other in black.items():
            if other["eps"] == best["eps"] and other["n"] == best["n"]:
                only = int((best["robust"] & ~other["robust"]).sum())
                checks.append(check_white_vs_black_box(
                    best["robust_accuracy"], other["robust_accuracy"], tolerance,
                    n=best["n"], source=f"declared attacks {best_key} vs {key}", examples_only_black_box_fooled=only))  # fmt: skip
    return checks
