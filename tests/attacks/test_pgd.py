"""PGD/FGSM: projection invariants, targeted mode, modes, and strength against torchattacks and foolbox."""

from __future__ import annotations

import copy

import pytest
import torch

from robench.attacks import FGSM, PGD, get_norm

from .conftest import make_threat, record, run_section

BOUNDS = (0.0, 1.0)


def _robust(module, x, y, x_adv) -> float:
    with torch.no_grad():
        return float(((module(x).argmax(1) == y) & (module(x_adv).argmax(1) == y)).float().mean())


@pytest.mark.parametrize("norm,eps", [("Linf", 0.1), ("L2", 1.5), ("L1", 10.0)])
def test_projection_keeps_ball_and_bounds(handle, mnist_test, norm, eps):
    x, y = mnist_test.load(slice(0, 64))
    result = PGD(steps=5, rel_step_size=0.5)(handle.module, x, y, norm=norm, eps=eps, generator=torch.Generator().manual_seed(0))
    assert float(result.distance.max()) <= eps * (1 + 1e-5)
    assert float(result.x_adv.min()) >= BOUNDS[0] and float(result.x_adv.max()) <= BOUNDS[1]
    with torch.no_grad():
        assert torch.equal(result.success, handle.module(result.x_adv).argmax(1) != y)


@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
def test_norm_projection_is_idempotent_and_inside(norm):
    delta = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    projection = get_norm(norm).project(delta, 0.7)
    assert float(get_norm(norm).distance(projection).max()) <= 0.7 * (1 + 1e-5)
    assert torch.allclose(get_norm(norm).project(projection, 0.7), projection, atol=1e-6)


def test_at_least_as_strong_as_torchattacks(handle, mnist_test):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = mnist_test.load(slice(0, 200))
    eps, steps, alpha = 0.08, 10, 0.02
    ours = PGD(steps=steps, rel_step_size=alpha / eps)(handle.module, x, y, norm="Linf", eps=eps, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    theirs = torchattacks.PGD(handle.module, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    ours_acc, theirs_acc = _robust(handle.module, x, y, ours.x_adv), _robust(handle.module, x, y, theirs)
    assert 0.05 < theirs_acc  # the comparison is informative: the peer leaves robust examples
    assert ours_acc <= theirs_acc


@pytest.mark.parametrize("norm,eps", [("Linf", 0.08), ("L2", 1.0)])
def test_at_least_as_strong_as_foolbox(handle, mnist_test, norm, eps):
    fb = pytest.importorskip("foolbox")
    x, y = mnist_test.load(slice(0, 200))
    steps, rel = 10, 0.25
    ours = PGD(steps=steps, rel_step_size=rel)(handle.module, x, y, norm=norm, eps=eps, generator=torch.Generator().manual_seed(0))
    attack = (fb.attacks.LinfPGD if norm == "Linf" else fb.attacks.L2PGD)(steps=steps, rel_stepsize=rel)
    torch.manual_seed(0)
    _, clipped, _ = attack(fb.PyTorchModel(handle.module, bounds=BOUNDS, device="cpu"), x, y, epsilons=eps)
    ours_acc, theirs_acc = _robust(handle.module, x, y, ours.x_adv), _robust(handle.module, x, y, clipped)
    assert 0.05 < theirs_acc
    assert ours_acc <= theirs_acc


def test_iterative_stronger_than_fgsm(handle, mnist_test):
    x, y = mnist_test.load(slice(0, 200))
    fgsm = FGSM()(handle.module, x, y, norm="Linf", eps=0.08)
    pgd = PGD(steps=10)(handle.module, x, y, norm="Linf", eps=0.08, generator=torch.Generator().manual_seed(0))
    assert float(pgd.success.float().mean()) >= float(fgsm.success.float().mean())


def test_targeted_mode_hits_targets(handle, mnist_test):
    threat = make_threat([{"name": "pgd", "params": {"steps": 20, "loss": "margin"}}], eps=0.3, goal="targeted")
    output, ctx = run_section(handle, mnist_test.subset(30), threat)
    # Targeted success means classified as the target; a large eps gets most of them there.
    assert record(output, "attack_success_rate").value > 0.8
    x, y = mnist_test.load(slice(0, 50))
    target = (y + 1) % 10
    result = PGD(steps=20, loss="margin")(handle.module, x, y, norm="Linf", eps=0.3, target=target)
    with torch.no_grad():
        assert torch.equal(result.success, handle.module(result.x_adv).argmax(1) == target)


def test_fast_mode_decides_success_in_fp32(handle, mnist_test):
    x, y = mnist_test.load(slice(0, 100))
    gen = torch.Generator().manual_seed(0)
    fast = PGD(steps=10, mode="fast")(handle.module, x, y, norm="Linf", eps=0.08, generator=gen)
    exact = PGD(steps=10)(handle.module, x, y, norm="Linf", eps=0.08, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fast.success, handle.module(fast.x_adv.float()).argmax(1) != y)
    assert fast.x_adv.dtype == torch.float32
    assert abs(float(fast.success.float().mean()) - float(exact.success.float().mean())) < 0.1
    assert next(handle.module.parameters()).is_contiguous()  # weights restored after channels_last


def test_fast_mode_attacks_what_bf16_already_misclassifies(trained_net, mnist_test):
    """Which examples are attacked (and whether a restart succeeded) is decided in fp32: a bf16 model
    that calls a correctly classified input broken does not exempt it from the attack."""
    from robench.models import load_model

    from .conftest import AutocastLiar

    handle = load_model(AutocastLiar(trained_net), device="cpu")
    x, y = mnist_test.load(slice(0, 100))
    fast = PGD(steps=10, mode="fast")(handle.module, x, y, norm="Linf", eps=0.15, generator=torch.Generator().manual_seed(0))
    exact = PGD(steps=10)(handle.module, x, y, norm="Linf", eps=0.15, generator=torch.Generator().manual_seed(0))
    others = y != 0
    assert exact.success[others].float().mean() > 0.8  # the attack works on them in fp32 ...
    # ... and in fast mode too: trusting bf16, none of them would have been attacked (success 0).
    # (Lower than exact: the liar's bf16 scores also mislead the choice of the best iterate.)
    assert fast.success[others].float().mean() > 0.6


def test_mode_recorded_in_results(handle, mnist_test):
    threat = make_threat([{"name": "pgd", "params": {"steps": 3, "mode": "fast"}}])
    output, ctx = run_section(handle, mnist_test.subset(20), threat)
    assert output.artifacts["mode"] == "fast" and "bf16" in ctx.cost.precision


@pytest.mark.slow
def test_compiled_step_gives_same_numbers(handle, mnist_test):
    x, y = mnist_test.load(slice(0, 32))
    eager = PGD(steps=3, random_start=False)(handle.module, x, y, norm="Linf", eps=0.08)
    compiled = PGD(steps=3, random_start=False, compile=True)(handle.module, x, y, norm="Linf", eps=0.08)
    assert torch.equal(eager.success, compiled.success)
    assert torch.allclose(eager.x_adv, compiled.x_adv, atol=1e-5)


def test_randomized_model_uses_eot_and_pass_mean(trained_net, mnist_test):
    from torch import nn

    from robench.models import load_model

    noisy = nn.Sequential(nn.Dropout(0.2), trained_net).train()
    handle = load_model(noisy, device="cpu")
    handle.module.train()
    threat = make_threat([{"name": "pgd", "params": {"steps": 2}}])
    from robench.context import EvalContext

    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    output, ctx = run_section(handle, mnist_test.subset(20), threat, ctx=ctx)
    assert output.resolved["eot_samples"] == 20
    robust = record(output, "robust_accuracy")
    assert robust.condition["stochastic_passes"] is True
    assert output.artifacts["stochastic_passes"] == 10


def test_randomized_worst_case_and_per_class_use_the_pass_mean(trained_net, mnist_test):
    """The worst case, per-class accuracy and success rate average the pass means like the headline
    (a majority-vote flag made the worst case exceed the attack's own robust accuracy)."""
    from torch import nn

    from robench.context import EvalContext
    from robench.models import load_model

    handle = load_model(nn.Sequential(nn.Dropout(0.5), trained_net).train(), device="cpu")
    handle.module.train()
    threat = make_threat([{"name": "fgsm"}, {"name": "pgd", "params": {"steps": 2, "eot_samples": 2}}], eps=0.1)
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    data = mnist_test.subset(60)
    first, ctx = run_section(handle, data, threat, index=0, ctx=ctx)
    second, ctx = run_section(handle, data, threat, index=1, ctx=ctx)
    for output in (first, second):
        robust = record(output, "robust_accuracy").value
        per_class = [r for r in output.records if r.name == "robust_accuracy_per_class"]
        assert sum(r.value * r.n for r in per_class) / len(data) == pytest.approx(robust)
        clean_correct = record(output, "attack_success_rate").n
        # the success rate is over the clean-correct examples; the robust accuracy also counts the pass
        # means of examples one clean pass got wrong (they are attacked too)
        assert record(output, "attack_success_rate").value * clean_correct >= clean_correct - robust * len(data) - 1e-9
    assert any("fgsm has no EOT" in w for w in first.warnings)
    assert record(first, "worst_case_robust_accuracy").value == pytest.approx(record(first, "robust_accuracy").value)
    # per example the lowest pass mean: it can only fall as attacks are added (choosing the attack on
    # separate passes let FGSM's noise lift it above PGD's own number)
    worst = record(second, "worst_case_robust_accuracy").value
    assert worst <= min(record(first, "robust_accuracy").value, record(second, "robust_accuracy").value) + 1e-12


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_cuda_pgd_agrees_with_cpu(trained_net, mnist_test, mode):
    from robench.models import load_model

    x, y = mnist_test.load(slice(0, 200))
    results = {}
    for device in ("cpu", "cuda"):
        module = load_model(copy.deepcopy(trained_net), device=device).module  # .to() would move the shared fixture
        attack = PGD(steps=20, random_start=False, mode=mode)
        result = attack(module, x.to(device), y.to(device), norm="Linf", eps=0.08)
        assert result.x_adv.device.type == device and result.x_adv.dtype == torch.float32
        assert float((result.x_adv - x.to(device)).abs().max()) <= 0.08 + 1e-6
        results[device] = float(result.success.float().mean())
    assert abs(results["cuda"] - results["cpu"]) <= 0.03, results  # float (and bf16) rounding only


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_compiled_fast_pgd_matches_eager(trained_net, mnist_test):
    from robench.models import load_model

    module = load_model(copy.deepcopy(trained_net), device="cuda").module
    x, y = (t.cuda() for t in mnist_test.load(slice(0, 128)))
    eager = PGD(steps=10, random_start=False, mode="fast")(module, x, y, norm="Linf", eps=0.08)
    compiled = PGD(steps=10, random_start=False, mode="fast", compile=True)(module, x, y, norm="Linf", eps=0.08)
    assert abs(float(eager.success.float().mean()) - float(compiled.success.float().mean())) <= 0.03


def test_dlr_needs_enough_classes():
    from robench._errors import ConfigError
    from robench.attacks.losses import dlr

    with pytest.raises(ConfigError, match="at least 3 classes"):
        dlr(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="at least 4 classes"):
        dlr(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long))
    assert dlr(torch.randn(4, 4), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)).shape == (4,)


def test_fgsm_l1_step_is_sparse_and_at_least_as_strong_as_foolbox(handle, mnist_test):
    # spread over every pixel with a nonzero gradient, an L1 budget of 8 moved each by ~0.01: robust 81% vs
    # foolbox's L1 fast gradient 76.5%
    fb = pytest.importorskip("foolbox")
    x, y = mnist_test.load(slice(0, 200))
    ours = FGSM()(handle.module, x, y, norm="L1", eps=8.0)
    _, clipped, _ = fb.attacks.L1FastGradientAttack()(fb.PyTorchModel(handle.module, bounds=BOUNDS, device="cpu"), x, y, epsilons=8.0)
    ours_acc, theirs_acc = _robust(handle.module, x, y, ours.x_adv), _robust(handle.module, x, y, clipped)
    assert 0.05 < theirs_acc
    assert ours_acc <= theirs_acc
    assert float(ours.distance.max()) <= 8.0 + 1e-4


class _NaNOffTheGrid(torch.nn.Module):
    """Finite on binary images, NaN once any pixel is strictly between 0 and 1 (a model that breaks
    at the adversarial points only: the clean probe passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        off = ((x > 0.01) & (x < 0.99)).flatten(1).any(dim=1, keepdim=True)
        logits = self.linear(x.flatten(1))
        return torch.where(off, torch.full_like(logits, float("nan")), logits)


@pytest.mark.parametrize("attack", [PGD(steps=3), FGSM()])
def test_nan_logits_at_adversarial_points_are_a_model_error(attack):
    # PGD's NaN margin never "improved", so it returned the clean input and the example counted robust;
    # FGSM took argmax(NaN) = class 0 as a misclassification
    from robench._errors import ModelError

    torch.manual_seed(0)
    x = (torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    net = _NaNOffTheGrid()
    y = net(x).argmax(dim=1)
    with pytest.raises(ModelError, match="NaN or infinite logits"):
        attack(net, x, y, norm="Linf", eps=0.1, generator=torch.Generator().manual_seed(0))


def test_eot_pgd_attacks_examples_one_pass_gets_wrong(trained_net, mnist_test):
    # a randomized model's single verdict on x exempted the examples it happened to get wrong: they
    # kept x as their "adversarial" point and counted at their clean pass mean (+5 to 9 points)
    class WrongOnFirstCall(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls = trained_net, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            if torch.is_grad_enabled():
                return out
            self.calls += 1
            return -out if self.calls == 1 else out  # the first verdict pass misclassifies everything

    x, y = mnist_test.load(slice(0, 20))
    result = PGD(steps=3, eot_samples=2, random_start=False).for_randomized_model()(WrongOnFirstCall(), x, y, norm="Linf", eps=0.1)
    assert bool((result.x_adv != x).flatten(1).any(dim=1).all())  # every example was attacked


def test_eot_pgd_restarts_attack_every_example(trained_net, mnist_test):
    """After the first restart, examples whose best point one noisy pass had called adversarial were
    left out of the later restarts: a lucky verdict ended their attack."""
    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.attacked = trained_net, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.is_grad_enabled() and x.requires_grad:
                self.attacked += len(x)  # examples in a gradient pass
            return self.net(torch.nn.functional.dropout(x, 0.5, training=True))

    torch.manual_seed(0)
    x, y = mnist_test.load(slice(0, 30))
    model = Counting()
    attack = PGD(steps=4, restarts=3, eot_samples=2)
    attack(model, x, y, norm="Linf", eps=0.3, generator=torch.Generator().manual_seed(0))
    assert model.attacked < 3 * 4 * 2 * 30  # a deterministic model's broken examples are not attacked again
    model.attacked = 0
    attack.for_randomized_model()(model, x, y, norm="Linf", eps=0.3, generator=torch.Generator().manual_seed(0))
    assert model.attacked == 3 * 4 * 2 * 30


def test_randomized_pgd_without_eot_is_said_and_rated_moderate(trained_net, mnist_test):
    from torch import nn

    from robench.context import EvalContext
    from robench.models import load_model
    from robench.report.checklist import _strength
    from robench.results import EvaluationResult

    handle = load_model(nn.Sequential(nn.Dropout(0.5), trained_net).train(), device="cpu")
    handle.module.train()
    threat = make_threat([{"name": "pgd", "params": {"steps": 100, "restarts": 2, "eot_samples": 1}}], eps=0.1)
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    output, _ = run_section(handle, mnist_test.subset(4), threat, ctx=ctx)
    assert any("declares eot_samples 1" in w for w in output.warnings)
    evaluation = EvaluationResult(key="attacks/pgd", section="attacks", name="pgd", resolved=output.resolved)
    assert _strength(evaluation, randomized=True).level == "moderate"
    assert _strength(evaluation, randomized=False).level == "strong"


class _NaNGradient(torch.nn.Module):
    """Finite logits with a NaN input gradient (0 * sqrt(0)' = 0 * inf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 20 * torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return out + 0.0 * torch.sqrt(x - x.detach()).sum()


class _NaNUnderGradient(torch.nn.Module):
    """NaN logits only when the input requires a gradient (as under a gradient attack)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 20 * torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return out * float("nan") if x.requires_grad else out


@pytest.mark.parametrize("model", [_NaNGradient(), _NaNUnderGradient()], ids=["nan-gradient", "nan-logits-under-grad"])
@pytest.mark.parametrize("attack", [FGSM(), PGD(steps=2)], ids=["fgsm", "pgd"])
def test_a_nan_gradient_is_a_model_error_not_robustness(model, attack):
    """A NaN step never moves the input: every example came out robust (FGSM/PGD 100%, exit 0)."""
    from robench._errors import ModelError

    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(dim=1)
    with pytest.raises(ModelError, match="NaN or infinite"):
        attack(model, x, y, norm="Linf", eps=0.3, generator=torch.Generator().manual_seed(0))


class _GammaCorrected(torch.nn.Module):
    """Quadrant scores of sqrt(x): the input gradient is +inf at black pixels, a usable Linf sign."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * torch.nn.functional.adaptive_avg_pool2d(x.sqrt(), 2).flatten(1)


def test_an_infinite_gradient_that_the_linf_step_can_use_is_allowed():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[:, :, :2] = 0.0  # black pixels: d sqrt(x) / dx = inf
    model = _GammaCorrected()
    y = model(x).argmax(dim=1)
    for attack in (FGSM(), PGD(steps=2)):
        attack(model, x, y, norm="Linf", eps=0.3, generator=torch.Generator().manual_seed(0))


def test_eot_pgd_on_a_randomized_model_spends_no_pass_on_a_verdict_it_discards(trained_net, mnist_test):
    """Attacking every example, PGD still scored x once per batch and threw the score away: one
    wasted forward pass per batch (and a draw of the model's randomness)."""
    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.passes = trained_net, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.passes += 1
            return self.net(x)

    x, y = mnist_test.load(slice(0, 10))
    model = Counting()
    attack = PGD(steps=3, restarts=2, eot_samples=2).for_randomized_model()
    attack.run(model, x, y, norm=get_norm("Linf"), eps=0.1, bounds=BOUNDS, target=None, generator=torch.Generator().manual_seed(0))
    # per restart: steps x eot_samples gradient passes, and the last iterate scored over eot_samples
    # passes like the others (one pass, the noisier score, was favoured by the best-iterate maximum)
    assert model.passes == 2 * (3 * 2 + 2)


@pytest.mark.parametrize("params", [{"eot_samples": 0}, {"steps": 0}, {"restarts": 0}])
def test_pgd_built_directly_refuses_an_empty_budget(params):
    """The params schema refuses these; the class used from Python (as the masking checks and the
    certifiers' soundness checks do) refused eot_samples 0 only with a TypeError on None / int."""
    from robench._errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        PGD(**params)



# --- mutation audit: norms and PGD against closed forms, foolbox's helpers, scipy and a spying model ---


def _points_inside_and_outside(dims: int = 12, n: int = 40) -> torch.Tensor:
    """Perturbations of shape (n, 1, 3, dims // 3) with L2/Linf norms from well inside to far outside 0.5."""
    gen = torch.Generator().manual_seed(7)
    delta = torch.randn(n, 1, 3, dims // 3, generator=gen, dtype=torch.float64)
    scale = torch.logspace(-2, 1, n, dtype=torch.float64).view(-1, 1, 1, 1)
    return delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * scale


def test_linf_and_l2_projections_are_the_euclidean_projections():
    """Closed forms: onto the Linf ball, a coordinate-wise clip; onto the L2 ball, the identity inside and
    eps * delta / ||delta|| outside (foolbox's clip_lp_norms, and scipy's constrained minimiser on a few
    points). A clip to a smaller box, a rescale of points already inside, or a shrink of those outside
    passed the idempotence test."""
    import numpy as np
    from scipy.optimize import minimize

    fb = pytest.importorskip("foolbox")
    import eagerpy as ep

    eps = 0.5
    delta = _points_inside_and_outside()
    flat = delta.flatten(1).numpy()
    linf = get_norm("Linf").project(delta, eps)
    assert np.array_equal(linf.flatten(1).numpy(), np.clip(flat, -eps, eps))
    l2 = get_norm("L2").project(delta, eps).flatten(1).numpy()
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    np.testing.assert_allclose(l2, np.where(norms <= eps, flat, eps * flat / norms), rtol=1e-12, atol=1e-15)
    theirs = fb.attacks.gradient_descent_base.clip_lp_norms(ep.astensor(delta), norm=eps, p=2).raw
    np.testing.assert_allclose(l2, theirs.flatten(1).numpy(), rtol=1e-12, atol=1e-15)
    ball = {"type": "ineq", "fun": lambda z: eps**2 - z @ z}
    for i in (0, 20, 39):  # argmin ||z - delta||^2 subject to ||z||_2 <= eps, by SLSQP
        point = flat[i]
        found = minimize(lambda z, point=point: ((z - point) ** 2).sum(), np.zeros(flat.shape[1]), constraints=[ball], method="SLSQP", tol=1e-12)
        np.testing.assert_allclose(l2[i], found.x, atol=1e-5)


def test_l1_projection_is_the_soft_threshold_found_by_root_finding():
    """Duchi et al.'s sort-based theta against scipy's brentq on sum(max(|v| - theta, 0)) = eps."""
    import numpy as np
    from scipy.optimize import brentq

    eps = 1.5
    delta = _points_inside_and_outside() * 3
    ours = get_norm("L1").project(delta, eps).flatten(1).numpy()
    for row, v in zip(ours, delta.flatten(1).numpy()):
        if np.abs(v).sum() <= eps:
            assert np.array_equal(row, v)
            continue
        theta = brentq(lambda t, v=v: np.maximum(np.abs(v) - t, 0).sum() - eps, 0.0, np.abs(v).max(), xtol=1e-14)
        np.testing.assert_allclose(row, np.sign(v) * np.maximum(np.abs(v) - theta, 0), atol=1e-10)


def test_steepest_ascent_steps_have_the_step_length():
    """Linf: step_size * sign(grad); L2: step_size * grad / ||grad||_2 (foolbox's normalize_lp_norms)."""
    fb = pytest.importorskip("foolbox")
    import eagerpy as ep

    grad = torch.randn(10, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(get_norm("Linf").step(grad, 0.03), 0.03 * torch.sign(grad))
    theirs = fb.attacks.gradient_descent_base.normalize_lp_norms(ep.astensor(grad), p=2).raw * 0.25
    assert torch.allclose(get_norm("L2").step(grad, 0.25), theirs, rtol=1e-12, atol=0)
    assert torch.allclose(get_norm("L2").step(grad, 0.25).flatten(1).norm(dim=1), torch.full((10,), 0.25, dtype=torch.float64))


def test_random_starts_fill_the_ball():
    """Linf: uniform on [-eps, eps] per coordinate; L2: uniform in the ball, so the radius has CDF
    (r / eps)^d (scipy's KS test) and the direction is isotropic. A one-sided Linf start, an L2 radius
    uniform in [0, eps] (points crowded at the centre) or one drawn as u^(1 / (d + 1)) (seen in 2
    dimensions: KS distance 4/27) passed every PGD test. Deterministic seeds; a p-value threshold of
    1e-6, which the right distribution misses once in a million seeds (here 0.04 to 0.73) and those
    mutants pass below 1e-60."""
    import numpy as np
    from scipy.stats import kstest

    eps, n = 0.3, 4000
    like = torch.zeros(n, 1, 4, 4, dtype=torch.float64)
    linf = get_norm("Linf").random(like, eps, torch.Generator().manual_seed(0)).flatten(1).numpy()
    assert np.abs(linf).max() <= eps
    assert kstest(linf.ravel(), "uniform", args=(-eps, 2 * eps)).pvalue > 1e-6
    for shape in ((1, 4, 4), (1, 1, 2)):
        dims = int(np.prod(shape))
        l2 = get_norm("L2").random(torch.zeros(n, *shape, dtype=torch.float64), eps, torch.Generator().manual_seed(0)).flatten(1).numpy()
        radius = np.linalg.norm(l2, axis=1)
        assert radius.max() <= eps * (1 + 1e-12)
        assert kstest(radius / eps, lambda t, dims=dims: np.clip(t, 0, 1) ** dims).pvalue > 1e-6
        direction = l2 / radius[:, None]
        # isotropic: each coordinate's mean has sd sqrt(1 / (dims n)); 6 sd is never reached by chance here
        assert np.abs(direction.mean(axis=0)).max() < 6 * np.sqrt(1 / (dims * n))


class _Spy(torch.nn.Module):
    """The wrapped net, recording every input it is shown with its logits (gradient passes included)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        self.seen.append((x.detach().clone(), out.detach().clone(), x.requires_grad))
        return out


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} z_j - z_y, computed here (not robench's losses.margin)."""
    other = logits.clone()
    other[torch.arange(len(y)), y] = -torch.inf
    return other.amax(dim=1) - logits[torch.arange(len(y)), y]


def _clean_correct(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples ``net`` classifies correctly (PGD attacks only those)."""
    with torch.no_grad():
        keep = net(x).argmax(1) == y
    return x[keep], y[keep]


def test_pgd_steps_by_madrys_default_step_size_from_the_start(trained_net, mnist_test):
    """Without a random start the first gradient pass sees x and the second x + 2.5 eps / steps *
    sign(grad) (Madry et al. 2018's step size), clipped to the box; with one, the first sees a point
    of the ball around x, not x itself."""
    x, y = _clean_correct(trained_net, *mnist_test.load(slice(0, 20)))
    eps, steps = 0.1, 10
    spy = _Spy(trained_net)
    PGD(steps=steps, random_start=False)(spy, x, y, norm="Linf", eps=eps)
    grad_inputs = [seen for seen, _, needs_grad in spy.seen if needs_grad]
    assert len(grad_inputs) == steps and torch.equal(grad_inputs[0], x)
    x.requires_grad_(True)
    grad = torch.autograd.grad(torch.nn.functional.cross_entropy(trained_net(x), y, reduction="sum"), x)[0]
    x = x.detach()
    expected = (x + 2.5 * eps / steps * grad.sign()).clamp(0, 1)
    assert torch.allclose(grad_inputs[1], expected, atol=1e-6)
    spy.seen.clear()
    PGD(steps=2)(spy, x, y, norm="Linf", eps=eps, generator=torch.Generator().manual_seed(0))
    first = next(seen for seen, _, needs_grad in spy.seen if needs_grad)
    moved = (first - x).abs().flatten(1).amax(dim=1)
    assert bool((moved > eps / 2).all()) and float(moved.max()) <= eps + 1e-6


def test_pgd_queries_only_points_of_the_ball_and_box_and_keeps_the_best_of_all(trained_net, mnist_test):
    """Every input PGD shows the model lies in the eps-ball and [0, 1] (iterates were left out of the box
    until the final projection); a restart runs only while no earlier one fooled the example (the
    procedure's early stopping: later restarts attacked fooled examples again, at full cost); and an
    example it does not fool ends at the highest-margin point of all its restarts and iterates, the
    last one included. Margins are computed here from the logits the model gave; one example per
    call, so that the spy's records are that example's."""
    x, y = _clean_correct(trained_net, *mnist_test.load(slice(0, 24)))
    eps, steps, restarts = 0.1, 6, 3
    fooled_early = robust = 0
    for i in range(len(x)):
        spy = _Spy(trained_net)
        result = PGD(steps=steps, restarts=restarts, rel_step_size=0.6)(
            spy, x[i : i + 1], y[i : i + 1], norm="Linf", eps=eps, generator=torch.Generator().manual_seed(i)
        )
        attacked = spy.seen[1:-1]  # the first pass is the clean verdict, the last the final re-check
        inputs = torch.cat([seen for seen, _, _ in attacked])
        assert float((inputs - x[i]).abs().max()) <= eps + 1e-6
        assert float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0
        # per restart: `steps` gradient passes, then the last iterate's verdict
        assert len(attacked) % (steps + 1) == 0
        blocks = [attacked[j : j + steps + 1] for j in range(0, len(attacked), steps + 1)]
        assert all([needs_grad for _, _, needs_grad in block] == [True] * steps + [False] for block in blocks)
        margins = [torch.cat([_margin(logits, y[i : i + 1]) for _, logits, _ in block]) for block in blocks]
        fooled_in = [j for j, block in enumerate(margins) if bool((block > 0).any())]
        assert len(blocks) == (fooled_in[0] + 1 if fooled_in else restarts)
        fooled_early += bool(fooled_in) and fooled_in[0] < restarts - 1
        if bool(result.success[0]):
            continue
        robust += 1
        assert float(_margin(result.logits, y[i : i + 1])[0]) == pytest.approx(float(torch.cat(margins).max()), abs=1e-5)
    assert robust >= 3 and fooled_early >= 3  # the checks are informative: examples of both kinds (7 and 15 here)


def test_eot_of_a_deterministic_model_changes_nothing(trained_net, mnist_test):
    """The mean of identical passes is one pass: eot_samples 3 gives the points of eot_samples 1 (the
    last iterate's logits were summed, not averaged, and won the best-iterate comparison)."""
    x, y = mnist_test.load(slice(0, 64))
    one = PGD(steps=5, rel_step_size=0.6)(trained_net, x, y, norm="Linf", eps=0.1, generator=torch.Generator().manual_seed(0))
    three = PGD(steps=5, rel_step_size=0.6, eot_samples=3)(trained_net, x, y, norm="Linf", eps=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(one.x_adv, three.x_adv, atol=1e-6)


def test_fgsm_and_one_step_pgd_are_one_full_eps_sign_step():
    """FGSM (Goodfellow et al. 2015), and PGD with one step of eps from x, end at x + eps * sign(grad of
    CE) clipped to the box, for a linear model whose CE gradient sign is known in closed form
    (w_other - w_true for two classes). The margin grows along that step, so PGD's best iterate is its
    last one (an attack that never scored its last iterate returned x)."""
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    with torch.no_grad():
        y = linear(x).argmax(1)  # clean-correct: PGD attacks them all
    w = linear[1].weight.detach()
    expected = (x + 0.05 * torch.sign(w[1 - y] - w[y]).view(6, 1, 4, 4)).clamp(0, 1)
    assert torch.allclose(FGSM()(linear, x, y, norm="Linf", eps=0.05).x_adv, expected, atol=1e-7)
    pgd = PGD(steps=1, rel_step_size=1.0, random_start=False)(linear, x, y, norm="Linf", eps=0.05)
    assert torch.allclose(pgd.x_adv, expected, atol=1e-7)


class _TiedAtTheMiddle(torch.nn.Module):
    """Logits (0, sum(x - 0.5)): at x = 0.5 the classes tie and argmax picks class 0, the label."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = (x - 0.5).flatten(1).sum(dim=1)
        return torch.stack((torch.zeros_like(shifted), shifted), dim=1)


def test_an_example_on_a_tie_is_attacked():
    """A margin of exactly 0 is not a success (argmax takes the lower class, here the label): the
    example must be attacked, and one step breaks it. Counting margin >= 0 as already fooled left it
    unattacked at x, robust by the final check."""
    x = torch.full((3, 1, 2, 2), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    result = PGD(steps=2, random_start=False)(_TiedAtTheMiddle(), x, y, norm="Linf", eps=0.1)
    assert bool(result.success.all())
