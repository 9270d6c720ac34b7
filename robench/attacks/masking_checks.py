"""Gradient-masking sanity checks (Athalye et al. 2018; Carlini et al. 2019, Sec. 5).

Each check is a pure function from measured numbers to a pass/warn/inconclusive
:class:`~robench.results.Check` with its evidence, which states the examples (``n``, and the
``eligible`` clean-correct ones a comparison can tell apart) and the attack budgets (``budget``:
steps, restarts, queries) it rests on. The ``gradient_masking`` entry measures those numbers on the first
``n_examples`` examples (FGSM, PGD with the margin loss at several radii and at a radius covering
the whole input box, the same PGD with half its steps to see whether it converged, Square, input
gradients) and also compares the other attacks of the run
(which the runner runs before it, wherever it is declared), with each other and, per example,
with its own PGD (``declared_at_least_check_pgd``).
Proportions are ``k / n`` in float64, and a value exactly at a threshold passes.

A check that did not find the problem but could not have found it is ``inconclusive``, not a pass
(:data:`MIN_ELIGIBLE`, :data:`MIN_PGD_STEPS`, :data:`MIN_SQUARE_QUERIES`). A check that found it
warns whatever the n or budget: the n or budget was then enough to show it, and the evidence
states both for the reader to weigh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from robench._errors import ModelError
from robench.attacks.eot import DEFAULT_EOT_SAMPLES
from robench.attacks.losses import cross_entropy, margin
from robench.attacks.norms import get_norm
from robench.attacks.pgd import FGSM, PGD
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.models.wrapper import NOT_DIFFERENTIABLE, ModelHandle, NonFiniteGradient
from robench.registry import register
from robench.results import Check, MetricRecord
from robench.stats import sign_test
from robench.threat_model import EvaluationSpec, Schema, ThreatModel, whole_box_radius

_SLACK = 1e-9
"""Comparisons of proportions allow for rounding (k/n as floats): exactly at a threshold passes."""


MIN_ELIGIBLE = 20
"""Fewer eligible examples than this make a check that finds nothing inconclusive.

Eligible: the clean-correct examples for the comparisons of robust accuracies (an example the
model gets wrong clean is non-robust under every attack, so it cannot tell two attacks apart, and
with none of them every comparison is 0 of 0), every example for the gradient check. Below 20 one
example is more than 5% of n, the large-eps threshold and five times the comparisons' tolerance
(1%), so a verdict turns on a single example; and finding nothing in n examples bounds the share of
examples showing the problem only to about 3 / n (the 95% rule of three: 15% at 20), which is no
evidence against masking on a sizeable share of them. With fewer than 7 the paired test of
``declared_at_least_check_pgd`` cannot reach p < 0.01 at all (0.5^6 > 0.01): it could not fail."""

MIN_PGD_STEPS = 10
"""An iterative attack with fewer steps makes a comparison it should win inconclusive when it
does not lose. The masking signatures these checks look for (a single step beating the iterative
attack; this check's PGD breaking examples the declared attacks did not) need an attack that is
iterative in earnest: at the default step 2.5 eps / steps, fewer than 10 steps is little more than
a few FGSM steps (Madry et al. 2018 train with 7 and evaluate with 20 to 100; this entry's
default is 20). A weak attack that still shows the signature is a finding, and warns."""

MIN_SQUARE_QUERIES = 1000
"""A black-box attack with fewer queries makes the white-box vs black-box comparison inconclusive
when the white-box attack wins: Square's success keeps rising over thousands of queries on robust
models (Andriushchenko et al. 2020; AutoAttack runs 5,000), and with a few hundred it is too weak
to beat even a masked white-box attack, so the comparison could not fail. 1,000 is this entry's
default budget."""


def too_few(eligible: int, what: str = "clean-correct examples") -> list[str]:
    """Why ``eligible`` examples cannot show a problem (``[]``: enough; see :data:`MIN_ELIGIBLE`)."""
    if eligible <= 0:
        return [f"no {what} to compare (0 of 0)"]
    if eligible < MIN_ELIGIBLE:
        return [f"only {eligible} {what} (fewer than {MIN_ELIGIBLE} cannot show it)"]
    return []


def _small_budget(value: int | None, minimum: int, what: str) -> list[str]:
    return [f"{what} {value} (fewer than {minimum} cannot show it)"] if value is not None and value < minimum else []


def _check(name: str, ok: bool, passed: str, failed: str, unable: Sequence[str] = (), **evidence: Any) -> Check:
    """``warn`` when not ``ok``; else ``inconclusive`` when any reason in ``unable`` says the check
    could not have warned, else ``pass``."""
    if not ok:
        return Check(name=name, status="warn", message=failed, evidence=evidence)
    if unable:
        message = f"inconclusive: {'; '.join(unable)}; observed: {passed}"
        return Check(name=name, status="inconclusive", message=message, evidence={**evidence, "inconclusive_because": list(unable)})
    return Check(name=name, status="pass", message=passed, evidence=evidence)


def check_iterative_vs_single_step(
    iterative: float, single_step: float, tolerance: float = 0.01, *, eligible: int, steps: int | None = None,
    name: str = "iterative_at_least_single_step", **evidence: Any,
) -> Check:
    """An iterative attack must be at least as strong (robust accuracy no higher) as a single step.
    ``name``: the check's name (the declared attacks' comparison has its own, ``declared_...``).

    Inconclusive instead of a pass with fewer than :data:`MIN_ELIGIBLE` clean-correct examples
    (``eligible``) or an iterative attack of fewer than :data:`MIN_PGD_STEPS` ``steps`` (``None``:
    not known, not judged).
    """
    return _check(
        name, iterative <= single_step + tolerance + _SLACK,
        f"iterative robust accuracy {iterative:.2%} <= single-step {single_step:.2%}",
        f"single-step attack stronger than iterative ({single_step:.2%} < {iterative:.2%}): gradient masking suspected",
        too_few(eligible) + _small_budget(steps, MIN_PGD_STEPS, "iterative attack steps"),
        iterative=iterative, single_step=single_step, tolerance=tolerance, eligible=eligible, **evidence,
    )  # fmt: skip


def check_converged(
    half: float, full: float, tolerance: float = 0.01, *, only_full: int, only_half: int, eligible: int, steps: int | None = None,
    **evidence: Any,
) -> Check:
    """An attack that has converged gains (almost) nothing from its second half of steps (Carlini et
    al. 2019, "verify iterative attacks converge"): PGD run for half the steps (the same path length,
    twice the step) must leave robust accuracy no more than ``tolerance`` above the full run's, unless
    the difference is within chance: it warns when the full run broke ``only_full`` examples the half
    run did not, against ``only_half`` the other way, with a one-sided sign test p < 0.01 (as
    :func:`declared_vs_check_pgd`). Otherwise more steps or restarts may lower it further.

    Inconclusive instead of a pass with fewer than :data:`MIN_ELIGIBLE` clean-correct examples or a
    full run of fewer than :data:`MIN_PGD_STEPS` ``steps``.
    """
    p_value = sign_test(only_full, only_half)
    n = evidence.get("n")
    detectable = ""
    if isinstance(n, int) and n > 0:  # the smallest gain that can warn: beyond the tolerance, and p < 0.01 if all one way
        least = max(_least_significant(0.01), math.floor((tolerance + _SLACK) * n) + 1)
        detectable = f"; at n = {n} it warns only for a gain of at least {least} examples ({least / n:.1%})"
    return _check(
        "iterative_converged", not (half > full + tolerance + _SLACK and p_value < 0.01),
        f"this check's PGD: robust accuracy after a separate run of half the steps (twice the step) {half:.2%} vs the full run "
        f"{full:.2%}: the full run gained no more than the tolerance or chance allows (one-sided p = {p_value:.2g}){detectable}",
        f"still improving: robust accuracy fell from {half:.2%} after half the steps to {full:.2%} after all "
        f"(one-sided p = {p_value:.2g}); "
        "more steps or restarts may lower it further",
        too_few(eligible) + _small_budget(steps, MIN_PGD_STEPS, "iterative attack steps"),
        half_steps=half, full_steps=full, only_full_broke=only_full, only_half_broke=only_half, p_value=p_value,
        tolerance=tolerance, eligible=eligible, **evidence,
    )  # fmt: skip


ATTACK_STRENGTH_CHECKS = ("declared_converged",)
"""Checks that judge a declared attack's strength (did it converge?), not gradient masking: the
checklist reads them in its strong-attacks item, not among the masking checks."""


def _least_significant(level: float) -> int:
    """The fewest discordant examples, all one way, whose one-sided sign test is below ``level`` (7 at 0.01)."""
    k = 1
    while sign_test(k, 0) >= level:
        k += 1
    return k


def check_declared_converged(key: str, art: dict[str, Any], tolerance: float = 0.01, *, eligible: int, steps: int | None) -> Check:
    """A declared iterative attack must have stopped making progress by the end of its budget
    (Carlini et al. 2019: verify that the attack converged), read off its own run (``art``: the
    ``convergence`` artifact, robench.attacks.convergence): the last tenth of its steps (of its last
    restart, where it restarts) must break no more than ``tolerance`` of n examples, and its last
    restart no more than that either. Otherwise more steps or restarts would likely lower its robust
    accuracy. Inconclusive below :data:`MIN_ELIGIBLE` clean-correct examples or :data:`MIN_PGD_STEPS` steps."""
    from robench.attacks.convergence import progress

    n, budget, every = int(art["n"]), int(art["budget"]), art.get("restart_every")
    facts = progress(art)
    tail_steps, tail, last_restart = facts["tail_steps"], facts["broken_in_tail"], facts["broken_by_last_restart"]
    allowed = (tolerance + _SLACK) * n
    parts = [f"its last {tail_steps} step{'s' if tail_steps != 1 else ''} broke {tail} of {n} examples"]
    if last_restart is not None:  # judged net of its last steps' breaks (those are the steps' finding)
        net = f", {last_restart - tail} of them before its last {tail_steps} step{'s' if tail_steps != 1 else ''}" if last_restart and tail else ""
        parts.append(f"its last restart broke {last_restart}{net}")
    if facts["last_breaks"]:
        parts.append("each restart's last break at step " + ", ".join("–" if s is None else str(s) for s in facts["last_breaks"]))
    observed = f"{key}: " + ", ".join(parts) + f" (a count against the tolerance, {tolerance:.0%} of n = {allowed:.3g}, not a test)"
    steps_limit = tail > allowed
    # its last restart's breaks before its last steps (those are the steps' finding): a fresh start found them
    restarts_limit = last_restart is not None and last_restart - tail > allowed
    ok = not (steps_limit or restarts_limit)
    why = []
    if steps_limit:
        why.append("still breaking examples in its last steps: more steps would likely lower its robust accuracy")
    if restarts_limit:
        why.append("its last restart (a fresh random start) still broke new examples: more restarts would likely lower it")
    return _check(
        "declared_converged", ok, observed + ": converged within the tolerance",
        observed + ": " + "; ".join(why),
        too_few(eligible) + _small_budget(steps, MIN_PGD_STEPS, "iterative attack steps"),
        n=n, eligible=eligible, tail_steps=tail_steps, broken_in_tail=tail, broken_by_last_restart=last_restart,
        tolerance=tolerance, budget={key: {"steps": every or budget, "restarts": budget // (every or budget)}}, source=f"declared attack {key}",
    )  # fmt: skip


def check_white_vs_black_box(
    white_box: float, black_box: float, tolerance: float = 0.01, *, eligible: int, queries: int | None = None,
    name: str = "white_box_at_least_black_box", **evidence: Any,
) -> Check:
    """A white-box attack must be at least as strong as a black-box one at the same budget.
    ``name``: the check's name (the declared attacks' comparison has its own, ``declared_...``).

    Inconclusive instead of a pass with fewer than :data:`MIN_ELIGIBLE` clean-correct examples or
    a Square attack of fewer than :data:`MIN_SQUARE_QUERIES` ``queries`` (``None``: not a Square
    attack or not known, not judged).
    """
    return _check(
        name, white_box <= black_box + tolerance + _SLACK,
        f"white-box robust accuracy {white_box:.2%} <= black-box {black_box:.2%}",
        f"black-box attack stronger than white-box ({black_box:.2%} < {white_box:.2%}): gradient masking suspected",
        too_few(eligible) + _small_budget(queries, MIN_SQUARE_QUERIES, "black-box queries"),
        white_box=white_box, black_box=black_box, tolerance=tolerance, eligible=eligible, **evidence,
    )  # fmt: skip


def check_monotone_in_eps(
    eps: Sequence[float], accuracy: Sequence[float], tolerance: float = 0.01, *, eligible: int, **evidence: Any
) -> Check:
    """Robust accuracy must not increase with the radius (inconclusive instead of a pass with fewer
    than :data:`MIN_ELIGIBLE` clean-correct examples: at 0 every point is 0%)."""
    rises = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1) if accuracy[i + 1] > accuracy[i] + tolerance + _SLACK]
    first = rises[0] if rises else (0.0, 0.0)
    return _check(
        "non_increasing_in_eps", not rises,
        "robust accuracy does not increase with eps",
        f"robust accuracy increases between eps {first[0]:g} and {first[1]:g}: attack not converging",
        too_few(eligible),
        eps=list(eps), robust_accuracy=list(accuracy), tolerance=tolerance, increases=[list(r) for r in rises],
        eligible=eligible, **evidence,
    )  # fmt: skip


def check_large_eps(eps: float, accuracy: float, threshold: float = 0.05, *, eligible: int, **evidence: Any) -> Check:
    """At a radius that covers the whole input box an attack must reach (near) zero accuracy
    (inconclusive instead of a pass with fewer than :data:`MIN_ELIGIBLE` clean-correct examples:
    with none, 0% is certain whatever the attack does)."""
    return _check(
        "near_zero_at_large_eps", accuracy <= threshold + _SLACK,
        f"robust accuracy {accuracy:.2%} at eps {eps:g} (whole input box)",
        f"robust accuracy {accuracy:.2%} > {threshold:.0%} at eps {eps:g} that covers the whole input box: gradient masking suspected",
        too_few(eligible),
        eps=eps, robust_accuracy=accuracy, threshold=threshold, eligible=eligible, **evidence,
    )  # fmt: skip


def check_gradients(n: int, zero_margin: int, zero_ce: int, non_finite: int, tolerance: float = 0.01, **evidence: Any) -> Check:
    """Input gradients of the margin loss must be finite and nonzero (CE zeros are reported, not judged).

    CE gradients underflow to exactly zero on very confident examples of healthy models, so the
    verdict uses the margin ``max_{j!=y} z_j - z_y``, whose gradient vanishes only where the model is flat.
    Every example is eligible; fewer than :data:`MIN_ELIGIBLE` make a pass inconclusive.
    """
    ok = non_finite == 0 and zero_margin <= tolerance * n
    return _check(
        "gradients_nonzero_finite", ok,
        f"input gradients finite and nonzero ({zero_margin}/{n} zero margin gradients)",
        f"{zero_margin}/{n} zero and {non_finite}/{n} non-finite input gradients: gradient masking suspected",
        too_few(n, "examples"),
        n=n, zero_margin_gradients=zero_margin, zero_ce_gradients=zero_ce, non_finite_gradients=non_finite, tolerance=tolerance,
        eligible=n, **evidence,
    )  # fmt: skip


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
        norm, eps, bounds = get_norm(adversary.norm), adversary.eps, adversary.bounds
        subset = data.subset(params.n_examples)
        numel = int(math.prod(data.input_shape))
        large = whole_box_radius(norm.name, bounds, numel)
        # eps itself: the comparisons' reference; past the whole-box radius a ball grows no more (MNIST's
        # 4 x 0.3 = 1.2 is the box of width 1), so the sweep stops there
        radii = sorted({min(eps * f, large) for f in params.eps_factors} | {eps})
        step = 2.5 / params.steps
        half_steps = max(1, params.steps // 2)  # the same path length in half the steps: did the full run still gain?
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
            short = PGD(steps=half_steps, rel_step_size=2.5 / half_steps, loss="margin", eot_samples=eot)
            out["pgd_half"] = survives(short.for_randomized_model() if randomized else short, eps)
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
        eligible = int(out["correct"].sum())  # only clean-correct examples can tell attacks apart
        pgd_budget = {"pgd_steps": params.steps, "pgd_restarts": 1, "pgd_random_start": True, "pgd_rel_step_size": step,
                      "pgd_step_size_at_eps": step * eps, "pgd_loss": "margin", "pgd_eot_samples": eot}  # fmt: skip
        square_budget = {"square_queries": params.square_queries, "square_restarts": 1}
        checks.append(check_iterative_vs_single_step(
            reference, accuracy("fgsm"), params.tolerance, eligible=eligible, steps=params.steps, n=n, source="this check",
            budget={**pgd_budget, "fgsm_steps": 1}))  # fmt: skip
        if use_square:
            checks.append(check_white_vs_black_box(
                reference, accuracy("square"), params.tolerance, eligible=eligible, queries=params.square_queries, n=n,
                source="this check", budget={**pgd_budget, **square_budget}))  # fmt: skip
        full_run, half_run = out[f"pgd_{radii.index(eps)}"], out["pgd_half"]  # per example: still robust
        checks.append(check_converged(accuracy("pgd_half"), reference, params.tolerance, eligible=eligible, steps=params.steps, n=n,
                                      only_full=int((half_run & ~full_run).sum()), only_half=int((full_run & ~half_run).sum()),
                                      budget={**pgd_budget, "half_run_steps": half_steps}))  # fmt: skip
        checks.append(check_monotone_in_eps(radii, pgd_curve, params.tolerance, eligible=eligible, n=n, budget=pgd_budget))
        checks.append(check_large_eps(large, large_accuracy, params.large_eps_threshold, eligible=eligible, n=n, budget=pgd_budget))
        checks.append(check_gradients(n, int(out["zero_margin"].sum()), int(out["zero_ce"].sum()), int(out["non_finite"].sum()),
                                      budget={"gradients_per_example": 1}))  # fmt: skip
        if not use_square:
            output.warnings.append(
                "white_box_at_least_black_box not checked: the Square comparison runs for Linf and L2 threat models with "
                "bounds [0, 1] and square_queries > 0"
            )
        checks += declared_attack_checks(ctx.shared.get("attacks:summary", {}), params.tolerance)
        if adversary.goal == "untargeted":
            checks += declared_vs_check_pgd(ctx.shared.get("attacks:worst_case"), out[f"pgd_{radii.index(eps)}"], params.tolerance,
                                            eligible=eligible, steps=params.steps, budget=pgd_budget)  # fmt: skip
        else:  # targeted attacks succeed less often by design: no comparison with this untargeted PGD
            output.warnings.append("declared_at_least_check_pgd not checked: the threat model is targeted, this check's PGD untargeted")
        # AutoAttack's own warnings are its evaluation's check (autoattack_own_checks, with its n): not counted twice here
        condition = {"attack": spec.key, "norm": norm.name, "goal": "untargeted"}
        for i, radius in enumerate(radii):
            count = int(out[f"pgd_{i}"].sum())
            output.records.append(MetricRecord.proportion(key, "pgd_robust_accuracy_at_eps", count, n, {**condition, "eps": radius}))
        output.records.append(MetricRecord.proportion(key, "fgsm_robust_accuracy", int(out["fgsm"].sum()), n, {**condition, "eps": eps}))
        if use_square:
            output.records.append(MetricRecord.proportion(key, "square_robust_accuracy", int(out["square"].sum()), n, {**condition, "eps": eps}))
        pgd = PGD(steps=params.steps, rel_step_size=step, loss="margin", eot_samples=eot)
        parts = {"pgd": (pgd.for_randomized_model() if randomized else pgd).procedure(eps), "fgsm": FGSM().procedure(eps)}
        if use_square:
            square = Square(n_queries=params.square_queries)
            parts["square"] = (square.for_randomized_model() if randomized else square).procedure(eps)
        output.artifacts = {
            "kind": "masking",
            "curve": {"eps": radii, "robust_accuracy": pgd_curve},
            "large_eps": {"eps": large, "robust_accuracy": large_accuracy},
            "n_examples": n,
            # the PGD's step at eps (at another radius it scales with it); per attack the rest
            "procedure": {
                "step_size": parts["pgd"]["step_size"],
                "step_size_rule": f"PGD {parts['pgd']['step_size_rule']} (the radius at each point of the sweep); FGSM one step of eps"
                                  + ("; Square random square updates" if use_square else ""),
                **{key: {name: facts[key] for name, facts in parts.items()} for key in ("random_start", "restarts", "early_stopping")},
                "early_stopping_rule": "; ".join(f"{name}: {facts['early_stopping_rule']}" for name, facts in parts.items()),
            },
        }  # fmt: skip
        return output


def declared_vs_check_pgd(
    worst: dict[str, Any] | None, check_robust: torch.Tensor, tolerance: float = 0.01, *, eligible: int,
    steps: int | None = None, budget: dict[str, Any] | None = None,
) -> list[Check]:
    """The declared attacks (their per-example worst case so far) must be no weaker than this
    entry's own PGD (margin loss) on the same first examples. Declared attacks that are weaker
    (e.g. CE-based PGD on a model whose softmax saturates) have been fooled by the gradients.

    Paired, as McNemar's test: of the examples exactly one side breaks, the check's PGD must not
    break significantly more (one-sided binomial test at 1%), by more than ``tolerance`` of n.
    Inconclusive instead of a pass with fewer than :data:`MIN_ELIGIBLE` clean-correct examples
    (``eligible``) or a check PGD of fewer than :data:`MIN_PGD_STEPS` ``steps``.
    """
    n = int(check_robust.numel())
    if worst is None or n == 0 or worst["rate"].numel() < n:
        return []
    declared_robust = worst["rate"][:n].cpu() >= 0.5
    own = check_robust.cpu()
    only_check = int((declared_robust & ~own).sum())
    only_declared = int((~declared_robust & own).sum())
    excess = (only_check - only_declared) / n
    p_value = sign_test(only_check, only_declared)
    attacks = "+".join(worst["attacks"])
    declared_rate, own_rate = int(declared_robust.sum()) / n, int(own.sum()) / n
    return [_check(
        "declared_at_least_check_pgd", not (excess > tolerance + _SLACK and p_value < 0.01),
        f"declared attacks ({attacks}) robust accuracy {declared_rate:.2%} vs this check's PGD (margin loss) {own_rate:.2%} on "
        f"the first {n} examples",
        f"this check's PGD (margin loss) breaks {only_check} examples the declared attacks ({attacks}) did not, they break "
        f"{only_declared} it did not ({own_rate:.2%} vs {declared_rate:.2%} on the first {n}, one-sided p = {p_value:.2g}): "
        "the declared attacks are weak on this model (masked or saturated gradients suspected)",
        too_few(eligible) + _small_budget(steps, MIN_PGD_STEPS, "check PGD steps"),
        n=n, eligible=eligible, budget={**(budget or {}), "declared_attacks": list(worst["attacks"])}, declared=declared_rate, check_pgd=own_rate, only_check_fooled=only_check, only_declared_fooled=only_declared,
        p_value=p_value, tolerance=tolerance, source=f"declared {attacks} vs this check",
    )]  # fmt: skip


def declared_attack_checks(summary: dict[str, dict[str, Any]], tolerance: float = 0.01) -> list[Check]:
    """Compare the attacks already run in this section: iterative vs FGSM, white-box vs black-box, per example too.

    Args:
        summary: ``ctx.shared["attacks:summary"]``: attack key -> robust accuracy, n, clean-correct count,
            eps, kind, per-example flags, resolved parameters.
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
                    best["robust_accuracy"], other["robust_accuracy"], tolerance, eligible=_eligible(best, other),
                    steps=_iterations(best), n=best["n"], source=f"declared attacks {best_key} vs {key}",
                    name="declared_iterative_at_least_single_step",
                    budget={best_key: _budget(best), key: _budget(other)}, examples_only_single_step_fooled=only))  # fmt: skip
        for key, other in black.items():
            if other["eps"] == best["eps"] and other["n"] == best["n"]:
                only = int((best["robust"] & ~other["robust"]).sum())
                checks.append(check_white_vs_black_box(
                    best["robust_accuracy"], other["robust_accuracy"], tolerance, eligible=_eligible(best, other),
                    queries=_square_queries(other), n=best["n"], source=f"declared attacks {best_key} vs {key}",
                    name="declared_white_box_at_least_black_box",
                    budget={best_key: _budget(best), key: _budget(other)}, examples_only_black_box_fooled=only))  # fmt: skip
    for key, entry in bounded.items():
        art = entry.get("convergence")
        if isinstance(art, dict) and art.get("n"):
            checks.append(check_declared_converged(key, art, tolerance, eligible=int(entry["n_correct"]), steps=_iterations(entry)))
    return checks


# What states an attack's budget, as its resolved parameters name it.
_BUDGET_KEYS = ("version", "steps", "n_iter", "restarts", "n_restarts", "n_queries", "square_queries", "random_start",
                "step_size", "rel_step_size", "eot_samples", "eot_iter", "early_stopping")  # fmt: skip
AUTOATTACK_DEFAULT_ITERATIONS = 100  # pyautoattack's APGD / FAB n_iter when the entry leaves it unset


def _budget(entry: dict[str, Any]) -> dict[str, Any]:
    params = entry.get("params") or {}
    return {k: params[k] for k in _BUDGET_KEYS if params.get(k) is not None}


def _eligible(*entries: dict[str, Any]) -> int:
    """Clean-correct examples both attacks ran on (the fewer of the two: a randomized model's
    clean passes may differ)."""
    return min(int(e["n_correct"]) for e in entries)


def _iterations(entry: dict[str, Any]) -> int | None:
    """Steps of a declared iterative attack (``None``: not known)."""
    params = entry.get("params") or {}
    if entry.get("name") == "autoattack":
        return int(params.get("n_iter") or AUTOATTACK_DEFAULT_ITERATIONS)
    return int(params["steps"]) if isinstance(params.get("steps"), int) else None


def _square_queries(entry: dict[str, Any]) -> int | None:
    """Queries of a declared Square attack (``None`` for other black-box attacks: not judged)."""
    params = entry.get("params") or {}
    return int(params["n_queries"]) if entry.get("name") == "square" and isinstance(params.get("n_queries"), int) else None
