"""Intervals against statsmodels' independent implementation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robench.stats import clopper_pearson, clopper_pearson_lower, weighted_sum_interval, wilson

proportion = pytest.importorskip("statsmodels.stats.proportion")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=20000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_matches_statsmodels(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = clopper_pearson(k, n)
    ref_low, ref_high = proportion.proportion_confint(k, n, alpha=0.05, method="beta")
    assert low == pytest.approx(ref_low, abs=1e-10)
    assert high == pytest.approx(ref_high, abs=1e-10)
    assert 0.0 <= low <= k / n <= high <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_statsmodels(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson(k, n)
    ref_low, ref_high = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-10)


def test_the_one_sided_bound_refuses_fractional_counts_as_the_interval_does() -> None:
    for bad in [(2.5, 10), (2, 10.5), (float("nan"), 10), (True, 10)]:
        with pytest.raises(ValueError, match="whole counts"):
            clopper_pearson_lower(*bad, 0.05)
        with pytest.raises(ValueError, match="whole counts"):
            clopper_pearson(*bad)
    assert clopper_pearson_lower(2.0, 10, 0.05) == clopper_pearson_lower(2, 10, 0.05)


def test_wilson_ends_are_exact_at_zero_and_all_successes() -> None:
    # in floating point centre - half rounded to a positive ~1e-17 at k = 0 for some n
    for n in range(1, 3000):
        assert wilson(0, n)[0] == 0.0, n
        assert wilson(n, n)[1] == 1.0, n
        ref_low, ref_high = proportion.proportion_confint(0, n, alpha=0.05, method="wilson")
        assert wilson(0, n)[1] == pytest.approx(ref_high, abs=1e-12)
        assert ref_low == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("k", "n", "alpha"), [(99990, 100000, 0.001), (60, 100, 0.001), (1, 1, 0.05), (500, 1000, 0.01)])
def test_one_sided_lower_bound_is_the_two_sided_bound_at_twice_alpha(k: int, n: int, alpha: float) -> None:
    ref_low, _ = proportion.proportion_confint(k, n, alpha=2 * alpha, method="beta")
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(ref_low, abs=1e-12)


def test_edges_and_errors() -> None:
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    assert clopper_pearson_lower(0, 10, 0.01) == 0.0
    for bad in [(-1, 10), (11, 10)]:
        with pytest.raises(ValueError):
            clopper_pearson(*bad)
    with pytest.raises(ValueError):
        clopper_pearson(1, 2, confidence=1.5)


def test_mean_interval_reduces_to_clopper_pearson_and_is_conservative() -> None:
    import random

    from robench.stats import mean_interval

    assert mean_interval([1.0] * 7 + [0.0] * 3) == pytest.approx(clopper_pearson(7, 10))
    assert mean_interval([1.0] * 5) == (pytest.approx(clopper_pearson(5, 5)[0]), 1.0)
    rng = random.Random(0)
    # coverage by simulation: per-example scores = mean of 5 correlated cells
    covered, trials, p = 0, 400, 0.7
    for _ in range(trials):
        scores = []
        for _ in range(60):
            easy = rng.random() < p
            scores.append(sum((rng.random() < (0.95 if easy else 0.2)) for _ in range(5)) / 5)
        low, high = mean_interval(scores)
        truth = p * 0.95 + (1 - p) * 0.2
        covered += low <= truth <= high
    assert covered / trials >= 0.95
    with pytest.raises(ValueError):
        mean_interval([])
    with pytest.raises(ValueError):
        mean_interval([1.5])


def test_interval_functions_refuse_bad_confidence_and_fractional_counts() -> None:
    # wilson(3, 10, 1.5) gave (0, 1) and wilson(3, 10, 0) the zero-width (0.3, 0.3)
    for interval in (wilson, clopper_pearson):
        for confidence in (1.5, 0.0, float("nan")):
            with pytest.raises(ValueError, match="confidence"):
                interval(3, 10, confidence)
        for successes, n in ((2.5, 10), (3, float("inf")), (float("nan"), 10)):
            with pytest.raises(ValueError, match="whole counts"):
                interval(successes, n)


def test_weighted_sum_interval_of_counts_is_the_exact_poisson_interval() -> None:
    # 0/1 values, largest weight 1: Fay & Feuer's gamma interval is Garwood's exact Poisson interval
    from statsmodels.stats.rates import confint_poisson

    for k, n in ((0, 20), (1, 20), (4, 100), (37, 1000)):
        low, high = weighted_sum_interval([1.0] * k + [0.0] * (n - k), 1.0)
        ref_low, ref_high = confint_poisson(k, n, method="exact-c")
        assert low == pytest.approx(ref_low, abs=1e-12) and high == pytest.approx(min(ref_high, 1.0), rel=1e-9)



@pytest.mark.parametrize(("more", "fewer"), [(0, 0), (0, 5), (1, 0), (7, 0), (10, 5), (3, 9), (60, 40)])
def test_sign_test_is_the_binomial_tail(more: int, fewer: int) -> None:
    """The one-sided exact McNemar p-value, P(X >= more) for X ~ Bin(more + fewer, 1/2), summed by hand."""
    from math import comb

    from robench.stats import sign_test

    m = more + fewer
    expected = 1.0 if more == 0 else sum(comb(m, i) for i in range(more, m + 1)) / 2**m
    assert sign_test(more, fewer) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 2), (0, 20), (4, 100), (37, 1000)])
@pytest.mark.parametrize("max_value", [0.25, 3.0])
def test_weighted_sum_interval_of_counts_of_weight_m_is_m_times_the_poisson_interval(k: int, n: int, max_value: float) -> None:
    """Values 0 or M with largest weight M: the gamma interval is M times Garwood's exact Poisson
    interval of the count (the extra event carries weight M, variance M^2: with M = 1 a w + M slip
    and M^2 look alike), clamped to [0, M] (for n = 1 the Poisson upper end is 3.69 M)."""
    from statsmodels.stats.rates import confint_poisson

    low, high = weighted_sum_interval([max_value] * k + [0.0] * (n - k), max_value)
    ref_low, ref_high = confint_poisson(k, n, method="exact-c")
    assert low == pytest.approx(max_value * ref_low, abs=1e-12)
    assert high == pytest.approx(min(max_value * ref_high, max_value), rel=1e-9)
    assert high <= max_value


def test_mean_interval_of_fractional_scores_is_the_beta_interval_of_their_sum() -> None:
    """Fractional per-example scores: the Clopper-Pearson formula at the fractional count ``sum v``
    (statsmodels' beta interval accepts it), not at a rounded count."""
    from robench.stats import mean_interval

    for scores in ([0.4, 0.6, 0.2, 1.0, 0.0, 0.5, 0.7], [0.1] * 9 + [0.95], [0.99] * 30 + [0.5]):
        for confidence in (0.95, 0.8):
            ref_low, ref_high = proportion.proportion_confint(sum(scores), len(scores), alpha=1 - confidence, method="beta")
            assert mean_interval(scores, confidence) == pytest.approx((ref_low, ref_high), abs=1e-10)


def test_one_sided_lower_bound_and_weighted_sum_interval_refuse_bad_arguments() -> None:
    """No trials is no bound (a CERTIFY on zero estimation samples must not read as p_lower = 0), and
    the gamma interval needs values in [0, max_value] with a finite positive max_value."""
    for successes, n in ((0, 0), (1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            clopper_pearson_lower(successes, n, 0.01)
    for values, max_value in (([], 1.0), ([0.5, 1.5], 1.0), ([-0.1, 0.5], 1.0), ([0.5], 0.0), ([0.5], float("inf")), ([0.5], float("nan"))):
        with pytest.raises(ValueError, match="Expected at least one value"):
            weighted_sum_interval(values, max_value)
    with pytest.raises(ValueError, match="confidence"):
        weighted_sum_interval([0.5], 1.0, confidence=1.0)
