"""Confidence intervals for proportions.

Every accuracy robench reports carries ``n`` and a two-sided 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _beta_ppf(q: float, a: float, b: float) -> float:
    """The Beta(a, b) quantile at ``q``; scipy.stats is imported on first use (about 1.5 s that
    commands computing no interval need not pay)."""
    from scipy.stats import beta

    return float(beta.ppf(q, a, b))


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:  # false for NaN too
        raise ValueError(f"Expected `confidence` in (0, 1), but got {confidence}")


def _check_counts(successes: int, n: int, confidence: float) -> None:
    _check_confidence(confidence)
    try:
        whole = not any(isinstance(v, bool) or float(v) != int(v) for v in (successes, n))
    except (OverflowError, ValueError):  # inf, NaN
        whole = False
    if not whole:
        raise ValueError(f"Expected whole counts, but got successes={successes}, n={n}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"Expected 0 <= successes <= n, but got successes={successes}, n={n}")


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion.

    ``[B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)]`` with ``B`` the Beta quantile function and
    ``a = 1 - confidence``; the lower end is 0 when ``k = 0`` and the upper end 1 when ``k = n``
    (Clopper & Pearson, Biometrika 1934).

    Args:
        successes: Number of successes ``k``, ``0 <= k <= n``.
        n: Number of trials; ``n = 0`` gives the uninformative interval ``(0, 1)``.
        confidence: Two-sided coverage in (0, 1).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: if the counts or the confidence are out of range.
    """
    _check_counts(successes, n, confidence)
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else _beta_ppf(alpha / 2, successes, n - successes + 1)
    high = 1.0 if successes == n else _beta_ppf(1 - alpha / 2, successes + 1, n - successes)
    return low, high


def clopper_pearson_lower(successes: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower bound ``B(alpha; k, n-k+1)`` (0 when k = 0)."""
    if not 0 < alpha < 1:
        raise ValueError(f"Expected `alpha` in (0, 1), but got {alpha}")
    _check_counts(successes, n, 1 - alpha)  # whole counts: 2.5 of 10 gave a bound, as clopper_pearson refuses
    if n <= 0:
        raise ValueError(f"Expected 0 <= successes <= n and n > 0, but got successes={successes}, n={n}")
    return 0.0 if successes == 0 else _beta_ppf(alpha, successes, n - successes + 1)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson, JASA 1927), for reference and large-n summaries.

    Raises:
        ValueError: if the counts or the confidence are out of range.
    """
    _check_counts(successes, n, confidence)
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the lower (upper) end is exactly 0 (1); in floating point centre - half
    # can round to a positive 1e-17 there, a nonzero lower bound for a count of zero.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mean_interval(scores: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Conservative interval for the mean of per-example scores in [0, 1].

    For averages over conditions that share their examples (mean accuracy over corruption cells:
    every cell holds the same images) the examples are the independent units; pooling the cells as
    independent trials would make the interval several times too narrow. With ``n`` examples and
    mean ``p``, this is the Clopper-Pearson interval of ``k = n p`` (fractional) successes in ``n``
    trials: a score in [0, 1] with mean ``p`` has variance at most ``p (1 - p)``, the variance of a
    Bernoulli, so the interval is at least as wide as needed, behaves at 0 and 1, and equals the
    exact binomial interval when every score is 0 or 1 (one cell).

    Raises:
        ValueError: no scores, a score outside [0, 1], or a confidence out of (0, 1).
    """
    _check_confidence(confidence)
    values = [float(v) for v in scores]
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError("Expected at least one score, all in [0, 1]")
    n = len(values)
    k = math.fsum(values)
    alpha = 1.0 - confidence
    low = 0.0 if k <= 0 else _beta_ppf(alpha / 2, k, n - k + 1)
    high = 1.0 if k >= n else _beta_ppf(1 - alpha / 2, k + 1, n - k)
    return low, high


def weighted_sum_interval(values: Sequence[float], max_value: float, confidence: float = 0.95) -> tuple[float, float]:
    """Gamma interval for the mean of nonnegative per-example values in ``[0, max_value]`` (Fay &
    Feuer, Statistics in Medicine 1997, for a weighted sum of Poisson counts).

    Each value is taken as a count of one event weighted by the value: with ``y = sum v`` and
    ``w = sum v^2``, the lower end is the ``a/2`` quantile of ``Gamma(y^2/w, scale w/y)`` and the
    upper end the ``1 - a/2`` quantile with one more event of the largest possible weight
    (``y + M``, ``w + M^2``), divided by ``n``. With 0/1 values and ``M = 1`` it is the exact
    (Garwood) Poisson interval of the count. The Poisson variance bounds the Bernoulli one, so the
    interval is conservative; it is the right tool where few values are nonzero, where the
    percentile bootstrap, which only sees the few observed events, covers 86-90% instead of 95%.

    Raises:
        ValueError: no values, a value outside ``[0, max_value]``, or a confidence out of (0, 1).
    """
    from scipy.stats import gamma

    _check_confidence(confidence)
    v = [float(x) for x in values]
    if not v or not (math.isfinite(max_value) and max_value > 0) or not all(0.0 <= x <= max_value for x in v):
        raise ValueError(f"Expected at least one value, all in [0, {max_value}]")
    n, alpha = len(v), 1.0 - confidence
    y, w = math.fsum(v), math.fsum(x * x for x in v)
    low = 0.0 if y == 0 else float(gamma.ppf(alpha / 2, y * y / w, scale=w / y))
    y_up, w_up = y + max_value, w + max_value * max_value
    high = float(gamma.ppf(1 - alpha / 2, y_up * y_up / w_up, scale=w_up / y_up))
    return low / n, min(high / n, max_value)


def sign_test(more: int, fewer: int) -> float:
    """One-sided p-value of a paired comparison: that ``more`` of the ``more + fewer`` discordant
    pairs (examples only one of two attacks broke) fall to the side that broke more by chance alone
    (binomial, p = 1/2, the exact McNemar test); 1 when ``more`` is 0."""
    from scipy.stats import binomtest

    return float(binomtest(more, more + fewer, 0.5, alternative="greater").pvalue) if more else 1.0


def _register() -> None:
    from robench.registry import registry

    registry.register("metric", "clopper_pearson", tags=("interval",))(clopper_pearson)
    registry.register("metric", "wilson", tags=("interval",))(wilson)


_register()
