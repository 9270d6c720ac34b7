"""Gradient-masking checks: a quantising (zero-gradient) toy model trips them, a normal model passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.attacks.masking_checks import (
    MIN_ELIGIBLE,
    MIN_PGD_STEPS,
    MIN_SQUARE_QUERIES,
    check_gradients,
    check_iterative_vs_single_step,
    check_large_eps,
    check_monotone_in_eps,
    check_white_vs_black_box,
    declared_attack_checks,
)
from robench.models import load_model
from robench.threat_model import whole_box_radius

from .conftest import make_threat, run_section

# the smallest n and budgets at which a passing check is a pass, not inconclusive (MIN_ELIGIBLE...)
PARAMS = {"n_examples": 40, "steps": 10, "eps_factors": [0.5, 1.0, 2.0], "square_queries": 1000}


class Quantize(nn.Module):
    """Rounds pixels to 5 levels: piecewise constant, so every input gradient is exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x * 4) / 4


def _statuses(output) -> dict[str, str]:
    return {c.name: c.status for c in output.checks}


def test_pure_checks_pass_and_warn():
    assert check_iterative_vs_single_step(0.3, 0.4, eligible=100).status == "pass"
    assert check_iterative_vs_single_step(0.5, 0.4, eligible=100).status == "warn"
    assert check_white_vs_black_box(0.3, 0.3, eligible=100).status == "pass"
    assert check_white_vs_black_box(0.6, 0.3, eligible=100).status == "warn"
    assert check_monotone_in_eps([0.1, 0.2, 0.3], [0.5, 0.4, 0.4], eligible=100).status == "pass"
    warned = check_monotone_in_eps([0.1, 0.2, 0.3], [0.5, 0.2, 0.4], eligible=100)
    assert warned.status == "warn" and warned.evidence["increases"] == [[0.2, 0.3]]
    assert check_large_eps(1.0, 0.0, eligible=100).status == "pass" and check_large_eps(1.0, 0.3, eligible=100).status == "warn"
    assert check_gradients(100, 0, 50, 0).status == "pass"  # CE underflow alone is not masking
    assert check_gradients(100, 20, 20, 0).status == "warn" and check_gradients(100, 0, 0, 1).status == "warn"
    assert whole_box_radius("L2", (0.0, 1.0), 784) == pytest.approx(28.0)


def _repeat(flags: list[bool], times: int = 10) -> torch.Tensor:
    return torch.tensor(flags * times)


def test_declared_attacks_compared():
    robust = _repeat([True, False, True, True])
    summary = {
        "fgsm": {"robust_accuracy": 0.5, "n": 40, "n_correct": 40, "eps": 0.1, "kind": "white-box",
                 "robust": _repeat([True, False, True, False])},
        "pgd": {"robust_accuracy": 0.75, "n": 40, "n_correct": 40, "eps": 0.1, "kind": "white-box", "robust": robust,
                "params": {"steps": 40, "restarts": 1}},
        "square": {"robust_accuracy": 0.25, "n": 40, "n_correct": 40, "eps": 0.1, "kind": "score-based", "name": "square",
                   "robust": _repeat([True, False, False, False]), "params": {"n_queries": 5000, "restarts": 1}},
    }  # fmt: skip
    checks = {c.name: c for c in declared_attack_checks(summary)}
    # named apart from the entry's own comparisons (the same name for two checks read as one counted twice)
    assert set(checks) == {"declared_iterative_at_least_single_step", "declared_white_box_at_least_black_box"}
    assert checks["declared_iterative_at_least_single_step"].status == "warn"
    assert checks["declared_iterative_at_least_single_step"].evidence["examples_only_single_step_fooled"] == 10
    assert checks["declared_white_box_at_least_black_box"].status == "warn"
    assert checks["declared_white_box_at_least_black_box"].evidence["budget"] == {"pgd": {"steps": 40, "restarts": 1},
                                                                         "square": {"n_queries": 5000, "restarts": 1}}


def test_normal_model_passes(handle, mnist_test):
    threat = make_threat([{"name": "gradient_masking", "params": PARAMS}], eps=0.1)
    output, _ = run_section(handle, mnist_test, threat)
    statuses = _statuses(output)
    assert set(statuses.values()) == {"pass"}, output.checks
    assert {"iterative_at_least_single_step", "white_box_at_least_black_box", "non_increasing_in_eps",
            "near_zero_at_large_eps", "gradients_nonzero_finite"} <= set(statuses)  # fmt: skip


def test_masked_model_trips_checks(trained_net, mnist_test):
    handle = load_model(nn.Sequential(Quantize(), trained_net), device="cpu")
    threat = make_threat([{"name": "gradient_masking", "params": PARAMS}], eps=0.1)
    output, _ = run_section(handle, mnist_test, threat)
    statuses = _statuses(output)
    assert statuses["gradients_nonzero_finite"] == "warn"
    assert statuses["near_zero_at_large_eps"] == "warn"
    assert statuses["white_box_at_least_black_box"] == "warn"
    evidence = next(c for c in output.checks if c.name == "gradients_nonzero_finite").evidence
    assert evidence["zero_margin_gradients"] == evidence["n"] == 40


def test_reference_radius_is_eps_whatever_the_factors(handle, mnist_test):
    """FGSM and Square at eps are compared with PGD at eps, even when eps_factors leaves 1.0 out
    (with factors 0.25 and 0.5 the comparison with PGD at eps/2 raised a false warning)."""
    params = {**PARAMS, "eps_factors": [0.25, 0.5]}
    output, _ = run_section(handle, mnist_test, make_threat([{"name": "gradient_masking", "params": params}], eps=0.1))
    at = {r.condition["eps"]: r.value for r in output.records if r.name == "pgd_robust_accuracy_at_eps"}
    assert sorted(at) == pytest.approx([0.025, 0.05, 0.1])
    single = next(c for c in output.checks if c.name == "iterative_at_least_single_step")
    assert _statuses(output)["iterative_at_least_single_step"] == "pass", single


def test_the_sweep_stops_at_the_radius_that_holds_the_whole_box(handle, mnist_test):
    """eps 0.3 x 4 = 1.2 is no larger a ball than 1.0 in [0, 1]: the curve showed a point at 1.2
    while the large-eps check spoke of eps 1."""
    params = {**PARAMS, "n_examples": 20, "steps": 2, "eps_factors": [1.0, 2.0, 4.0], "square_queries": 0}
    output, _ = run_section(handle, mnist_test, make_threat([{"name": "gradient_masking", "params": params}], eps=0.3))
    assert output.artifacts["curve"]["eps"] == pytest.approx([0.3, 0.6, 1.0]) and output.artifacts["large_eps"]["eps"] == 1.0


class _Scaled(nn.Module):
    """``net(x) * 1e4``: the same decisions, a saturated softmax (defensive distillation's effect)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x) * 1e4


def test_saturated_softmax_fools_a_declared_ce_attack_and_the_check_says_so(trained_net, mnist_test):
    """CE gradients vanish on most examples: declared CE-PGD (and the check's curve, before) stayed at
    clean accuracy while margin-loss PGD breaks the model as it breaks the unscaled one."""
    from robench.context import EvalContext

    handle = load_model(_Scaled(trained_net), device="cpu")
    entries = [{"name": "pgd", "params": {"steps": 10, "loss": "ce"}},
               {"name": "gradient_masking", "params": {**PARAMS, "n_examples": 60, "square_queries": 0}}]  # fmt: skip
    threat = make_threat(entries, eps=0.1)
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    data = mnist_test.subset(60)
    _, ctx = run_section(handle, data, threat, index=0, ctx=ctx)
    output, _ = run_section(handle, data, threat, index=1, ctx=ctx)
    check = next(c for c in output.checks if c.name == "declared_at_least_check_pgd")
    assert check.status == "warn" and check.evidence["only_check_fooled"] > 10, check
    curve = [r.value for r in output.records if r.name == "pgd_robust_accuracy_at_eps"]
    assert curve[-1] < 0.5  # the curve is no longer blind
    assert any("white_box_at_least_black_box not checked" in w for w in output.warnings)


def test_thresholds_hold_exactly_at_the_boundary():
    assert check_large_eps(1.0, 10 / 200, eligible=200).status == "pass"  # 5.00% is not above 5%
    assert check_iterative_vs_single_step(51 / 100, 50 / 100, tolerance=0.01, eligible=100).status == "pass"
    assert check_white_vs_black_box(0.58, 0.57, tolerance=0.01, eligible=100).status == "pass"


def test_declared_fgsm_is_recognised_by_its_registry_name_not_its_id():
    summary = {
        "one_step": {"robust_accuracy": 0.5, "n": 4, "n_correct": 4, "eps": 0.1, "kind": "white-box", "name": "fgsm",
                     "robust": torch.tensor([True, False, True, False])},
        "pgd": {"robust_accuracy": 0.75, "n": 4, "n_correct": 4, "eps": 0.1, "kind": "white-box", "name": "pgd",
                "robust": torch.tensor([True, False, True, True])},
    }  # fmt: skip
    (check,) = declared_attack_checks(summary)
    assert check.status == "warn" and check.evidence["source"] == "declared attacks pgd vs one_step" and check.evidence["n"] == 4


def test_targeted_threat_models_skip_the_comparison_with_the_untargeted_check(handle, mnist_test):
    """A targeted attack succeeds less often by design; comparing it with the check's untargeted PGD
    warned 'masked gradients suspected' on a healthy model."""
    from robench.context import EvalContext

    entries = [{"name": "pgd", "params": {"steps": 5}}, {"name": "gradient_masking", "params": {**PARAMS, "n_examples": 40}}]
    threat = make_threat(entries, eps=0.1, goal="targeted")
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    data = mnist_test.subset(40)
    _, ctx = run_section(handle, data, threat, index=0, ctx=ctx)
    output, _ = run_section(handle, data, threat, index=1, ctx=ctx)
    assert "declared_at_least_check_pgd" not in {c.name for c in output.checks}
    assert any("declared_at_least_check_pgd not checked: the threat model is targeted" in w for w in output.warnings)


def test_a_randomized_models_checks_attack_every_example(trained_net, mnist_test):
    """The checks' EOT PGD left the examples one noisy pass got wrong at x (counted robust when a
    later pass was right): a false large-eps masking warning on a noisy but unmasked model."""
    from robench.context import EvalContext

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = trained_net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) + 3 * torch.randn(len(x), 10)

    threat = make_threat([{"name": "gradient_masking", "params": {"n_examples": 60, "steps": 5, "square_queries": 0}}], eps=0.1)
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    output, _ = run_section(load_model(Noisy(), device="cpu"), mnist_test, threat, ctx=ctx)
    assert _statuses(output)["near_zero_at_large_eps"] == "pass", output.checks


def test_nan_gradients_are_reported_by_the_checks_not_raised(trained_net, mnist_test):
    """Its FGSM and PGD raise on NaN gradients: the section that exists to report them failed."""
    from .conftest import NaNGradientNet

    threat = make_threat([{"name": "gradient_masking", "params": PARAMS}], eps=0.1)
    output, _ = run_section(load_model(NaNGradientNet(trained_net), device="cpu"), mnist_test, threat)
    assert _statuses(output)["gradients_nonzero_finite"] == "warn"


def test_a_model_without_gradients_is_reported_by_the_checks_not_raised(trained_net, mnist_test):
    """A thresholded input (x > 0.5) leaves the logits without a gradient: the section that exists
    to report masking ended the run as an error instead (a review)."""

    class Threshold(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return (x > 0.5).float()

    handle = load_model(nn.Sequential(Threshold(), trained_net), device="cpu")
    threat = make_threat([{"name": "gradient_masking", "params": PARAMS}], eps=0.1)
    output, _ = run_section(handle, mnist_test, threat)
    statuses = _statuses(output)
    assert statuses["gradients_nonzero_finite"] == "warn"
    evidence = next(c for c in output.checks if c.name == "gradients_nonzero_finite").evidence
    assert evidence["zero_margin_gradients"] == evidence["n"] == 40


def test_a_check_that_could_not_fail_is_inconclusive_not_a_pass():
    """0 of 0 eligible examples, fewer than MIN_ELIGIBLE, or too small an attack budget: the check
    could not have warned, so it does not pass (it passed, at 0 of 0 too); a warning stands."""
    zero = check_iterative_vs_single_step(0.0, 0.0, eligible=0)
    assert zero.status == "inconclusive" and "0 of 0" in zero.message and zero.evidence["eligible"] == 0
    for check in (check_white_vs_black_box(0.0, 0.0, eligible=0), check_monotone_in_eps([0.1, 0.2], [0.0, 0.0], eligible=0),
                  check_large_eps(1.0, 0.0, eligible=0), check_gradients(0, 0, 0, 0)):  # fmt: skip
        assert check.status == "inconclusive", check
    few = MIN_ELIGIBLE - 1
    assert check_large_eps(1.0, 0.0, eligible=few).status == "inconclusive"
    assert check_large_eps(1.0, 0.0, eligible=MIN_ELIGIBLE).status == "pass"
    assert check_gradients(few, 0, 0, 0).status == "inconclusive" and check_gradients(MIN_ELIGIBLE, 0, 0, 0).status == "pass"
    assert check_iterative_vs_single_step(0.3, 0.4, eligible=100, steps=MIN_PGD_STEPS - 1).status == "inconclusive"
    assert check_iterative_vs_single_step(0.3, 0.4, eligible=100, steps=MIN_PGD_STEPS).status == "pass"
    weak = check_white_vs_black_box(0.3, 0.3, eligible=100, queries=MIN_SQUARE_QUERIES - 1)
    assert weak.status == "inconclusive" and weak.evidence["inconclusive_because"] == [f"black-box queries {MIN_SQUARE_QUERIES - 1} (fewer than {MIN_SQUARE_QUERIES} cannot show it)"]
    assert check_white_vs_black_box(0.3, 0.3, eligible=100, queries=MIN_SQUARE_QUERIES).status == "pass"
    # a problem seen with few examples or a small budget is a finding: it warns
    assert check_white_vs_black_box(0.6, 0.3, eligible=5, queries=10).status == "warn"
    assert check_gradients(5, 5, 5, 0).status == "warn"


def test_declared_comparisons_at_small_n_or_budget_are_inconclusive():
    summary = {
        "pgd": {"robust_accuracy": 0.5, "n": 10, "n_correct": 8, "eps": 0.1, "kind": "white-box", "name": "pgd",
                "robust": torch.tensor([True] * 5 + [False] * 5), "params": {"steps": 40}},
        "square": {"robust_accuracy": 0.5, "n": 10, "n_correct": 8, "eps": 0.1, "kind": "score-based", "name": "square",
                   "robust": torch.tensor([True] * 5 + [False] * 5), "params": {"n_queries": 5000}},
    }  # fmt: skip
    (check,) = declared_attack_checks(summary)
    assert check.status == "inconclusive" and check.evidence["eligible"] == 8, check
    big = {k: {**v, "n": 100, "n_correct": 100, "robust": v["robust"].repeat(10)} for k, v in summary.items()}
    assert [c.status for c in declared_attack_checks(big)] == ["pass"]
    big["square"]["params"] = {"n_queries": 100}
    (weak,) = declared_attack_checks(big)
    assert weak.status == "inconclusive" and "black-box queries 100" in weak.message


def test_no_clean_correct_example_makes_every_comparison_inconclusive(handle, mnist_test):
    """Labels the model never predicts: every robust accuracy is 0 of 0 clean-correct examples, and
    every comparison of them passed although none could fail."""
    from robench.data.base import ArrayDataset

    x, _ = mnist_test.load(slice(0, 40))
    with torch.no_grad():
        wrong = (handle.predict_logits(x).argmax(dim=1) + 1) % 10
    data = ArrayDataset(x, wrong, 10)
    output, _ = run_section(handle, data, make_threat([{"name": "gradient_masking", "params": PARAMS}], eps=0.1))
    statuses = _statuses(output)
    comparisons = ("iterative_at_least_single_step", "white_box_at_least_black_box", "non_increasing_in_eps", "near_zero_at_large_eps")
    assert {statuses[name] for name in comparisons} == {"inconclusive"}, output.checks
    assert statuses["gradients_nonzero_finite"] == "pass"  # every example has a gradient to check
    check = next(c for c in output.checks if c.name == "near_zero_at_large_eps")
    assert check.evidence["n"] == 40 and check.evidence["eligible"] == 0 and check.evidence["budget"]["pgd_steps"] == 10


def test_convergence_compares_half_the_steps_with_all_of_them() -> None:
    """Carlini et al. 2019: an iterative attack that still gains in its second half of steps has
    not converged, and more steps may lower robust accuracy further."""
    from robench.attacks.masking_checks import check_converged

    from scipy.stats import binomtest

    assert check_converged(0.62, 0.61, 0.01, only_full=1, only_half=0, eligible=100, steps=20).status == "pass"
    still = check_converged(0.70, 0.61, 0.01, only_full=9, only_half=0, eligible=100, steps=20)
    assert still.status == "warn" and "more steps or restarts may lower it further" in still.message
    assert still.evidence["p_value"] == pytest.approx(binomtest(9, 9, 0.5, alternative="greater").pvalue)
    chance = check_converged(0.64, 0.61, 0.01, only_full=6, only_half=3, eligible=100, steps=20)  # 3 more of 100: p = 0.25
    assert chance.status == "pass"
    assert check_converged(0.62, 0.61, 0.01, only_full=1, only_half=0, eligible=100, steps=4).status == "inconclusive"  # too few steps
    assert check_converged(0.62, 0.61, 0.01, only_full=1, only_half=0, eligible=5, steps=20).status == "inconclusive"
    assert check_converged(0.90, 0.61, 0.01, only_full=29, only_half=0, eligible=5, steps=4).status == "warn"  # a warning stands


def test_the_entry_runs_the_convergence_check(handle, mnist_test):
    output, _ = run_section(handle, mnist_test, make_threat([{"name": "gradient_masking", "params": PARAMS}], eps=0.1))
    check = next(c for c in output.checks if c.name == "iterative_converged")
    at_eps = next(r.value for r in output.records if r.name == "pgd_robust_accuracy_at_eps" and r.condition["eps"] == pytest.approx(0.1))
    assert check.evidence["full_steps"] == pytest.approx(at_eps) and check.evidence["budget"]["half_run_steps"] == 5
    assert check.status in ("pass", "warn") and 0 <= check.evidence["half_steps"] <= 1


def test_declared_converged_reads_the_attacks_own_run():
    """Carlini et al.: the reported attack must have converged. From the declared PGD's own curve: the
    last tenth of its steps and its last restart must each break no more than the tolerance of n."""
    from robench.attacks.convergence import curve
    from robench.attacks.masking_checks import check_declared_converged

    n, steps, restarts = 200, 50, 2
    correct = torch.ones(n, dtype=torch.bool)

    def art(first_fooled):
        first = torch.tensor(first_fooled, dtype=torch.float64)
        return curve(first, correct, first.isinf(), budget=steps * restarts, unit="gradient steps", restart_every=steps)

    early = [3.0] * 80 + [float("inf")] * 120  # all broken in the first steps of the first restart
    late_tail = [3.0] * 80 + [96.0] * 3 + [float("inf")] * 117  # 3 > 2 = 1% of 200 in the last 5 steps
    late_restart = [3.0] * 80 + [60.0] * 3 + [float("inf")] * 117  # 3 broken by the second restart, not in its tail
    within = [3.0] * 80 + [96.0] * 2 + [float("inf")] * 118
    statuses = {name: check_declared_converged("pgd", art(a), 0.01, eligible=n, steps=steps)
                for name, a in {"early": early, "late_tail": late_tail, "late_restart": late_restart, "within": within}.items()}
    assert {k: c.status for k, c in statuses.items()} == {"early": "pass", "late_tail": "warn", "late_restart": "warn", "within": "pass"}
    assert statuses["late_tail"].evidence["broken_in_tail"] == 3 and statuses["late_tail"].evidence["tail_steps"] == 5
    assert statuses["late_restart"].evidence["broken_by_last_restart"] == 3 and statuses["late_restart"].evidence["broken_in_tail"] == 0
    assert "more steps would likely lower" in statuses["late_tail"].message and "restarts" not in statuses["late_tail"].message.split(": ", 2)[-1]
    assert "its last restart (a fresh random start) still broke new examples" in statuses["late_restart"].message
    assert "more steps" not in statuses["late_restart"].message
    assert "each restart's last break at step 3, 46" in statuses["late_tail"].message  # 96 is step 46 of restart 2
    assert "each restart's last break at step 3, 10" in statuses["late_restart"].message
    assert "each restart's last break at step 3, –" in statuses["early"].message
    # the last restart is judged net of its last steps' breaks: the message gives that count, or it
    # read 'its last restart broke 3 (... 1% of n = 2 ...): converged within the tolerance'
    both = check_declared_converged("pgd", art([3.0] * 80 + [60.0] * 2 + [96.0] * 1 + [float("inf")] * 117), 0.01, eligible=n, steps=steps)
    assert both.status == "pass" and both.evidence["broken_by_last_restart"] == 3 and both.evidence["broken_in_tail"] == 1
    assert "its last restart broke 3, 2 of them before its last 5 steps" in both.message
    assert "its last restart broke 3, each" in statuses["late_restart"].message  # none in its last steps: nothing to net out
    few = check_declared_converged("pgd", art(early), 0.01, eligible=10, steps=steps)
    short = check_declared_converged("pgd", art(early), 0.01, eligible=n, steps=5)
    assert few.status == short.status == "inconclusive"


def test_declared_pgd_convergence_is_checked_in_the_section(handle, mnist_test):
    threat = make_threat([{"name": "pgd", "params": {"steps": 10, "restarts": 2}},
                          {"name": "gradient_masking", "params": {**PARAMS, "square_queries": 0}}], eps=0.1)  # fmt: skip
    from robench.context import EvalContext

    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    pgd, ctx = run_section(handle, mnist_test.subset(60), threat, 0, ctx=ctx)
    output, _ = run_section(handle, mnist_test.subset(60), threat, 1, ctx=ctx)
    check = next(c for c in output.checks if c.name == "declared_converged")
    art = pgd.artifacts["convergence"]
    assert check.evidence["n"] == 60 and check.evidence["source"] == "declared attack pgd"
    from robench.attacks.convergence import robust_after

    assert check.evidence["broken_by_last_restart"] == robust_after(art, 10) - robust_after(art, 20)
    assert check.evidence["broken_in_tail"] == robust_after(art, 19) - robust_after(art, 20)
