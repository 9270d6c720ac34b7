"""Pass-mean robustness of randomized models (robench.attacks.eot)."""

from __future__ import annotations

import pytest
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


def test_robustness_is_the_worst_point_of_the_ball_measured_afresh():
    """Right in 8 of 10 passes on the clean input and 5 of 10 on the adversarial one: the adversary
    submits the adversarial point, and its share is measured on 10 fresh passes (here 5 of 10 again):
    0.5. Choosing and measuring on the same passes would take the minimum of two noisy estimates."""
    model = _Scripted({0: set(range(8)), 1: set(range(5, 10)) | set(range(15, 20))})
    x, x_adv, y = torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, dtype=torch.long)
    means = pass_mean_robust(model, x, x_adv, y)
    assert float(means.robust) == 0.5 and float(means.clean) == pytest.approx(0.8)
    assert model.calls == {0: STOCHASTIC_PASSES, 1: 2 * STOCHASTIC_PASSES}


class _Coin(torch.nn.Module):
    """Right with probability 1/2 on every pass, whatever the input: every point's true share is 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = torch.rand(len(x)) < 0.5
        return torch.stack([(~right).float(), right.float()], dim=1)


def test_the_chosen_point_is_measured_without_the_minimums_bias():
    """Two points of true share 0.5: the minimum of their 10-pass estimates averages about 0.41; the
    share measured afresh at the chosen point is unbiased (the true minimum, 0.5)."""
    torch.manual_seed(0)
    x, x_adv, y = torch.zeros(4000, 1), torch.ones(4000, 1), torch.ones(4000, dtype=torch.long)
    rate = pass_mean_robust(_Coin(), x, x_adv, y).robust
    assert abs(float(rate.mean()) - 0.5) < 0.01
    biased = torch.minimum(pass_mean_correct(_Coin(), x, y), pass_mean_correct(_Coin(), x_adv, y))
    assert float(biased.mean()) < 0.45  # what choosing and measuring on the same passes gives


def test_an_unchanged_input_is_one_point_not_two_estimates() -> None:
    """A minimum-norm attack that finds nothing leaves x_adv = x: one point, one estimate (the
    minimum of two independent estimates of one share is biased low: a 50% model came out 9 points
    below its clean pass mean). The scripted point is right on its first 10 queries only."""
    model = _Scripted({0: set(range(STOCHASTIC_PASSES))})
    x, y = torch.zeros(1, 1), torch.ones(1, dtype=torch.long)
    means = pass_mean_robust(model, x, x.clone(), y)
    assert float(means.robust) == 1.0 and float(means.clean) == 1.0
    assert model.calls == {0: STOCHASTIC_PASSES}


def test_skipped_examples_count_as_not_robust() -> None:
    torch.manual_seed(0)
    x, y = torch.zeros(6, 1), torch.ones(6, dtype=torch.long)
    means = pass_mean_robust(_Coin(), x, x + 1, y)
    skipped = means.skipping(torch.tensor([True, False] * 3))
    assert skipped.robust[1::2].eq(0).all() and torch.equal(skipped.robust[::2], means.robust[::2])
    assert torch.equal(skipped.clean, means.clean)  # the clean pass mean is not the attack's to change
