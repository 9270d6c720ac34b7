"""Randomized smoothing: statistics vs statsmodels/scipy, closed-form radii, abstains, sampler bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from statsmodels.stats.proportion import proportion_confint
from torch import nn

from robench.certify.smoothing import (
    ABSTAIN,
    NoiseSampler,
    certify_from_counts,
    cohen_reference_counts,
    make_generators,
    max_certified_radius,
    predict_from_counts,
)
from robench.stats import clopper_pearson_lower
from tests.conftest import DEVICES


@pytest.mark.parametrize("count,n", [(0, 100), (1, 100), (50, 100), (99, 100), (100, 100), (99_950, 100_000), (7, 10)])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_lower_bound_equals_statsmodels(count: int, n: int, alpha: float) -> None:
    # Cohen et al.'s code: proportion_confint(nA, N, alpha=2 * alpha, method="beta")[0]
    reference = proportion_confint(count, n, alpha=2 * alpha, method="beta")[0]
    reference = 0.0 if np.isnan(reference) else reference
    assert clopper_pearson_lower(count, n, alpha) == pytest.approx(reference, abs=1e-12)


def test_certify_from_counts_matches_reference_formula() -> None:
    selection = torch.tensor([3, 90, 7])
    estimation = torch.tensor([40, 9_900, 60])
    cert = certify_from_counts(selection, estimation, alpha=0.001, sigma=0.5)
    p_lower = proportion_confint(9_900, 10_000, alpha=0.002, method="beta")[0]
    assert cert.prediction == 1 and cert.count == 9_900 and cert.n == 10_000
    assert cert.p_lower == pytest.approx(p_lower, rel=1e-12)
    assert cert.radius == pytest.approx(0.5 * norm.ppf(p_lower), rel=1e-12)


@pytest.mark.parametrize("n,alpha,sigma,expected", [(100_000, 0.001, 0.25, 0.953), (100_000, 0.001, 0.5, 1.906), (1000, 0.001, 1.0, 2.463)])
def test_the_largest_certifiable_radius_is_that_of_n_votes_of_n(n: int, alpha: float, sigma: float, expected: float) -> None:
    # Cohen et al. 2019, section 3.2: with N = 100,000 and alpha = 0.001 the largest radius is ~3.8 sigma
    reference = sigma * norm.ppf(proportion_confint(n, n, alpha=2 * alpha, method="beta")[0])
    assert max_certified_radius(n, alpha, sigma) == pytest.approx(reference, rel=1e-9)
    assert max_certified_radius(n, alpha, sigma) == pytest.approx(expected, abs=1e-3)
    every_vote = certify_from_counts(torch.tensor([0, 5]), torch.tensor([0, n]), alpha=alpha, sigma=sigma)
    one_short = certify_from_counts(torch.tensor([0, 5]), torch.tensor([1, n - 1]), alpha=alpha, sigma=sigma)
    assert every_vote.radius == pytest.approx(max_certified_radius(n, alpha, sigma), rel=1e-12)
    assert every_vote.radius > one_short.radius


def test_certify_abstains_below_one_half_and_ties_take_first_class() -> None:
    cert = certify_from_counts(torch.tensor([5, 5, 0]), torch.tensor([52, 48, 0]), alpha=0.001, sigma=0.25)
    assert cert.prediction == ABSTAIN and cert.radius == 0.0 and cert.p_lower < 0.5
    # selection picks class 0 (first maximum), estimation counts of class 0 decide
    cert = certify_from_counts(torch.tensor([5, 5, 0]), torch.tensor([1000, 0, 0]), alpha=0.001, sigma=0.25)
    assert cert.prediction == 0 and cert.radius > 0


def test_certify_abstains_at_a_lower_bound_of_exactly_one_half() -> None:
    # Cohen et al. 2019, CERTIFY: a class only if pA_lower > 1/2. P(Bin(2, 1/2) >= 2) = 1/4 and
    # P(Bin(3, 1/2) >= 3) = 1/8, so these lower bounds are exactly 0.5 (statsmodels agrees)
    for count, alpha in ((2, 0.25), (3, 0.125)):
        assert proportion_confint(count, count, alpha=2 * alpha, method="beta")[0] == pytest.approx(0.5, abs=1e-12)
        cert = certify_from_counts(torch.tensor([0, count]), torch.tensor([0, count]), alpha=alpha, sigma=0.5)
        assert cert.prediction == ABSTAIN and cert.radius == 0.0


def test_sampler_refuses_logits_of_another_width() -> None:
    from robench._errors import ModelError

    sampler = NoiseSampler(nn.Sequential(nn.Flatten(), nn.Linear(4, 5)), num_classes=3, sigma=0.1, batch=4)
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ModelError, match=r"expected \(4, 3\)"):
        sampler.counts(x, 3, make_generators(torch.tensor([1, 2]), x.device))


class GammaFrontEnd(nn.Module):
    """Class 1 on every input where ``x ** 0.5`` is finite (all of [0, 1]); NaN logits where a noisy pixel is negative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = 0 * (x.flatten(1) ** 0.5).sum(dim=1, keepdim=True)
        return torch.cat([zero - 1, zero + 1, zero], dim=1)


def test_sampler_refuses_nan_logits_rather_than_counting_them_as_a_class() -> None:
    from robench._errors import ModelError

    # argmax takes NaN for the maximum: the NaN rows voted for class 0, which the model never predicts,
    # and CERTIFY certified class 0 at radius ~0.2 on an image the model calls class 1
    x = torch.full((2, 1, 4, 4), 0.3)
    assert GammaFrontEnd()(x).argmax(dim=1).tolist() == [1, 1]
    sampler = NoiseSampler(GammaFrontEnd(), num_classes=3, sigma=0.25, batch=64)
    with pytest.raises(ModelError, match=r"NaN logits for [\d,]+ of 400 noisy inputs"):
        sampler.counts(x, 200, make_generators(torch.tensor([1, 2]), x.device))
    # infinite logits have an argmax, the model's own answer: counted
    infinite = NoiseSampler(lambda z: torch.tensor([[0.0, float("inf"), 1.0]]).expand(z.shape[0], 3), 3, 0.25, 64)
    assert infinite.counts(x, 10, make_generators(torch.tensor([1, 2]), x.device))[:, 1].tolist() == [10, 10]


@pytest.mark.parametrize("counts", [[60, 40, 0], [80, 20, 0], [50, 50, 0], [0, 3, 1], [10, 0, 0]])
def test_predict_uses_two_sided_binomial_test(counts: list[int]) -> None:
    prediction, p_value = predict_from_counts(torch.tensor(counts), alpha=0.01)
    top = sorted(counts, reverse=True)[:2]
    reference = binomtest(top[0], top[0] + top[1], 0.5).pvalue
    assert p_value == pytest.approx(reference, rel=1e-12)
    assert prediction == (int(np.argmax(counts)) if reference <= 0.01 else ABSTAIN)


class ThresholdNet(nn.Module):
    """Class 0 when pixel (0,0) < threshold, else class 1: P(class 0 | x + e) = Phi((t - x00) / sigma)."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = (x[:, 0, 0, 0] >= self.threshold).long()
        return nn.functional.one_hot(first, 3).float()


@pytest.mark.parametrize("device", DEVICES)
def test_radius_matches_closed_form_on_known_probabilities(device: str) -> None:
    sigma, threshold, n = 0.5, 0.6, 40_000
    net = ThresholdNet(threshold)
    x = torch.zeros(3, 1, 4, 4)
    x[1, 0, 0, 0] = 0.3  # p0 = Phi(0.6)
    x[2, 0, 0, 0] = 0.6  # p0 = 1/2: abstain
    x = x.to(device)
    sampler = NoiseSampler(net, 3, sigma, batch=4096)
    generators = make_generators(torch.tensor([1, 2, 3]), torch.device(device))
    selection = sampler.counts(x, 100, generators)
    estimation = sampler.counts(x, n, generators)
    assert estimation.device.type == device and estimation.sum(dim=1).tolist() == [n] * 3
    for image, shift in enumerate([0.0, 0.3]):
        p_true = norm.cdf((threshold - shift) / sigma)
        count = int(estimation[image, 0])
        assert abs(count / n - p_true) < 5 * math.sqrt(p_true * (1 - p_true) / n)
        cert = certify_from_counts(selection[image], estimation[image], 0.001, sigma)
        assert cert.prediction == 0
        # closed form sigma * Phi^-1(p) for the true p; the CP bound costs at most a few binomial sd
        assert cert.radius <= sigma * norm.ppf(p_true) + 1e-3
        assert cert.radius == pytest.approx(sigma * norm.ppf(p_true), abs=0.04)
    assert certify_from_counts(selection[2], estimation[2], 0.001, sigma).prediction == ABSTAIN
    assert sampler.samples == 3 * (100 + n)


class ConstantPerImage(nn.Module):
    """Predicts the class written in the image's mean brightness, whatever the noise (bookkeeping test)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = (x[:, 0, 0, :].mean(dim=1) * 10).round().long().clamp(0, 9)
        return nn.functional.one_hot(label, 10).float()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 7, 25, 1000])
def test_sampler_assigns_samples_to_their_images(batch: int, device: str) -> None:
    x = torch.zeros(5, 1, 2, 8)
    for i in range(5):
        x[i, 0, 0, :] = (2 * i) / 10
    sampler = NoiseSampler(ConstantPerImage(), 10, sigma=0.0, batch=batch)
    counts = sampler.counts(x.to(device), 13, make_generators(torch.arange(5), torch.device(device)))
    expected = torch.zeros(5, 10, dtype=torch.long)
    expected[torch.arange(5), 2 * torch.arange(5)] = 13
    assert torch.equal(counts.cpu(), expected)


def test_sampler_noise_comes_from_each_image_generator() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    torch.manual_seed(0)
    x = torch.rand(3, 3, 2, 2)
    num, sigma = 50, 0.7
    sampler = NoiseSampler(net, 4, sigma, batch=num)  # one chunk per image: same draws as below
    counts = sampler.counts(x, num, make_generators(torch.tensor([11, 12, 13]), torch.device("cpu")))
    for image, seed in enumerate([11, 12, 13]):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((num, 3, 2, 2), generator=generator)
        predictions = net(x[image] + sigma * noise).argmax(dim=1)
        assert torch.equal(counts[image], torch.bincount(predictions, minlength=4))


def test_cohen_reference_loop_agrees_in_distribution() -> None:
    net = ThresholdNet(0.5)
    x = torch.zeros(1, 1, 4, 4)
    torch.manual_seed(0)
    reference = cohen_reference_counts(net, x[0], 20_000, 0.5, 400, 3)
    ours = NoiseSampler(net, 3, 0.5, 4096).counts(x, 20_000, make_generators(torch.tensor([5]), torch.device("cpu")))[0]
    p = norm.cdf(1.0)
    for counts in (reference, ours):
        assert int(counts.sum()) == 20_000
        assert abs(int(counts[0]) / 20_000 - p) < 5 * math.sqrt(p * (1 - p) / 20_000)


@pytest.mark.parametrize("n", [2000, 100_000])
def test_the_ceiling_warning_needs_more_than_a_tenth_and_names_a_larger_budget(n: int) -> None:
    from robench.certify.smoothing import ceiling_warning

    def ceiling(samples: int) -> float:  # Cohen et al.: n votes of n, one-sided Clopper-Pearson at alpha
        return 0.25 * norm.ppf(proportion_confint(samples, samples, alpha=0.002, method="beta")[0])

    assert ceiling_warning(10, 100, n, 0.001, 0.25) is None and ceiling_warning(0, 0, n, 0.001, 0.25) is None
    warning = ceiling_warning(11, 100, n, 0.001, 0.25)
    larger = 100_000 if n < 100_000 else 10 * n
    assert warning is not None and "11 of 100 certificates" in warning and f"all n = {n:,} noise samples" in warning
    assert f"= {ceiling(n):.4g}" in warning and f"n = {larger:,} would raise the ceiling to {ceiling(larger):.4g}" in warning


def test_certify_counts_the_estimation_votes_of_the_class_the_selection_chose() -> None:
    """Cohen et al.'s CERTIFY: cA is the selection's top class and nA its count among the n estimation
    samples, even where the estimation samples favour another class (abstaining there is the point:
    picking cA on the same samples that bound pA would void the guarantee)."""
    selection = torch.tensor([2, 15, 3])  # selects class 1
    estimation = torch.tensor([700, 280, 20])  # the estimation samples favour class 0
    cert = certify_from_counts(selection, estimation, alpha=0.001, sigma=0.5)
    assert cert.count == 280 and cert.n == 1000
    assert cert.p_lower == pytest.approx(proportion_confint(280, 1000, alpha=0.002, method="beta")[0], abs=1e-12)
    assert cert.prediction == ABSTAIN and cert.radius == 0.0
    cert = certify_from_counts(torch.tensor([2, 15, 3]), torch.tensor([100, 880, 20]), alpha=0.001, sigma=0.5)
    reference = proportion_confint(880, 1000, alpha=0.002, method="beta")[0]
    assert cert.prediction == 1 and cert.radius == pytest.approx(0.5 * norm.ppf(reference), rel=1e-12)


def test_predict_answers_at_a_p_value_of_exactly_alpha() -> None:
    """Cohen et al.'s PREDICT abstains only when the p-value exceeds alpha: 3 votes of 3 have the
    two-sided binomial p-value 2 / 2^3 = 0.25 exactly (and 4 of 4 0.125)."""
    for votes, alpha in ((3, 0.25), (4, 0.125)):
        assert binomtest(votes, votes, 0.5).pvalue == alpha
        assert predict_from_counts(torch.tensor([0, votes, 0]), alpha=alpha) == (1, alpha)
        assert predict_from_counts(torch.tensor([0, votes, 0]), alpha=alpha / 2)[0] == ABSTAIN


@pytest.mark.parametrize("batch", [50, 100, 150, 1000])
def test_sampler_draws_each_image_noise_from_its_own_generator_when_a_pass_spans_images(batch: int) -> None:
    """With ``batch`` a multiple of ``num`` a pass holds whole images, each drawn in one call from its
    own generator: the counts equal a loop over the images with a fresh generator per seed (a pass
    that drew every image's noise from the generator of its first image gave other counts)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    torch.manual_seed(0)
    x = torch.rand(3, 3, 2, 2)
    num, sigma, seeds = 50, 0.7, [11, 12, 13]
    counts = NoiseSampler(net, 4, sigma, batch=batch).counts(x, num, make_generators(torch.tensor(seeds), torch.device("cpu")))
    for image, seed in enumerate(seeds):
        noise = torch.randn((num, 3, 2, 2), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(counts[image], torch.bincount(net(x[image] + sigma * noise).argmax(dim=1), minlength=4))


def test_sampler_refuses_a_nan_in_any_single_logit() -> None:
    """``argmax`` returns the index of a NaN: a row NaN in one logit only votes for that class (here
    class 2, which the finite logits never pick) as surely as an all-NaN row votes for class 0."""
    from robench._errors import ModelError

    def one_nan(z: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([0.0, 1.0, 0.0]).repeat(z.shape[0], 1)
        logits[:, 2] = torch.where(z.flatten(1)[:, 0] < 0, float("nan"), 0.0)
        return logits

    x = torch.full((1, 1, 2, 2), 0.1)
    assert torch.isnan(one_nan(-x)).any(dim=1).all() and not torch.isnan(one_nan(-x)).all(dim=1).any()
    with pytest.raises(ModelError, match=r"NaN logits for [\d,]+ of 200 noisy inputs"):
        NoiseSampler(one_nan, 3, sigma=0.5, batch=64).counts(x, 200, make_generators(torch.tensor([3]), x.device))


@pytest.mark.parametrize(("max_radius", "step", "expected"), [(0.7, 0.1, 8), (1.0, 0.25, 5), (0.3, 0.1, 4), (1.2, 0.4, 4), (0.99, 0.25, 4)])
def test_radius_grid_reaches_a_max_radius_that_is_a_multiple_of_the_step(max_radius: float, step: float, expected: int) -> None:
    """0.7 / 0.1 is 6.999999999999999 in floating point: the grid 0, 0.1, ..., 0.7 still ends at 0.7."""
    from robench.certify.smoothing import radius_grid

    grid = radius_grid(max_radius, step)
    assert len(grid) == expected and grid[0] == 0.0
    assert grid == pytest.approx([i * step for i in range(expected)], abs=1e-12)
    assert grid[-1] <= max_radius + 1e-12


def test_a_radius_just_past_the_ceiling_is_past_it() -> None:
    """``past_ceiling`` allows for floating-point rounding only: one part in 10^6 beyond the ceiling
    is past it (certified accuracy 0 by construction), one in 10^12 is the ceiling itself."""
    from robench.certify.smoothing import past_ceiling

    ceiling = 0.25 * norm.ppf(proportion_confint(1000, 1000, alpha=0.002, method="beta")[0])
    assert past_ceiling(ceiling * (1 + 1e-6), ceiling) and past_ceiling(ceiling + 1e-4, ceiling)
    assert not past_ceiling(ceiling, ceiling) and not past_ceiling(ceiling * (1 + 1e-12), ceiling)
    assert not past_ceiling(100.0, None)
