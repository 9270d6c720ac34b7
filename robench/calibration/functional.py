"""Calibration metrics as pure functions on tensors.

Every metric takes ``probs`` (``(N, K)`` class probabilities, rows summing to 1) and ``labels``
(``(N,)`` integer classes). Binned metrics are computed in two steps so that the batched
:class:`~robench.calibration.metric.CalibrationAccumulator` can reuse the same formula:
``_*_statistics`` turns a batch into additive sufficient statistics (per-bin counts and sums) and
``_*_compute`` turns statistics into the metric. A formula lives in exactly one ``_compute``.

Binning convention (Guo et al. 2017, "On Calibration of Modern Neural Networks", Sec. 2): ``M``
equal-width bins ``B_m = ((m-1)/M, m/M]``, closed on the right; a confidence of exactly 0 goes to
the first bin. The edges are ``torch.linspace(0, 1, M + 1)`` in the dtype of the confidences, so
that "exactly on an edge" means equal to that float. torchmetrics' ``MulticlassCalibrationError``
uses left-closed bins ``[(m-1)/M, m/M)``, and a confidence of exactly 1.0 falls in an extra
``(M+1)``-th bin of its own; the two conventions differ for confidences exactly on an inner edge, and
for the MCE when some confidences are exactly 1.0 (robench pools them into the last bin, as Guo et
al.'s right-closed bins do; see ``tests/calibration``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from robench._errors import ConfigError

__all__ = [
    "ReliabilityBins",
    "adaptive_calibration_error",
    "brier_score",
    "classwise_calibration_error",
    "expected_calibration_error",
    "max_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
]

_SUM_TOLERANCE = 1e-3

DEFAULT_MCE_MIN_COUNT = 10
"""Bins the MCE is taken over hold at least this many examples. The gap of a bin of one example is
its confidence or one minus it (0.71 for one correct example at confidence 0.29), whatever the
model's calibration; with 10 examples the bin's accuracy is known to about +-0.15 (one binomial
standard deviation at 0.5), and the exact intervals of :func:`robench.calibration.bootstrap._mce_interval`
are Bonferroni-corrected over fewer, better-filled bins. Guo et al. (2017) take every non-empty bin
(``min_count = 1``, as torchmetrics and netcal do)."""


# --------------------------------------------------------------------------------------------
# argument checks


def check_n_bins(n_bins: object) -> int:
    """Return ``n_bins`` as an int, or raise :class:`ConfigError` saying what was expected."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins <= 0:
        raise ConfigError(f"Expected `n_bins` to be an integer > 0, but got {n_bins!r}.")
    return n_bins


def check_min_count(min_count: object) -> int:
    """Return ``min_count`` as an int, or raise :class:`ConfigError` saying what was expected."""
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count <= 0:
        raise ConfigError(f"Expected `min_count` to be an integer > 0, but got {min_count!r}.")
    return min_count


def check_inputs(probs: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``probs`` ``(N, K)`` probabilities and ``labels`` ``(N,)`` classes in ``[0, K)``.

    Raises:
        ConfigError: wrong types, shapes, dtypes, values outside [0, 1], rows not summing to 1
            (logits passed instead of probabilities), or labels out of range.
    """
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        kind = f"a tensor of dtype {probs.dtype}" if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise ConfigError(f"Expected `probs` to be a floating-point tensor, but got {kind}.")
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ConfigError(f"Expected `probs` of shape (N, K) with K >= 2, but got shape {list(probs.shape)}.")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        kind = f"a tensor of dtype {labels.dtype}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ConfigError(f"Expected `labels` to be an integer tensor, but got {kind}.")
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise ConfigError(
            f"Expected `labels` of shape ({probs.shape[0]},) to match `probs` {list(probs.shape)}, "
            f"but got shape {list(labels.shape)}."
        )
    if probs.numel():
        if not torch.isfinite(probs).all():
            raise ConfigError("Expected `probs` to be finite, but got NaN or infinite values.")
        low, high = float(probs.min()), float(probs.max())
        if low < 0 or high > 1:
            raise ConfigError(
                f"Expected `probs` in [0, 1] (probabilities, not logits), but got values in [{low:g}, {high:g}]."
            )
        sums = probs.sum(dim=1, dtype=torch.float64)
        worst = float((sums - 1).abs().max())
        if worst > _SUM_TOLERANCE:
            raise ConfigError(
                f"Expected every row of `probs` to sum to 1 (within {_SUM_TOLERANCE:g}), "
                f"but a row is off by {worst:g}."
            )
        if int(labels.min()) < 0 or int(labels.max()) >= probs.shape[1]:
            raise ConfigError(
                f"Expected `labels` in [0, {probs.shape[1] - 1}], "
                f"but got values in [{int(labels.min())}, {int(labels.max())}]."
            )
    return probs, labels.long()


# --------------------------------------------------------------------------------------------
# binning


def bin_edges(n_bins: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``n_bins + 1`` equal-width edges ``0, 1/M, ..., 1``."""
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=dtype, device=device)


def bin_index(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Index ``m - 1`` of the right-closed bin ``((m-1)/M, m/M]`` holding each value (0 goes to bin 0)."""
    edges = bin_edges(n_bins, values.dtype, values.device)
    # bucketize(right=False) returns i with edges[i-1] < v <= edges[i].
    return (torch.bucketize(values, edges, right=False) - 1).clamp_(0, n_bins - 1)


def _top_label(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    confidence, prediction = probs.max(dim=1)
    return confidence, (prediction == labels).to(probs.dtype)


class BinStatistics(NamedTuple):
    """Additive per-bin statistics of the top-label confidence (sum them over batches)."""

    count: torch.Tensor  # type: ignore[assignment]  # (M,) number of examples per bin, float64 (shadows tuple.count)
    confidence_sum: torch.Tensor  # (M,) sum of confidences per bin
    correct_sum: torch.Tensor  # (M,) number of correct predictions per bin


def _bin_statistics(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> BinStatistics:
    index = bin_index(confidence, n_bins)
    zeros = torch.zeros(n_bins, dtype=torch.float64, device=confidence.device)
    return BinStatistics(
        zeros.index_add(0, index, torch.ones_like(confidence, dtype=torch.float64)),
        zeros.index_add(0, index, confidence.double()),
        zeros.index_add(0, index, correct.double()),
    )


def top_label_statistics(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> BinStatistics:
    """Per-bin count, confidence sum and correct count of the top-label confidence."""
    return _bin_statistics(*_top_label(probs, labels), n_bins)


def _gaps(stats: BinStatistics) -> tuple[torch.Tensor, torch.Tensor]:
    """``|acc(B_m) - conf(B_m)|`` per bin (0 for empty bins) and the bin weights ``|B_m| / n``.

    Statistics may carry leading batch dimensions (``(..., M)``); bins are the last dimension.
    """
    count = stats.count
    safe = count.clamp(min=1)
    gap = torch.where(count > 0, (stats.correct_sum / safe - stats.confidence_sum / safe).abs(), torch.zeros_like(count))
    total = count.sum(dim=-1, keepdim=True)
    weight = torch.where(total > 0, count / total.clamp(min=1e-300), torch.zeros_like(count))
    return gap, weight


def _ece_values(stats: BinStatistics) -> torch.Tensor:
    """ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)| (Guo et al. 2017, Eq. 3), over the last dim."""
    gap, weight = _gaps(stats)
    return (gap * weight).sum(dim=-1)


def _mce_values(stats: BinStatistics, min_count: int = 1) -> torch.Tensor:
    """MCE = max over bins m with ``|B_m| >= min_count`` of |acc(B_m) - conf(B_m)| (Guo et al. 2017,
    Eq. 5, over the non-empty bins for ``min_count = 1``). 0 without examples; NaN when there are
    examples but no bin holds ``min_count`` of them (no bin is filled enough to say)."""
    gap, _ = _gaps(stats)
    eligible = stats.count >= max(min_count, 1)
    largest = torch.where(eligible, gap, torch.full_like(gap, -1.0)).amax(dim=-1)
    empty = stats.count.sum(dim=-1) == 0
    return torch.where(largest >= 0, largest, torch.where(empty, torch.zeros_like(largest), torch.full_like(largest, float("nan"))))


def _ece_compute(stats: BinStatistics) -> float:
    """:func:`_ece_values` of one set of ``(M,)`` statistics."""
    return float(_ece_values(stats))


def _mce_compute(stats: BinStatistics, min_count: int = 1) -> float:
    """:func:`_mce_values` of one set of ``(M,)`` statistics."""
    return float(_mce_values(stats, min_count))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence.

    ``ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|`` over ``M = n_bins`` equal-width, right-closed bins
    ``((m-1)/M, m/M]`` (Guo, Pleiss, Sun, Weinberger, ICML 2017, Eq. 3; Naeini et al. 2015).

    Args:
        probs: ``(N, K)`` probabilities.
        labels: ``(N,)`` true classes.
        n_bins: Number of bins ``M``.

    Returns:
        The ECE in [0, 1] (0 for ``N = 0``).

    Raises:
        ConfigError: invalid arguments (see :func:`check_inputs`).
    """
    n_bins = check_n_bins(n_bins)
    probs, labels = check_inputs(probs, labels)
    return _ece_compute(top_label_statistics(probs, labels, n_bins))


def max_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, min_count: int = DEFAULT_MCE_MIN_COUNT
) -> float:
    """Maximum calibration error: the largest ``|acc(B_m) - conf(B_m)|`` over the bins holding at
    least ``min_count`` examples.

    Same bins as :func:`expected_calibration_error` (Guo et al. 2017, Eq. 5, who take every
    non-empty bin: ``min_count=1``, as torchmetrics and netcal do). The default leaves out bins too
    sparse for their gap to say anything (see :data:`DEFAULT_MCE_MIN_COUNT`).

    Returns:
        The MCE in [0, 1]; 0 for ``N = 0``; NaN when no bin holds ``min_count`` examples.

    Raises:
        ConfigError: invalid arguments.
    """
    n_bins = check_n_bins(n_bins)
    min_count = check_min_count(min_count)
    probs, labels = check_inputs(probs, labels)
    return _mce_compute(top_label_statistics(probs, labels, n_bins), min_count)


# --------------------------------------------------------------------------------------------
# adaptive (equal-mass) ECE


def equal_mass_groups(n: int, n_bins: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n, M)`` one-hot group of each sorted position: ``M`` groups of sizes differing by at most
    one, the first ``n mod M`` one larger (as ``numpy.array_split``)."""
    sizes = torch.tensor([n // n_bins + (1 if m < n % n_bins else 0) for m in range(n_bins)], device=device)
    group = torch.repeat_interleave(torch.arange(n_bins, device=device), sizes)
    return torch.nn.functional.one_hot(group, n_bins).double()


def _adaptive_values(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Adaptive ECE over the last dimension of ``(..., N)`` confidences and correctness.

    Sort by confidence (stable: ties keep their order), split the sorted examples into the
    equal-mass groups of :func:`equal_mass_groups` and compute ``sum_m |B_m|/n * |acc(B_m) -
    conf(B_m)|`` over these bins (Nixon et al., "Measuring Calibration in Deep Learning", CVPR-W
    2019, adaptive binning; top label only).
    """
    n = confidence.shape[-1]
    if n == 0:
        return torch.zeros(confidence.shape[:-1], dtype=torch.float64)
    order = torch.sort(confidence.double(), dim=-1, stable=True).indices
    groups = equal_mass_groups(n, n_bins, confidence.device)
    stats = BinStatistics(
        torch.ones_like(order, dtype=torch.float64) @ groups,
        confidence.double().gather(-1, order) @ groups,
        correct.double().gather(-1, order) @ groups,
    )
    return _ece_values(stats)


def _adaptive_compute(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> float:
    """:func:`_adaptive_values` of one set of ``(N,)`` examples (0 for ``N = 0``)."""
    return float(_adaptive_values(confidence, correct, n_bins))


def adaptive_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Adaptive (equal-mass) ECE of the top-label confidence (see :func:`_adaptive_compute`).

    Raises:
        ConfigError: invalid arguments.
    """
    n_bins = check_n_bins(n_bins)
    probs, labels = check_inputs(probs, labels)
    return _adaptive_compute(*_top_label(probs, labels), n_bins)


# --------------------------------------------------------------------------------------------
# classwise ECE


def classwise_statistics(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> BinStatistics:
    """Per-class, per-bin statistics of ``p_k`` against ``1[y = k]``: tensors of shape ``(K, M)``."""
    num_classes = probs.shape[1]
    index = bin_index(probs, n_bins) + n_bins * torch.arange(num_classes, device=probs.device)  # (N, K)
    onehot = torch.nn.functional.one_hot(labels, num_classes).double()
    zeros = torch.zeros(num_classes * n_bins, dtype=torch.float64, device=probs.device)
    flat = index.reshape(-1)
    return BinStatistics(
        zeros.index_add(0, flat, torch.ones(flat.numel(), dtype=torch.float64, device=probs.device)).view(num_classes, n_bins),
        zeros.index_add(0, flat, probs.double().reshape(-1)).view(num_classes, n_bins),
        zeros.index_add(0, flat, onehot.reshape(-1)).view(num_classes, n_bins),
    )


def _classwise_values(stats: BinStatistics) -> torch.Tensor:
    """Classwise ECE = (1/K) sum_k sum_m |B_km|/n * |freq_k(B_km) - conf_k(B_km)|, where ``B_km``
    bins the examples by ``p_k`` and ``freq_k`` is the fraction with ``y = k`` (Kull et al.,
    "Beyond temperature scaling", NeurIPS 2019, Eq. 4). Statistics are ``(..., K, M)``.
    """
    return _ece_values(stats).mean(dim=-1)


def _classwise_compute(stats: BinStatistics) -> float:
    """:func:`_classwise_values` of one set of ``(K, M)`` statistics."""
    return float(_classwise_values(stats))


def classwise_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Classwise ECE with equal-width right-closed bins on every class probability (see
    :func:`_classwise_compute`).

    Raises:
        ConfigError: invalid arguments.
    """
    n_bins = check_n_bins(n_bins)
    probs, labels = check_inputs(probs, labels)
    return _classwise_compute(classwise_statistics(probs, labels, n_bins))


# --------------------------------------------------------------------------------------------
# proper scoring rules


def brier_terms(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example Brier terms ``sum_k (p_ik - 1[y_i = k])^2`` (float64, ``(N,)``)."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return ((probs.double() - onehot) ** 2).sum(dim=1)


def brier_sum(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """``sum_i sum_k (p_ik - 1[y_i = k])^2`` (additive over batches)."""
    return float(brier_terms(probs, labels).sum())


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multiclass Brier score ``(1/N) sum_i sum_k (p_ik - 1[y_i = k])^2`` (Brier 1950), in [0, 2].

    Raises:
        ConfigError: invalid arguments.
    """
    probs, labels = check_inputs(probs, labels)
    return brier_sum(probs, labels) / labels.numel() if labels.numel() else 0.0


def nll_terms(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example ``-log max(p_i,y_i, tiny)`` (float64, ``(N,)``) with ``tiny`` the smallest normal
    number of the dtype, so that a zero probability on the true class costs a large finite amount
    (about 87 nats in float32) instead of infinity."""
    true = probs.gather(1, labels[:, None]).squeeze(1)
    return -true.clamp(min=torch.finfo(probs.dtype).tiny).double().log()


def nll_sum(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """``-sum_i log max(p_i,y_i, tiny)`` (additive over batches; see :func:`nll_terms`)."""
    return float(nll_terms(probs, labels).sum())


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood ``-(1/N) sum_i log p_i,y_i`` in nats (clamped, see :func:`nll_sum`).

    Raises:
        ConfigError: invalid arguments.
    """
    probs, labels = check_inputs(probs, labels)
    return nll_sum(probs, labels) / labels.numel() if labels.numel() else 0.0


# --------------------------------------------------------------------------------------------
# reliability diagram


class ReliabilityBins(NamedTuple):
    """Data of a reliability diagram. Empty bins have NaN confidence and accuracy."""

    edges: torch.Tensor  # (M + 1,)
    count: torch.Tensor  # type: ignore[assignment]  # (M,) (shadows tuple.count)
    confidence: torch.Tensor  # (M,) mean confidence per bin
    accuracy: torch.Tensor  # (M,) accuracy per bin

    def to_json(self) -> dict[str, list]:
        """Plain lists for results artifacts (NaN becomes ``None``)."""

        def clean(values: torch.Tensor) -> list:
            return [None if math.isnan(v) else float(v) for v in values.tolist()]

        return {
            "edges": [float(v) for v in self.edges.tolist()],
            "count": [int(v) for v in self.count.tolist()],
            "confidence": clean(self.confidence),
            "accuracy": clean(self.accuracy),
        }


def _reliability_compute(stats: BinStatistics) -> ReliabilityBins:
    """Per bin: ``|B_m|``, ``conf(B_m) = mean confidence`` and ``acc(B_m) = mean correctness``."""
    count = stats.count
    nan = torch.full_like(count, float("nan"))
    safe = count.clamp(min=1)
    return ReliabilityBins(
        bin_edges(count.numel(), torch.float64, count.device),
        count,
        torch.where(count > 0, stats.confidence_sum / safe, nan),
        torch.where(count > 0, stats.correct_sum / safe, nan),
    )


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Reliability-diagram bins of the top-label confidence (same bins as the ECE).

    Raises:
        ConfigError: invalid arguments.
    """
    n_bins = check_n_bins(n_bins)
    probs, labels = check_inputs(probs, labels)
    return _reliability_compute(top_label_statistics(probs, labels, n_bins))
