"""robench's AutoAttack equals pyautoattack alone on the same model, data, seed and batch size."""

from __future__ import annotations

import logging

import pytest
import torch

pyautoattack = pytest.importorskip("pyautoattack")

from robench._errors import ConfigError, UnavailableError  # noqa: E402
from robench.attacks import autoattack as aa_module  # noqa: E402
from robench.context import EvalContext  # noqa: E402
from robench.journal import Journal  # noqa: E402

from .conftest import make_threat, record, run_section  # noqa: E402

FAST = {"n_iter": 10, "square_queries": 100, "n_target_classes": 3, "n_restarts": 1, "batch_size": 16}
ORDER = ["apgd-ce", "apgd-t", "fab-t", "square"]
EPS = 0.06


def reference(module, x, y, *, seed: int, norm: str = "Linf", eps: float = EPS):
    """pyautoattack alone, configured through its own constructors and attributes."""
    adversary = pyautoattack.AutoAttack(module, attacks=ORDER, device="cpu", eps=eps, norm=norm, seed=seed, version="custom")
    adversary.apgd = pyautoattack.autoattack.APGDAttack(
        module, n_restarts=1, n_iter=10, eps=eps, norm=norm, seed=seed, device="cpu", logger=adversary.logger
    )
    adversary.apgd_targeted = pyautoattack.autoattack.APGDAttack_targeted(
        module, n_restarts=1, n_iter=10, eps=eps, norm=norm, seed=seed, device="cpu", logger=adversary.logger, n_target_classes=3
    )
    adversary.fab.n_iter, adversary.fab.n_restarts, adversary.fab.n_target_classes = 10, 1, 3
    adversary.square.n_queries = 100
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("auto-attack")
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=FAST["batch_size"])
    finally:
        logger.removeHandler(handler)
    after = [line for line in lines if line.startswith("robust accuracy after")]
    return y_adv == y, after


@pytest.mark.parametrize("norm,eps", [("Linf", EPS), pytest.param("L2", 1.0, marks=pytest.mark.slow)])
def test_equals_pyautoattack(handle, mnist_test, norm, eps):
    data = mnist_test.subset(32)
    threat = make_threat([{"name": "autoattack", "params": {"version": "custom", "attacks": ORDER, **FAST}}], norm=norm, eps=eps)
    output, ctx = run_section(handle, data, threat, seed=7)
    x, y = data.load(slice(0, len(data)))
    robust_ref, after = reference(handle.module, x, y, seed=7, norm=norm, eps=eps)
    robust = ctx.shared["attacks/autoattack"]["robust"]
    assert torch.equal(robust, robust_ref)
    assert record(output, "robust_accuracy").value == pytest.approx(float(robust_ref.float().mean()))
    # The breakdown after each attack, in order, matches pyautoattack's log (2-decimal percentages).
    breakdown = output.artifacts["breakdown"]
    assert [row["attack"] for row in breakdown] == ["clean", *ORDER]
    assert len(after) == len(ORDER)
    for row, line in zip(breakdown[1:], after):
        assert f"{row['attack'].upper()}: {row['robust_accuracy']:.2%}" in line
    values = [record(output, "robust_accuracy_after", after=name).value for name in ORDER]
    assert values == sorted(values, reverse=True)
    assert any("robust accuracy after" in line for line in output.artifacts["log"])
    # Informative: the first attack leaves robust examples, so later attacks really run.
    assert breakdown[1]["n_robust"] > 0 and breakdown[2]["n_attacked"] > 0
    assert output.checks[0].name == "autoattack_own_checks"


def test_resume_per_attack(handle, mnist_test, tmp_path, monkeypatch):
    data = mnist_test.subset(24)
    threat = make_threat([{"name": "autoattack", "params": {"version": "custom", "attacks": ORDER, **FAST}}], eps=EPS)
    full, full_ctx = run_section(handle, data, threat, seed=1)
    identity = {"run": "resume-test"}
    real = aa_module.perturb

    def crash_on_fab(adversary, name, *args, **kwargs):
        if name == "fab-t":
            raise KeyboardInterrupt
        return real(adversary, name, *args, **kwargs)

    monkeypatch.setattr(aa_module, "perturb", crash_on_fab)
    journal = Journal(tmp_path / "journal.bin", identity, resume=False)
    ctx = EvalContext(device=torch.device("cpu"), seed=1, batch_size=100, progress=False, journal=journal)
    with pytest.raises(KeyboardInterrupt):
        run_section(handle, data, threat, ctx=ctx)
    journal.close()
    monkeypatch.setattr(aa_module, "perturb", real)
    journal = Journal(tmp_path / "journal.bin", identity, resume=True)
    ctx = EvalContext(device=torch.device("cpu"), seed=1, batch_size=100, progress=False, journal=journal)
    resumed, ctx = run_section(handle, data, threat, ctx=ctx)
    journal.close()
    assert ctx.cost.resumed_batches >= 2  # clean + apgd-ce (+ apgd-t) came from the journal
    assert torch.equal(ctx.shared["attacks/autoattack"]["robust"], full_ctx.shared["attacks/autoattack"]["robust"])
    assert resumed.artifacts["breakdown"] == full.artifacts["breakdown"]


def test_targets_capped_below_ten_classes(trained_net):
    from robench.attacks.autoattack import AutoAttackParams, build_autoattack

    with aa_module.capture_log("auto-attack") as log:
        adversary = build_autoattack(trained_net, AutoAttackParams(), norm="Linf", eps=0.1, num_classes=4, seed=0, device="cpu")
        pyautoattack.checks.check_n_classes(4, ["apgd-t", "fab-t"], adversary.apgd_targeted.n_target_classes,
                                            adversary.fab.n_target_classes, logger=adversary.logger)  # fmt: skip
    assert adversary.apgd_targeted.n_target_classes == 3 and adversary.fab.n_target_classes == 3
    assert not log.warnings
    ten = build_autoattack(trained_net, AutoAttackParams(), norm="Linf", eps=0.1, num_classes=10, seed=0, device="cpu")
    assert ten.apgd_targeted.n_target_classes == 9
    assert ten.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_versions_and_params():
    from robench.attacks.autoattack import VERSIONS, AutoAttackParams

    assert AutoAttackParams(version="plus").attack_list() == VERSIONS["plus"]
    threat = make_threat([{"name": "autoattack", "params": {"version": "custom"}}])
    with pytest.raises(ConfigError, match="custom"):
        threat.resolved_params("attacks", threat.evaluations.attacks[0])


def test_targeted_goal_rejected(handle, mnist_test):
    threat = make_threat([{"name": "autoattack"}], goal="targeted")
    with pytest.raises(ConfigError, match="untargeted"):
        run_section(handle, mnist_test.subset(4), threat)


def test_missing_package_is_unavailable(handle, mnist_test, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    threat = make_threat([{"name": "autoattack"}])
    with pytest.raises(UnavailableError, match="pip install"):
        run_section(handle, mnist_test.subset(4), threat)


def test_own_warnings_surfaced(trained_net, mnist_test):
    from torch import nn

    from robench.models import load_model

    handle = load_model(nn.Sequential(trained_net, nn.Softmax(dim=1)), device="cpu")
    params = {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 2, "n_restarts": 1}
    output, _ = run_section(handle, mnist_test.subset(8), make_threat([{"name": "autoattack", "params": params}]))
    check = next(c for c in output.checks if c.name == "autoattack_own_checks")
    assert check.status == "warn" and "probability distribution" in check.message
    assert any(w.startswith("pyautoattack: ") for w in output.warnings)


def test_randomized_model_pass_mean(trained_net, mnist_test):
    from torch import nn

    from robench.models import load_model

    handle = load_model(nn.Sequential(nn.Dropout(0.3), trained_net), device="cpu")
    handle.module.train()  # dropout on: a stochastic model
    threat = make_threat([{"name": "autoattack", "params": {"version": "rand", "n_iter": 2, "eot_iter": 2}}])
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    output, ctx = run_section(handle, mnist_test.subset(8), threat, ctx=ctx)
    robust = record(output, "robust_accuracy")
    assert robust.condition["stochastic_passes"] is True
    # Pass-mean robustness is zero for clean errors and at most 1 otherwise: never above clean accuracy.
    assert 0.0 <= robust.value <= record(output, "clean_accuracy").value
    assert robust.interval.startswith("clopper-pearson (rounded")
    assert output.resolved["attacks"] == ["apgd-ce", "apgd-dlr"]
    assert not any("version 'rand'" in w for w in output.warnings)


def test_fast_mode_counts_only_fp32_successes(handle, mnist_test):
    """Fast mode: the attacks query a bf16-autocast model; every example counted as broken fools
    the fp32 model, and the mode is recorded. Its robust accuracy stays close to the exact one."""
    data = mnist_test.subset(32)
    entries = [
        {"name": "autoattack", "id": "exact", "params": {"version": "custom", "attacks": ORDER, **FAST}},
        {"name": "autoattack", "id": "fast", "params": {"version": "custom", "attacks": ORDER, **FAST, "mode": "fast"}},
    ]
    threat = make_threat(entries)
    exact, _ = run_section(handle, data, threat, index=0, seed=7)
    fast, ctx = run_section(handle, data, threat, index=1, seed=7)
    assert "bf16" in ctx.cost.precision
    robust = ctx.shared["attacks/fast"]["robust"]
    x, y = data.load(slice(0, len(data)))
    clean_correct = handle.predict_logits(x).argmax(1) == y
    assert torch.equal(robust & ~clean_correct, torch.zeros_like(robust))
    broken = clean_correct & ~robust
    adv_probs = ctx.shared["attacks/fast"]["probs"]  # fp32 probabilities on the adversarial examples
    assert broken.any() and (adv_probs[broken].argmax(1) != y[broken]).all()
    exact_value, fast_value = record(exact, "robust_accuracy").value, record(fast, "robust_accuracy").value
    assert abs(exact_value - fast_value) <= 0.13  # 4 of 32 examples: bf16 changes some trajectories


def test_fast_mode_reattacks_what_bf16_calls_broken(trained_net, mnist_test):
    """pyautoattack skips every point its model already misclassifies; in fast mode that model is bf16.
    A bf16 model that calls correct inputs broken must not make them count robust unattacked."""
    from robench.models import load_model

    from .conftest import AutocastLiar

    handle = load_model(AutocastLiar(trained_net), device="cpu")
    data = mnist_test.subset(32)
    params = {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 10, "n_restarts": 1, "batch_size": 16}
    threat = make_threat([
        {"name": "autoattack", "id": "exact", "params": params},
        {"name": "autoattack", "id": "fast", "params": {**params, "mode": "fast"}},
    ], eps=0.15)  # fmt: skip
    exact, _ = run_section(handle, data, threat, index=0, seed=3)
    fast, _ = run_section(handle, data, threat, index=1, seed=3)
    clean = record(exact, "clean_accuracy").value
    assert record(exact, "robust_accuracy").value < clean - 0.3  # the attack works in fp32
    # trusting bf16, every clean-correct example of a class other than 0 would have stayed "robust"
    assert record(fast, "robust_accuracy").value == pytest.approx(record(exact, "robust_accuracy").value, abs=0.07)
    assert fast.resolved["fast_mode_reattacked_in_fp32"] > 0


def test_l1_iterations_follow_n_iter(handle, mnist_test):
    """The standard L1 version schedules APGD from n_iter_orig (use_largereps): n_iter must reach it."""
    from robench.attacks.autoattack import AutoAttackParams, build_autoattack

    x, y = mnist_test.load(slice(0, 8))
    passes = {}
    for n_iter in (5, 20):
        adversary = build_autoattack(handle.module, AutoAttackParams(n_iter=n_iter, n_restarts=1), norm="L1", eps=5.0, num_classes=10, seed=0, device="cpu")
        assert adversary.apgd.use_largereps  # the schedule this test is about
        before = handle.counter.backward
        with aa_module.isolated_rng(torch.device("cpu")):
            adversary.apgd.perturb(x, y)
        passes[n_iter] = handle.counter.backward - before
    assert passes[20] > 2 * passes[5], passes


def test_cost_counts_every_pass(handle, mnist_test):
    """pyautoattack's input checks run outside the batches; their passes are in the cost all the same."""
    params = {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 3, "n_restarts": 1}
    before = handle.counter.snapshot()
    _, ctx = run_section(handle, mnist_test.subset(8), make_threat([{"name": "autoattack", "params": params}]))
    assert ctx.cost.forward_passes == handle.counter.forward - before[0]
    assert ctx.cost.backward_passes == handle.counter.backward - before[1]


@pytest.mark.parametrize("classes,version", [(3, "standard"), (2, "rand")])
def test_too_few_classes_for_the_dlr_losses_is_a_config_error(classes, version):
    # pyautoattack ran APGD-T on a 3-class model anyway and died with "IndexError: index -4 is out of bounds"
    from robench.data.base import ArrayDataset
    from robench.models import load_model

    data = ArrayDataset(torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(6) % classes, classes)
    handle = load_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, classes)), device="cpu")
    with pytest.raises(ConfigError, match=f"need at least {3 if version == 'rand' else 4} classes"):
        run_section(handle, data, make_threat([{"name": "autoattack", "params": {"version": version}}]))


def test_time_of_pyautoattack_checks_is_counted_once(handle, mnist_test, monkeypatch):
    # the checks ran outside map_batches and added their time by hand; EvalContext.finish added it again
    import time

    real = aa_module._own_checks

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(aa_module, "_own_checks", slow)
    threat = make_threat([{"name": "autoattack", "params": {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 2}}])
    started = time.perf_counter()
    _, ctx = run_section(handle, mnist_test.subset(10), threat)
    cost = ctx.finish()
    assert 0.5 <= cost.wall_time_s <= time.perf_counter() - started + 1e-3


class _Coin(torch.nn.Module):
    """A randomized 4-class model right with probability 1/2 on every pass at any input (its logits
    still depend on the input, so the attacks have gradients): every point's true share is 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(784, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = (x.flatten(1)[:, 0] * 0).long()  # stand-in: the tests label every digit 0
        right = torch.rand(len(x), device=x.device) < 0.5
        wrong = (labels + torch.randint(1, 4, (len(x),), device=x.device)) % 4
        chosen = torch.where(right, labels, wrong)
        return 10 * torch.nn.functional.one_hot(chosen, 4).float() + 1e-3 * self.linear(x.flatten(1))


def test_randomized_rand_version_measures_the_chosen_point_afresh(mnist_test):
    # a one-pass verdict exempted examples and zeroed them, and the minimum of noisy pass means was
    # biased low: the headline of a coin-flip model came out far below its true 0.5
    from robench.data.base import ArrayDataset
    from robench.models import load_model

    torch.manual_seed(0)
    x, _ = mnist_test.load(slice(0, 120))
    data = ArrayDataset(x, torch.zeros(120, dtype=torch.long), 4)
    handle = load_model(_Coin(), device="cpu")
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=60, progress=False)
    ctx.shared["randomized"] = True
    threat = make_threat([{"name": "autoattack", "params": {"version": "rand", "n_iter": 2, "eot_iter": 2}}])
    output, _ = run_section(handle, data, threat, ctx=ctx)
    headline = record(output, "robust_accuracy").value
    assert abs(headline - 0.5) < 0.06, headline
    assert any("expected per-pass accuracy at the adversary's best point" in w for w in output.warnings)


class _SometimesNaN(torch.nn.Module):
    """A randomized model (noise on its logits) that returns NaN for the first example on 20% of the
    passes at points off the 1/255 pixel grid (the attacks' points), and finite logits elsewhere."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x) + 0.01 * torch.randn(len(x), 10, device=x.device)
        off_grid = ((x * 255 - (x * 255).round()).abs().flatten(1).amax(dim=1) > 1e-3)[:1]
        if bool(off_grid.any()) and float(torch.rand(())) < 0.2:
            logits = logits.clone()
            logits[0] = float("nan")
        return logits


def test_randomized_pass_means_refuse_nan_logits(trained_net, mnist_test):
    """The pass means of a randomized model at the adversary's points counted a NaN pass as a vote
    for class 0 (argmax takes NaN for the maximum); the one checked pass at the point rarely saw it."""
    from robench._errors import ModelError
    from robench.models import load_model

    torch.manual_seed(0)
    handle = load_model(_SometimesNaN(trained_net), device="cpu")
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=20, progress=False)
    ctx.shared["randomized"] = True
    threat = make_threat([{"name": "autoattack", "params": {"version": "rand", "n_iter": 2, "eot_iter": 2}}])
    with pytest.raises(ModelError, match="NaN"):
        run_section(handle, mnist_test.subset(20), threat, ctx=ctx)


def test_randomized_run_resumed_inside_the_measure_stage_gives_the_same_number(trained_net, mnist_test, tmp_path, monkeypatch):
    # the fresh passes drew the model's randomness from whatever ran before: a resume changed the headline
    import inspect

    from robench.models import load_model

    data = mnist_test.subset(24)
    threat = make_threat([{"name": "autoattack", "params": {"version": "rand", "n_iter": 3, "eot_iter": 2, "batch_size": 8}}])

    def go(journal=None):
        torch.manual_seed(123)
        handle = load_model(torch.nn.Sequential(torch.nn.Dropout(0.3), trained_net), device="cpu")
        handle.module.train()
        ctx = EvalContext(device=torch.device("cpu"), seed=1, batch_size=100, progress=False, journal=journal)
        ctx.shared["randomized"] = True
        return record(run_section(handle, data, threat, ctx=ctx)[0], "robust_accuracy").value

    full = go()
    real, calls = aa_module.pass_mean_correct, {"n": 0}

    def crash_in_measure(*args, **kwargs):
        if any(frame.function == "measure" for frame in inspect.stack()[1:3]):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(aa_module, "pass_mean_correct", crash_in_measure)
    journal = Journal(tmp_path / "journal.bin", {"run": "r"}, resume=False)
    with pytest.raises(KeyboardInterrupt):
        go(journal)
    journal.close()
    monkeypatch.setattr(aa_module, "pass_mean_correct", real)
    journal = Journal(tmp_path / "journal.bin", {"run": "r"}, resume=True)
    assert go(journal) == full
    journal.close()


def test_randomized_stages_keep_only_the_points_the_adversary_may_choose(trained_net, mnist_test):
    """Every stage handed over (and journalled) every example's x_adv: gigabytes per stage on
    ImageNet. Only the points that lower an example's pass mean can become its chosen point."""
    from robench.models import load_model

    data = mnist_test.subset(40)
    threat = make_threat([{"name": "autoattack", "params": {"version": "rand", "n_iter": 3, "eot_iter": 2, "batch_size": 20}}],
                         eps=0.05)  # fmt: skip
    handle = load_model(torch.nn.Sequential(torch.nn.Dropout(0.1), trained_net), device="cpu")
    handle.module.train()
    ctx = EvalContext(device=torch.device("cpu"), seed=1, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    stages = {}
    real = ctx.map_batches

    def spy(stage, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = real(stage, *args, **kwargs)
        stages[stage] = out
        return out

    ctx.map_batches = spy  # type: ignore[method-assign]
    output, _ = run_section(handle, data, threat, ctx=ctx)
    attacked = [out for stage, out in stages.items() if stage.startswith("autoattack/apgd")]
    assert attacked and all("x_adv" not in out for out in attacked)
    for out in attacked:
        assert len(out["x_adv_lower"]) == int(out["lower"].sum()) < len(data)
    assert 0 < record(output, "robust_accuracy").value < 1


def test_randomized_attack_stages_draw_other_noise_in_every_batch(trained_net, mnist_test):
    """pyautoattack seeds torch with its one seed in every batch: a randomized model's noise was the
    same in every batch of a stage and in both APGD attacks (correlated choice passes)."""
    from robench.models import load_model

    class Logged(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.draws = trained_net, []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            noise = torch.rand(())
            self.draws.append(float(noise))
            return self.net(x) + noise

    logged = Logged()
    handle = load_model(logged, device="cpu")
    ctx = EvalContext(device=torch.device("cpu"), seed=1, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    starts: dict[str, list[int]] = {}
    real = ctx._run_batch

    def spy(fn, loader, start, stop, stage, index, counter, rng):  # noqa: ANN001, ANN202
        starts.setdefault(stage, []).append(len(logged.draws))
        return real(fn, loader, start, stop, stage, index, counter, rng)

    ctx._run_batch = spy  # type: ignore[method-assign]
    threat = make_threat([{"name": "autoattack", "params": {"version": "rand", "n_iter": 2, "eot_iter": 2, "batch_size": 8}}])
    run_section(handle, mnist_test.subset(16), threat, ctx=ctx)
    firsts = {stage: [logged.draws[i] for i in at] for stage, at in starts.items() if stage.startswith("autoattack/apgd")}
    assert set(firsts) == {"autoattack/apgd-ce", "autoattack/apgd-dlr"}
    ce, dlr = firsts["autoattack/apgd-ce"], firsts["autoattack/apgd-dlr"]
    assert ce[0] != ce[1] and ce[0] != dlr[0]


def test_budget_left_to_pyautoattack_defaults_is_recorded_as_it_ran(handle, mnist_test):
    """Parameters left unset mean pyautoattack's defaults for the version and norm: results.json
    recorded them as null, so neither the report nor the strength grading knew the 100 iterations
    and 5,000 Square queries of the standard version. The values are read off pyautoattack's own
    objects built by its own constructor (independent of robench's configuration code)."""
    from robench.report._labels import show
    from robench.report.sections.attacks import procedure

    own = pyautoattack.AutoAttack(handle.module, norm="Linf", eps=EPS, version="standard", device="cpu", seed=0)
    threat = make_threat([{"name": "autoattack", "params": {"square_queries": 20, "n_iter": 3, "n_target_classes": 2}}], eps=EPS)
    output, _ = run_section(handle, mnist_test.subset(8), threat)
    assert output.resolved["n_iter"] == 3 and output.resolved["square_queries"] == 20
    assert output.resolved["n_restarts"] == own.apgd.n_restarts and output.resolved["eot_iter"] == own.apgd.eot_iter
    budget = output.artifacts["procedure"]["budget"]
    assert budget == {"apgd-ce": "3 iterations", "apgd-t": "3 iterations x 2 target classes",
                      "fab-t": "3 iterations x 2 target classes", "square": "20 queries"}  # fmt: skip
    from robench.results import EvaluationResult

    evaluation = EvaluationResult(key="attacks/autoattack", section="attacks", name="autoattack", status="success",
                                  artifacts=output.artifacts)  # fmt: skip
    assert ("iterations", show(budget)) in procedure(evaluation)
    defaults = aa_module.effective_budget(own)
    assert defaults == {"n_iter": 100, "n_restarts": 1, "square_queries": 5000, "eot_iter": 1}
