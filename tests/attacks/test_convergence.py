"""Robust accuracy over an attack's run: the curve checked against the model's verdict on every
iterate (recorded by a forward hook), its reconciliation with the final verdict, and the section."""

from __future__ import annotations

import pytest
import torch

from robench.attacks import convergence
from robench.attacks.pgd import PGD

from .conftest import make_threat, run_section


def _iterates(net, run):
    """Every input the net sees during ``run()`` with the net's predictions on it, in call order."""
    calls = []
    hook = net.register_forward_hook(lambda module, args, out: calls.append(out.detach().argmax(1)))
    try:
        result = run()
    finally:
        hook.remove()
    return calls, result


@pytest.mark.parametrize("restarts", [1, 3])
def test_curve_is_the_model_verdict_on_every_iterate(trained_net, mnist_test, restarts):
    torch.manual_seed(0)
    x, y = mnist_test.load(slice(0, 64))
    steps, eps = 6, 0.12
    attack = PGD(steps=steps, restarts=restarts)
    calls, result = _iterates(
        trained_net, lambda: attack(trained_net, x, y, norm="Linf", eps=eps, generator=torch.Generator().manual_seed(1))
    )
    # Brute force: call 0 is the clean verdict; each restart then makes steps + 1 calls (the iterates
    # before each step and after the last) on the examples not yet fooled, in index order; the
    # attack's final re-check is the last call.
    fooled_at = torch.full((len(x),), torch.inf)
    correct = calls[0] == y
    fooled_at[~correct] = 0
    fooled_in = torch.full((len(x),), -1)  # the restart, and the step within it (0: its random start)
    within = torch.full((len(x),), -1)
    position = 1
    for restart in range(restarts):
        active = fooled_at.isinf().nonzero().squeeze(1)
        if active.numel() == 0:
            break
        for step in range(steps + 1):
            predictions = calls[position]
            position += 1
            assert predictions.shape == active.shape
            newly = (predictions != y[active]) & fooled_at[active].isinf()
            fooled_at[active[newly]] = restart * steps + step
            fooled_in[active[newly]], within[active[newly]] = restart, step
    assert position == len(calls) - 1
    robust = correct & ~result.success
    every = steps if restarts > 1 else None
    assert (attack.last_progress_restart is None) == (restarts == 1)
    art = convergence.curve(
        attack.last_progress, correct, robust, budget=steps * restarts, unit="gradient steps",
        restart_every=every, first_restart=attack.last_progress_restart,
    )  # fmt: skip
    if restarts > 1:
        broken = correct & ~robust
        assert torch.equal(broken, correct & (fooled_in >= 0))  # PGD's verdict is the iterates' (exact mode)
        assert art["restart_breaks"] == [int((broken & (fooled_in == k)).sum()) for k in range(restarts)]
        assert art["last_breaks"] == [int(within[broken & (fooled_in == k)].max()) if (broken & (fooled_in == k)).any() else None for k in range(restarts)]
        facts = convergence.progress(art)
        assert facts["broken_by_last_restart"] == art["restart_breaks"][-1]
        assert facts["robust_after_restart"] == [int((correct & ~((fooled_in >= 0) & (fooled_in <= k))).sum()) for k in range(restarts)]
    for t in range(steps * restarts + 1):
        assert convergence.robust_after(art, t) == int((correct & (fooled_at > t)).sum()), t
    assert convergence.robust_after(art, steps * restarts) == int(robust.sum())
    assert art["robust"] == sorted(art["robust"], reverse=True) and art["iterations"][0] == 0


def test_curve_defers_to_the_final_verdict():
    first = torch.tensor([0.0, 3.0, torch.inf, 2.0, torch.inf, 9.0])
    correct = torch.tensor([False, True, True, True, True, True])
    robust = torch.tensor([False, False, False, True, True, False])  # #3: the re-check overrules the bookkeeping
    art = convergence.curve(first, correct, robust, budget=8, unit="gradient steps", restart_every=4)
    # #2 fooled by the verdict, never seen: at the end (8); #5 seen past the budget: clamped to it
    assert art["iterations"] == [0, 3, 8] and art["robust"] == [5, 4, 2]
    assert art["n"] == 6 and art["n_correct"] == 5 and art["restart_every"] == 4
    assert [convergence.robust_after(art, t) for t in (-1, 0, 2.5, 3, 7, 8, 100)] == [5, 5, 5, 4, 4, 2, 2]
    with pytest.raises(ValueError, match="three"):
        convergence.curve(first[:3], correct, robust, budget=8, unit="x")


def test_a_random_start_break_belongs_to_its_own_restart():
    """Two examples broken after 4 gradient steps of a 2 x 4 run: one by restart 0's last iterate,
    one by restart 1's random start. The curve cannot tell them apart; the restart record does."""
    first = torch.tensor([4.0, 4.0, 6.0, torch.inf])
    restart = torch.tensor([0, 1, 1, -1])
    correct = torch.ones(4, dtype=torch.bool)
    robust = torch.tensor([False, False, False, True])
    art = convergence.curve(first, correct, robust, budget=8, unit="gradient steps", restart_every=4, first_restart=restart)
    assert art["restart_breaks"] == [1, 2] and art["last_breaks"] == [4, 2]
    facts = convergence.progress(art)
    assert facts["broken_by_last_restart"] == 2 and facts["robust_after_restart"] == [3, 1]
    # an artifact without the record (older results) gives both to restart 0, as before
    old = {k: v for k, v in art.items() if k not in ("restart_breaks", "last_breaks")}
    facts = convergence.progress(old)
    assert facts["broken_by_last_restart"] == 1 and facts["last_breaks"] == [4, 2] and facts["robust_after_restart"] == [2, 1]


def test_section_records_the_curve_for_pgd_not_fgsm(handle, mnist_test):
    threat = make_threat([{"name": "pgd", "params": {"steps": 4, "restarts": 2}}, {"name": "fgsm"}])
    output, _ = run_section(handle, mnist_test.subset(40), threat)
    art = output.artifacts["convergence"]
    robust = next(r for r in output.records if r.name == "robust_accuracy")
    assert art["budget"] == 8 and art["restart_every"] == 4 and art["unit"] == "gradient steps"
    assert sum(art["restart_breaks"]) == art["n_correct"] - art["robust"][-1] and len(art["last_breaks"]) == 2
    assert art["n"] == 40 and art["robust"][-1] == round(robust.value * 40)
    fgsm, _ = run_section(handle, mnist_test.subset(40), threat, index=1)
    assert "convergence" not in fgsm.artifacts


def test_randomized_model_records_no_curve(trained_net, mnist_test):
    from robench.context import EvalContext
    from robench.models import load_model

    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = trained_net

        def forward(self, x):
            return self.net(x + 0.01 * torch.randn_like(x))

    handle = load_model(Noisy(), device="cpu")
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=100, progress=False)
    ctx.shared["randomized"] = True
    threat = make_threat([{"name": "pgd", "params": {"steps": 2, "eot_samples": 2}}])
    output, _ = run_section(handle, mnist_test.subset(8), threat, ctx=ctx)
    assert "convergence" not in output.artifacts  # one-pass verdicts per step would be noise


def test_fast_mode_curve_says_its_steps_are_scored_in_bf16(trained_net, mnist_test):
    """In fast mode the steps inside a restart are bf16 scores: the artifact and the report say so."""
    import robench
    from robench.report.render import render_html

    threat = make_threat([{"name": "pgd", "params": {"steps": 3, "mode": "fast"}}, {"name": "pgd", "id": "exact", "params": {"steps": 3}}])
    results = robench.evaluate(trained_net, threat, n_examples=16, device="cpu", progress=False, batch_size=16)
    assert results.evaluation("attacks/pgd").artifacts["convergence"]["scored"] == "bf16 within a restart, fp32 at its end"
    assert results.evaluation("attacks/exact").artifacts["convergence"]["scored"] == "fp32"
    html = render_html(results)
    assert "In fast mode (<code>pgd</code>) the steps within a restart are scored in bf16" in html


def test_progress_refuses_an_artifact_with_more_restarts_than_any_attack_runs():
    # a damaged results.json (budget 10**12 in restarts of 1 step) hung `robench report` in a loop per restart
    art = {"unit": "gradient steps", "budget": 10**12, "n": 4, "n_correct": 4, "restart_every": 1, "iterations": [0], "robust": [4]}
    with pytest.raises(ValueError, match="restarts"):
        convergence.progress(art)
    assert convergence.progress({**art, "budget": 6, "restart_every": 3})["last_breaks"] == [None, None]
