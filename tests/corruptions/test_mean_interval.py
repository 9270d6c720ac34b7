"""The claim the corruptions section makes about its intervals of means over cells: Clopper-Pearson
on the (non-integer) sum of per-example mean scores in [0, 1] covers at least its nominal 95%."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from robench.stats import mean_interval

TRIALS = 1500
NOMINAL = 0.95


def _cells(rng: np.random.Generator, n: int, cells: int, hardness: tuple[float, float]) -> np.ndarray:
    """Per-example means of ``cells`` 0/1 outcomes sharing the example: each example has its own
    chance of being right (Beta-distributed), so the cells are correlated through it, as the
    corruption cells of one image are."""
    p = rng.beta(*hardness, size=n)
    return rng.binomial(cells, p) / cells


SCENARIOS = {
    # (score sampler, true mean)
    "45 cells, mostly right (the example's sweep)": (lambda rng, n: _cells(rng, n, 45, (12.0, 0.8)), 12.0 / 12.8),
    "15 cells, middling": (lambda rng, n: _cells(rng, n, 15, (2.0, 2.0)), 0.5),
    "one cell (0/1 outcomes: the exact binomial case)": (lambda rng, n: (rng.random(n) < 0.97).astype(float), 0.97),
    "two-point scores 0.4 and 1": (lambda rng, n: np.where(rng.random(n) < 0.5, 0.4, 1.0), 0.7),
    "rare fractional failures": (lambda rng, n: np.where(rng.random(n) < 0.02, rng.random(n), 1.0), 0.99),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("n", [30, 200])
def test_clopper_pearson_on_a_sum_of_mean_scores_covers_at_least_nominal(name: str, n: int) -> None:
    sample, truth = SCENARIOS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}/{n}".encode()))
    covered = 0
    for _ in range(TRIALS):
        low, high = mean_interval(sample(rng, n).tolist())
        covered += low <= truth <= high
    coverage = covered / TRIALS
    slack = 3 * np.sqrt(NOMINAL * (1 - NOMINAL) / TRIALS)  # Monte-Carlo error of the estimate
    assert coverage >= NOMINAL - slack, (name, n, coverage)
