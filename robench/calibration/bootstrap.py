"""Bootstrap intervals of the calibration metrics, resampling examples.

Binned calibration errors have no closed-form interval. The bootstrap (Efron & Tibshirani 1993)
resamples the ``N`` examples with replacement ``R`` times. For Brier and NLL, means of per-example
terms, the interval is the percentile one: the ``(2.5%, 97.5%)`` quantiles of the resampled means;
Brier's is widened to hold the Fay-Feuer gamma interval of :func:`robench.stats.weighted_sum_interval`
too (its terms lie in [0, 2]). An accurate model's Brier score is carried by its few errors, which
the percentile bootstrap only sees as drawn: alone it covered 37% of a calibrated 99.5%-accurate
model's Brier at n = 100, 45% of a 98%-accurate one's at n = 30, 93% at n = 1000; with the gamma
interval at least 96% in each case. The NLL, whose terms are bounded only by the clamp (87 nats in
float32), keeps the percentile interval, with the same undercoverage for accurate models at small n.

The binned errors are norms of a vector of per-bin mean gaps: ``ECE = sum_m |Z_m|`` with
``Z_m = (1/N) sum_i (1[correct_i] - conf_i) 1[i in B_m]`` (the classwise ECE likewise over class x
bin cells, divided by ``K``). Their plug-in estimates are biased upwards (``E|Z_m| > |E Z_m|``) and
so is the bootstrap distribution around them: the percentile interval of a calibrated model's ECE
almost never holds its true value 0 (docs/calibration_intervals.md, made by
scripts/calibration_interval_coverage.py, has the coverage table). robench bounds the error of the
estimate instead: by the triangle inequality ``|ECE_hat - ECE| <= sum_m |Z_hat_m - E Z_m|``, and the
bootstrap estimates the distribution of that deviation by ``sum_m |Z*_m - Z_hat_m|``; the interval
is ``[ECE_hat - q, ECE_hat + q]`` clipped to [0, 1], ``q`` its 95% quantile. It always holds the
estimate. Bins whose gap has a certain sign enter with their signed deviations, which may cancel
(:func:`_l1_interval`); elsewhere the bound is conservative. At small n the bootstrap still misses
a calibrated model's 0 (sparse cells), so the lower end is 0 whenever simultaneous exact intervals of
the cells' frequencies are consistent with calibration; a cell whose examples all hit or all missed
(a high-accuracy model's top bins in a small test set) looks the same in every resample, so the upper
end adds an exact bound on how far those cells' true frequencies may lie from the observed ones, pooled
over them (:func:`_unseen_deviation`: about 3 / N);
and a bootstrap without any variation (one bin, every example correct) is widened to those exact
bounds (:func:`_with_exact_bounds`). The adaptive ECE keeps the
full sample's equal-mass bins in every resample (its interval is conditional on those bin edges).
The MCE, a maximum over bins, where the bootstrap fails, gets simultaneous Clopper-Pearson intervals
of the accuracies of the bins it is taken over (those of at least ``mce_min_count`` examples) instead
(:func:`_mce_interval`).

A resample is represented by its multiplicity weights ``w_i`` (how often example ``i`` was drawn),
so the per-bin sums of all resamples are matrix products, made :data:`WEIGHT_BUDGET` weights at a
time (the ``R x N`` weights of 1000 resamples of 50,000 examples would take 400 MB). 1000
resamples (the 2.5% and 97.5% quantiles then rest on 25 resamples each) cost, with scipy loaded,
0.03 s for 200 examples and 10 classes, 1.0 s for 10,000 examples and 3.7 s for 10,000 examples of
100 classes (15 bins, one CPU thread). The classwise ECE needs an
``(N, K * M)`` indicator: it gets an interval only when ``N * K * M`` stays below
:data:`CLASSWISE_BUDGET` (otherwise ``None``).
"""

from __future__ import annotations

import numpy as np
import torch

from robench.calibration import functional as F
from robench.stats import weighted_sum_interval

DEFAULT_RESAMPLES = 1000
CLASSWISE_BUDGET = 2 * 10**7
WEIGHT_BUDGET = 2 * 10**6  # resample weights (float64) held at once
METRICS = ("ece", "mce", "adaptive_ece", "classwise_ece", "brier", "nll")


def bootstrap_draws(n: int, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """``(resamples, n)`` example indices drawn uniformly with replacement (on the CPU)."""
    return torch.randint(0, n, (resamples, n), generator=generator)


def resampled_sums(terms: list[torch.Tensor], resamples: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``w @ t`` for every ``(N, C)`` matrix ``t`` of per-example terms: ``(resamples, C)`` sums over
    each resample, ``w`` its multiplicity weights, drawn in chunks of :data:`WEIGHT_BUDGET` weights
    (the chunks draw the same indices as one :func:`bootstrap_draws` call)."""
    n = terms[0].shape[0]
    chunk = max(1, WEIGHT_BUDGET // n)
    out: list[list[torch.Tensor]] = [[] for _ in terms]
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = bootstrap_draws(n, rows, generator)
        weights = torch.zeros(rows * n, dtype=torch.float64)
        weights.index_add_(0, (draws + n * torch.arange(rows)[:, None]).reshape(-1), torch.ones(rows * n, dtype=torch.float64))
        weights = weights.view(rows, n)
        for index, t in enumerate(terms):
            out[index].append(weights @ t)
    return [torch.cat(parts) for parts in out]


def _deviation_interval(estimate: float, deviations: torch.Tensor, confidence_level: float) -> tuple[float, float]:
    """``[estimate - q, estimate + q]`` clipped to [0, 1], ``q`` the ``confidence_level`` quantile of
    the resampled deviations (see the module's docstring)."""
    q = float(torch.quantile(deviations, confidence_level))
    return max(0.0, estimate - q), min(1.0, estimate + q)


# A cell whose mean gap lies this many bootstrap standard deviations from 0 has a known sign.
SIGN_CERTAIN_SDS = 4.0


def _cell_gap_bounds(
    hits: torch.Tensor, counts: torch.Tensor, confidence_sums: torch.Tensor, confidence_level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(count, low, high)`` per occupied cell: simultaneous Clopper-Pearson intervals of the cells'
    true frequencies (Bonferroni over the occupied cells), conditional on the observed confidences;
    a cell's gap ``|acc - conf|`` lies between the distance from ``conf`` to its interval (``low``)
    and the farther end of it (``high``)."""
    from scipy.stats import beta

    occupied = counts > 0
    k, m = hits[occupied].double().round().numpy(), counts[occupied].double().numpy()
    conf = (confidence_sums[occupied] / counts[occupied]).double().numpy()
    if m.size == 0:
        return m, m, m
    alpha = (1.0 - confidence_level) / m.size
    with np.errstate(all="ignore"):
        a = np.where(k > 0, beta.ppf(alpha / 2, k, m - k + 1), 0.0)
        b = np.where(k < m, beta.ppf(1 - alpha / 2, k + 1, m - k), 1.0)
    return m, np.maximum(np.maximum(a - conf, conf - b), 0.0), np.maximum(np.abs(a - conf), np.abs(b - conf))


def _exact_cell_bounds(
    hits: torch.Tensor, counts: torch.Tensor, confidence_sums: torch.Tensor, n: int, scale: float, confidence_level: float
) -> tuple[float, float]:
    """Bounds on ``scale * sum_c (n_c / N) |acc_c - conf_c|`` from :func:`_cell_gap_bounds`."""
    m, low, high = _cell_gap_bounds(hits, counts, confidence_sums, confidence_level)
    share = m / n
    return scale * float((share * low).sum()), min(1.0, scale * float((share * high).sum()))


def _unseen_deviation(hits: torch.Tensor, counts: torch.Tensor, n: int, scale: float, confidence_level: float) -> float:
    """Room for the outcomes the cells whose examples all hit (or all missed) never showed: resampling
    such a cell never changes its frequency, so the bootstrap gives its gap no deviation at all.

    Pooled over those cells, ``M`` examples showed no miss (or no hit). With ``p`` the mean true miss
    rate over them, ``P(no miss) = prod_i (1 - p_i) <= (1 - p)^M`` (independent examples; for the
    classwise cells, an example's class indicators are negatively associated, and the product bound
    still holds), so ``p <= 1 - a^(1/M)`` with confidence ``1 - a``: the exact one-sided
    Clopper-Pearson bound, about ``3 / M`` at ``a = 0.05``. The deviation of their gaps
    ``sum_c (n_c / N) |acc_c - acc_hat_c|`` is at most ``(M / N) p``: about ``3 / N``, however many
    cells. Returns ``scale`` times the sum of that bound over the all-hit and all-miss groups, ``a``
    splitting ``1 - confidence_level`` between the groups present."""
    m, k = counts.double(), hits.double().round()
    pooled = [float(m[group].sum()) for group in ((m > 0) & (k == m), (m > 0) & (k == 0))]
    pooled = [size for size in pooled if size > 0]
    if not pooled:
        return 0.0
    alpha = (1.0 - confidence_level) / len(pooled)
    return scale * sum(size / n * (1.0 - alpha ** (1.0 / size)) for size in pooled)


def _with_exact_bounds(interval: tuple[float, float], exact: tuple[float, float], unseen: float) -> tuple[float, float]:
    """The bootstrap interval, from 0 when the exact bounds are consistent with a calibrated model
    (every cell's interval holds its mean confidence), its upper end raised by the deviation the
    bootstrap cannot see (:func:`_unseen_deviation`), and widened to the exact bounds where the
    bootstrap saw no variation at all.

    The bootstrap deviation misses low for a calibrated model at small n (the plug-in ECE is biased
    upwards, its true value 0): ECE coverage 86% at n = 50, classwise ECE 46% in simulation. It misses
    high where the errors are rare: 30 examples, all in the top bins and all correct, resample to the
    same gap: 81% coverage of a 98%-confident model 3 points over-confident (the unseen deviation
    keeps it). A bootstrap of cells whose gap never varies (every example of the one bin correct) has
    zero width; the exact bounds keep room for the unseen errors."""
    low, high = interval
    if high - low <= 1e-12:
        return min(low, exact[0]), max(high, exact[1])  # every cell blind: its exact bounds hold all of it
    return (0.0 if exact[0] == 0.0 else low), min(1.0, high + unseen)


def _l1_interval(cells: torch.Tensor, resampled_sum: torch.Tensor, scale: float, confidence_level: float) -> tuple[float, float]:
    """Interval of ``scale * sum_c |Z_c|``, ``Z = mean_i cells_i``, for ``(N, C)`` per-example cell
    contributions and their ``(R, C)`` sums over each resample (:func:`resampled_sums`).

    ``|ECE_hat - ECE| <= |sum_{c in S} s_c (Z_hat_c - E Z_c)| + sum_{c not in S} |Z_hat_c - E Z_c|``
    for any set ``S`` of cells whose true gap has the sign ``s_c`` of the estimate (there
    ``|Z_hat_c| - |E Z_c| = s_c (Z_hat_c - E Z_c)`` exactly). ``S`` holds the cells at least
    :data:`SIGN_CERTAIN_SDS` bootstrap standard deviations from 0 (a wrong sign there is a 4-sigma
    event); their deviations may cancel, which makes the interval of a clearly miscalibrated model
    much narrower than the plain triangle inequality over all cells.
    """
    n = cells.shape[0]
    full = cells.sum(dim=0) / n
    resampled = resampled_sum / n
    deviation = resampled - full
    certain = full.abs() > SIGN_CERTAIN_SDS * deviation.std(dim=0)
    signed = (deviation[:, certain] * full[certain].sign()).sum(dim=-1).abs()
    deviations = scale * (signed + deviation[:, ~certain].abs().sum(dim=-1))
    return _deviation_interval(scale * float(full.abs().sum()), deviations, confidence_level)


def bootstrap_intervals(
    probs: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int,
    generator: torch.Generator,
    resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    mce_min_count: int = F.DEFAULT_MCE_MIN_COUNT,
) -> dict[str, tuple[float, float] | None]:
    """Bootstrap intervals of every metric in :data:`METRICS` (see the module's docstring).

    Args:
        probs: ``(N, K)`` probabilities.
        labels: ``(N,)`` classes.
        n_bins: Bins of the binned metrics.
        generator: Source of the resampling draws (CPU generator).
        resamples: ``R``.
        confidence_level: Coverage of the interval.
        mce_min_count: The MCE's bins hold at least this many examples (as in
            :func:`~robench.calibration.functional.max_calibration_error`).

    Returns:
        ``{metric: (low, high)}``; ``None`` for a metric whose interval was not computed (the MCE's
        when no bin holds ``mce_min_count`` examples).

    Raises:
        ConfigError: invalid arguments.
    """
    n_bins = F.check_n_bins(n_bins)
    mce_min_count = F.check_min_count(mce_min_count)
    probs, labels = F.check_inputs(probs.detach().cpu(), labels.detach().cpu())
    n, num_classes = probs.shape
    if n < 2:
        return {name: None for name in METRICS}

    confidence, prediction = probs.max(dim=1)
    # Bin in the probabilities' own dtype, as the functional metrics do (edges are dtype floats).
    onehot = torch.nn.functional.one_hot(F.bin_index(confidence, n_bins), n_bins).double()
    correct, confidence64 = (prediction == labels).double(), confidence.double()
    gap = correct - confidence64  # per example: correct - confidence
    # The adaptive ECE's equal-mass bins of the full sample, as an (N, M) assignment of each example.
    order = torch.sort(confidence64, stable=True).indices
    adaptive = torch.empty(n, n_bins, dtype=torch.float64)
    adaptive[order] = F.equal_mass_groups(n, n_bins)
    scores = torch.stack((F.brier_terms(probs, labels), F.nll_terms(probs, labels)), dim=1)
    terms = [gap[:, None] * onehot, gap[:, None] * adaptive, scores]
    classwise = n * num_classes * n_bins <= CLASSWISE_BUDGET
    if classwise:
        # Per class k and bin m: (1[y = k] - p_k) where p_k falls in bin m, as (N, K*M) contributions.
        cells = (F.bin_index(probs, n_bins) + n_bins * torch.arange(num_classes)).reshape(n, num_classes)
        target = torch.nn.functional.one_hot(labels, num_classes).double()
        contributions = torch.zeros(n, num_classes * n_bins, dtype=torch.float64)
        contributions.scatter_(1, cells, target - probs.double())
        terms.append(contributions)
    sums = resampled_sums(terms, resamples, generator)

    def binned(groups: torch.Tensor, resampled: torch.Tensor) -> tuple[float, float]:  # ECE over (N, M) bin assignments
        hits, counts = correct @ groups, groups.sum(dim=0)
        exact = _exact_cell_bounds(hits, counts, confidence64 @ groups, n, 1.0, confidence_level)
        unseen = _unseen_deviation(hits, counts, n, 1.0, confidence_level)
        return _with_exact_bounds(_l1_interval(gap[:, None] * groups, resampled, 1.0, confidence_level), exact, unseen)

    out: dict[str, tuple[float, float] | None] = {
        "ece": binned(onehot, sums[0]),
        "mce": _mce_interval(correct, confidence64, onehot, confidence_level, mce_min_count),
        "adaptive_ece": binned(adaptive, sums[1]),
        "classwise_ece": None,
    }
    if classwise:
        size = num_classes * n_bins
        flat = cells.reshape(-1)
        counts = torch.zeros(size, dtype=torch.float64).index_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
        hits = torch.zeros(size, dtype=torch.float64).index_add_(0, flat, target.reshape(-1))
        confidence_sums = torch.zeros(size, dtype=torch.float64).index_add_(0, flat, probs.double().reshape(-1))
        exact = _exact_cell_bounds(hits, counts, confidence_sums, n, 1.0 / num_classes, confidence_level)
        unseen = _unseen_deviation(hits, counts, n, 1.0 / num_classes, confidence_level)
        out["classwise_ece"] = _with_exact_bounds(_l1_interval(contributions, sums[3], 1.0 / num_classes, confidence_level), exact, unseen)

    alpha = 1.0 - confidence_level
    levels = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    for column, name in enumerate(("brier", "nll")):
        low, high = torch.quantile(sums[2][:, column] / n, levels).tolist()
        if name == "brier":  # terms in [0, 2]: widened to hold the Fay-Feuer interval (see the module's docstring)
            gamma_low, gamma_high = weighted_sum_interval(scores[:, column].clamp(0.0, 2.0).tolist(), 2.0, confidence_level)
            low, high = min(low, gamma_low), max(high, gamma_high)
        out[name] = (float(low), float(high))
    return out


def _mce_interval(
    correct: torch.Tensor, confidence: torch.Tensor, onehot: torch.Tensor, confidence_level: float, min_count: int = 1
) -> tuple[float, float] | None:
    """MCE = max over the bins of at least ``min_count`` examples of ``|acc_m - conf_m|``, from
    simultaneous exact intervals (``None`` when no bin holds ``min_count`` examples).

    The bootstrap fails for a maximum over sparse bins (a bin of two examples resamples to itself),
    so each such bin's accuracy gets a Clopper-Pearson interval at level ``1 - alpha / B``
    (Bonferroni over the ``B`` bins the MCE is taken over: which bins those are depends only on the
    confidences, on which the interval is conditional); the gap of a bin then lies between the
    distance from ``conf_m`` to that interval and the farther end of it.
    """
    counts = onehot.sum(dim=0)
    kept = torch.where(counts >= max(min_count, 1), counts, torch.zeros_like(counts))  # a bin left out counts as empty
    _, low, high = _cell_gap_bounds(correct @ onehot, kept, confidence @ onehot, confidence_level)
    if low.size == 0:
        return None
    return float(low.max()), min(1.0, float(high.max()))
