"""Pass-mean robustness of randomized models (robench.attacks.eot)."""

from __future__ import annotations

import torch

from robench.attacks.eot import STOCHASTIC_PASSES, pass_mean_correct, pass_mean_robust


class _Scripted(torch.nn.Module):
    """A 'randomized' two-class model whose pass ``k`` on an input marked ``m`` (its first pixel) is
    right iff ``k`` is in the script for ``m``: a stand-in for fresh randomness per query."""

    def __init__(self, right: dict[int, set[int]]) -> None:
        super().__init__()
        self.right, self.calls = right, {m: 0 for m in right}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mark = int(x[0, 0])
        k = self.calls[mark]
        self.calls[mark] += 1
        label_score = 1.0 if k in self.right[mark] else -1.0
        return torch.tensor([[-label_score, label_score]]).expand(len(x), 2)  # label 1 when right


def test_robustness_is_the_worst_point_of_the_ball_not_a_joint_of_two_queries():
    """Right in 8 of 10 passes on the clean input and 5 of 10 on the adversarial one: the adversary
    submits the adversarial point and wins half the time, so the robustness is 0.5 (a per-pass
    'both right' count gave 0.3 for these scripts, and drifts with how the queries interleave)."""
    model = _Scripted({0: set(range(8)), 1: set(range(5, 10))})
    x, x_adv, y = torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, dtype=torch.long)
    rate = pass_mean_robust(model, x, x_adv, y)
    assert float(rate) == 0.5
    assert model.calls == {0: STOCHASTIC_PASSES, 1: STOCHASTIC_PASSES}


def test_the_minimum_matches_autoattacks_chain_of_marginals():
    """AutoAttack's chain keeps min(clean pass mean, adversarial pass mean); PGD and the
    minimum-norm attacks use pass_mean_robust: the same number for the same two points."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(6, 3)).train()
    x, x_adv = torch.rand(400, 6), torch.rand(400, 6)
    y = torch.randint(0, 3, (400,))
    torch.manual_seed(1)
    joint = pass_mean_robust(net, x, x_adv, y, passes=200)
    torch.manual_seed(2)
    chain = torch.minimum(pass_mean_correct(net, x, y, passes=200), pass_mean_correct(net, x_adv, y, passes=200))
    # two independent estimates of the same per-example quantity: they agree up to sampling noise
    assert float((joint - chain).abs().mean()) < 0.04
    assert abs(float(joint.mean()) - float(chain.mean())) < 0.01


def test_an_unchanged_input_is_one_point_not_two_estimates() -> None:
    """A minimum-norm attack that finds nothing leaves x_adv = x: the minimum of two independent
    estimates of one share is biased low (a 50% model came out 9 points below its clean pass mean).
    Here the queries of the one point alternate right and wrong: one estimate, not min(10, 0)."""
    model = _Scripted({0: set(range(0, 2 * STOCHASTIC_PASSES, 2))})
    x, y = torch.zeros(1, 1), torch.ones(1, dtype=torch.long)
    assert float(pass_mean_robust(model, x, x.clone(), y)) == 1.0  # the clean passes (calls 0, 2, 4...)
