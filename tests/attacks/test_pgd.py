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

