"""Percentile-bootstrap intervals of the calibration metrics, resampling examples.

Binned calibration errors have no closed-form interval; the bootstrap (Efron & Tibshirani 1993,
ch. 13) resamples the ``N`` examples with replacement ``R`` times, recomputes every metric with the
same ``_compute`` functions as :mod:`robench.calibration.functional`, and reports the
``(2.5%, 97.5%)`` quantiles. Binned errors are biased upwards in small samples and the percentile
interval inherits that bias: read it as sampling variability, not as a bound on the true error.

A resample is represented by its multiplicity weights ``w_i`` (how often example ``i`` was drawn),
so the additive statistics (per-bin counts and sums, Brier and NLL sums) of all resamples are one
matrix product, and the metrics of all resamples are computed at once by the batched
``_*_values`` functions. The classwise ECE needs an ``(N, K * M)`` indicator: it gets an interval
only when ``N * K * M`` stays below :data:`CLASSWISE_BUDGET` (otherwise ``None``).
"""

from __future__ import annotations

import torch

from robench.calibration import functional as F

DEFAULT_RESAMPLES = 200
CLASSWISE_BUDGET = 2 * 10**7
METRICS = ("ece", "mce", "adaptive_ece", "classwise_ece", "brier", "nll")


def bootstrap_draws(n: int, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """``(resamples, n)`` example indices drawn uniformly with replacement (on the CPU)."""
    return torch.randint(0, n, (resamples, n), generator=generator)


def bootstrap_intervals(
    probs: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int,
    generator: torch.Generator,
    resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
) -> dict[str, tuple[float, float] | None]:
    """Percentile-bootstrap intervals of every metric in :data:`METRICS`.

    Args:
        probs: ``(N, K)`` probabilities.
        labels: ``(N,)`` classes.
        n_bins: Bins of the binned metrics.
        generator: Source of the resampling draws (CPU generator).
        resamples: ``R``.
        confidence_level: Coverage of the interval.

    Returns:
        ``{metric: (low, high)}``; ``None`` for a metric whose interval was not computed.

    Raises:
        ConfigError: invalid arguments.
    """
    n_bins = F.check_n_bins(n_bins)
    probs, labels = F.check_inputs(probs.detach().cpu(), labels.detach().cpu())
    n, num_classes = probs.shape
    if n < 2:
        return {name: None for name in METRICS}
    draws = bootstrap_draws(n, resamples, generator)
    weights = torch.zeros(resamples * n, dtype=torch.float64)
    offsets = (draws + n * torch.arange(resamples)[:, None]).reshape(-1)
    weights.index_add_(0, offsets, torch.ones(resamples * n, dtype=torch.float64))
    weights = weights.view(resamples, n)

    confidence, prediction = probs.max(dim=1)
    # Bin in the probabilities' own dtype, as the functional metrics do (edges are dtype floats).
    onehot = torch.nn.functional.one_hot(F.bin_index(confidence, n_bins), n_bins).double()
    correct = (prediction == labels).double()
    confidence = confidence.double()
    top = F.BinStatistics(weights @ onehot, (weights * confidence) @ onehot, (weights * correct) @ onehot)
    values: dict[str, torch.Tensor | None] = {
        "ece": F._ece_values(top),
        "mce": F._mce_values(top),
        "adaptive_ece": F._adaptive_values(confidence[draws], correct[draws], n_bins),
        "classwise_ece": None,
        "brier": weights @ F.brier_terms(probs, labels) / n,
        "nll": weights @ F.nll_terms(probs, labels) / n,
    }
    if n * num_classes * n_bins <= CLASSWISE_BUDGET:
        # Per class k and bin m: which examples have p_k in bin m, as an (N, K*M) indicator.
        cells = (F.bin_index(probs, n_bins) + n_bins * torch.arange(num_classes)).reshape(n, num_classes)
        indicator = torch.zeros(n, num_classes * n_bins, dtype=torch.float64).scatter_(1, cells, 1.0)
        target = torch.nn.functional.one_hot(labels, num_classes).double()
        spread = indicator.view(n, num_classes, n_bins)
        classwise = F.BinStatistics(
            (weights @ indicator).view(resamples, num_classes, n_bins),
            (weights @ (spread * probs.double()[:, :, None]).view(n, -1)).view(resamples, num_classes, n_bins),
            (weights @ (spread * target[:, :, None]).view(n, -1)).view(resamples, num_classes, n_bins),
        )
        values["classwise_ece"] = F._classwise_values(classwise)

    alpha = 1.0 - confidence_level
    levels = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    out: dict[str, tuple[float, float] | None] = {}
    for name in METRICS:
        draws_of_metric = values[name]
        if draws_of_metric is None:
            out[name] = None
            continue
        low, high = torch.quantile(draws_of_metric, levels).tolist()
        out[name] = (float(low), float(high))
    return out
