"""Gradient-masking checks: a quantising (zero-gradient) toy model trips them, a normal model passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.attacks.masking_checks import (
    check_gradients,
    check_iterative_vs_single_step,
    check_large_eps,
    check_monotone_in_eps,
    check_white_vs_black_box,
    declared_attack_checks,
    large_radius,
)
from robench.models import load_model

from .conftest import make_threat, run_section

PARAMS = {"n_examples": 20, "steps": 5, "eps_factors": [0.5, 1.0, 2.0], "square_queries": 60}


class Quantize(nn.Module):
    """Rounds pixels to 5 levels: piecewise constant, so every input gradient is exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x * 4) / 4


def _statuses(output) -> dict[str, str]:
    return {c.name: c.status for c in output.checks}


def test_pure_checks_pass_and_warn():
    assert check_iterative_vs_single_step(0.3, 0.4).status == "pass"
    assert check_iterative_vs_single_step(0.5, 0.4).status == "warn"
    assert check_white_vs_black_box(0.3, 0.3).status == "pass"
    assert check_white_vs_black_box(0.6, 0.3).status == "warn"
    assert check_monotone_in_eps([0.1, 0.2, 0.3], [0.5, 0.4, 0.4]).status == "pass"
    warned = check_monotone_in_eps([0.1, 0.2, 0.3], [0.5, 0.2, 0.4])
    assert warned.status == "warn" and warned.evidence["increases"] == [[0.2, 0.3]]
    assert check_large_eps(1.0, 0.0).status == "pass" and check_large_eps(1.0, 0.3).status == "warn"
    assert check_gradients(100, 0, 50, 0).status == "pass"  # CE underflow alone is not masking
    assert check_gradients(100, 20, 20, 0).status == "warn" and check_gradients(100, 0, 0, 1).status == "warn"
    assert large_radius("L2", (0.0, 1.0), 784) == pytest.approx(28.0)


def test_declared_attacks_compared():
    robust = torch.tensor([True, False, True, True])
    summary = {
        "fgsm": {"robust_accuracy": 0.5, "n": 4, "eps": 0.1, "kind": "white-box", "robust": torch.tensor([True, False, True, False])},
        "pgd": {"robust_accuracy": 0.75, "n": 4, "eps": 0.1, "kind": "white-box", "robust": robust},
        "square": {"robust_accuracy": 0.25, "n": 4, "eps": 0.1, "kind": "score-based", "robust": torch.tensor([True, False, False, False])},
    }
    checks = {c.name: c for c in declared_attack_checks(summary)}
    assert checks["iterative_at_least_single_step"].status == "warn"
    assert checks["iterative_at_least_single_step"].evidence["examples_only_single_step_fooled"] == 1
    assert checks["white_box_at_least_black_box"].status == "warn"


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
    assert evidence["zero_margin_gradients"] == evidence["n"] == 20


def test_reference_radius_is_eps_whatever_the_factors(handle, mnist_test):
    """FGSM and Square at eps are compared with PGD at eps, even when eps_factors leaves 1.0 out
    (with factors 0.25 and 0.5 the comparison with PGD at eps/2 raised a false warning)."""
    params = {**PARAMS, "eps_factors": [0.25, 0.5]}
    output, _ = run_section(handle, mnist_test, make_threat([{"name": "gradient_masking", "params": params}], eps=0.1))
    at = {r.condition["eps"]: r.value for r in output.records if r.name == "pgd_robust_accuracy_at_eps"}
    assert sorted(at) == pytest.approx([0.025, 0.05, 0.1])
    single = next(c for c in output.checks if c.name == "iterative_at_least_single_step")
    assert _statuses(output)["iterative_at_least_single_step"] == "pass", single


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
    assert check_large_eps(1.0, 10 / 200).status == "pass"  # 5.00% is not above 5%
    assert check_iterative_vs_single_step(51 / 100, 50 / 100, tolerance=0.01).status == "pass"
    assert check_white_vs_black_box(0.58, 0.57, tolerance=0.01).status == "pass"


def test_declared_fgsm_is_recognised_by_its_registry_name_not_its_id():
    summary = {
        "one_step": {"robust_accuracy": 0.5, "n": 4, "eps": 0.1, "kind": "white-box", "name": "fgsm",
                     "robust": torch.tensor([True, False, True, False])},
        "pgd": {"robust_accuracy": 0.75, "n": 4, "eps": 0.1, "kind": "white-box", "name": "pgd",
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
    assert evidence["zero_margin_gradients"] == evidence["n"] == 20
