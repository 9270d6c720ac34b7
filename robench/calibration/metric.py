"""A stateful shell around :mod:`robench.calibration.functional` for batched evaluation.

The accumulator keeps only sufficient statistics (per-bin counts and sums, Brier and NLL sums)
plus the top-label confidences and correctness needed by the adaptive (equal-mass) ECE, whose
bins depend on all examples. ``compute()`` calls the same ``_compute`` functions as the
functional API, so batched and one-shot results agree up to summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robench._errors import ConfigError
from robench.calibration import functional as F


@dataclass(frozen=True)
class CalibrationMetrics:
    """All calibration metrics of one condition."""

    n: int
    accuracy: float
    correct: int
    ece: float
    mce: float  # over bins of at least ``mce_min_count`` examples; NaN when no bin holds that many
    adaptive_ece: float
    classwise_ece: float
    brier: float
    nll: float
    reliability: F.ReliabilityBins
    mce_min_count: int  # the MCE's minimum bin count


class CalibrationAccumulator:
    """Gathers calibration statistics batch by batch.

    Example::

        acc = CalibrationAccumulator(n_bins=15, mce_min_count=10)
        for probs, labels in batches:
            acc.update(probs, labels)
        metrics = acc.compute()
    """

    def __init__(self, n_bins: int = 15, mce_min_count: int = F.DEFAULT_MCE_MIN_COUNT) -> None:
        self.n_bins = F.check_n_bins(n_bins)
        self.mce_min_count = F.check_min_count(mce_min_count)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._top: F.BinStatistics | None = None
        self._classwise: F.BinStatistics | None = None
        self._confidences: list[torch.Tensor] = []
        self._correct: list[torch.Tensor] = []
        self._brier_sum = 0.0
        self._nll_sum = 0.0
        self._n = 0
        self._num_classes: int | None = None

    @staticmethod
    def _add(old: F.BinStatistics | None, new: F.BinStatistics) -> F.BinStatistics:
        if old is None:
            return new
        return F.BinStatistics(*(a + b for a, b in zip(old, new)))

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of ``(N, K)`` probabilities and ``(N,)`` labels.

        Raises:
            ConfigError: invalid inputs, or a class count different from earlier batches.
        """
        probs, labels = F.check_inputs(probs, labels)
        if self._num_classes is not None and probs.shape[1] != self._num_classes:
            raise ConfigError(
                f"Expected `probs` with {self._num_classes} classes like the earlier batches, but got {probs.shape[1]}."
            )
        self._num_classes = probs.shape[1]
        confidence, prediction = probs.max(dim=1)
        correct = (prediction == labels).to(probs.dtype)
        self._top = self._add(self._top, F._bin_statistics(confidence, correct, self.n_bins))
        self._classwise = self._add(self._classwise, F.classwise_statistics(probs, labels, self.n_bins))
        self._confidences.append(confidence.detach().cpu())
        self._correct.append(correct.detach().cpu())
        self._brier_sum += F.brier_sum(probs, labels)
        self._nll_sum += F.nll_sum(probs, labels)
        self._n += int(labels.numel())

    def compute(self) -> CalibrationMetrics:
        """Every metric over all batches seen (zeros when none were)."""
        n = self._n
        empty = F.BinStatistics(*(torch.zeros(self.n_bins, dtype=torch.float64) for _ in range(3)))
        top = self._top if self._top is not None else empty
        confidence = torch.cat(self._confidences) if self._confidences else torch.zeros(0)
        correct = torch.cat(self._correct) if self._correct else torch.zeros(0)
        n_correct = int(round(float(top.correct_sum.sum())))
        return CalibrationMetrics(
            n=n,
            accuracy=n_correct / n if n else 0.0,
            correct=n_correct,
            ece=F._ece_compute(top),
            mce=F._mce_compute(top, self.mce_min_count),
            adaptive_ece=F._adaptive_compute(confidence, correct, self.n_bins),
            classwise_ece=F._classwise_compute(self._classwise) if self._classwise is not None else 0.0,
            brier=self._brier_sum / n if n else 0.0,
            nll=self._nll_sum / n if n else 0.0,
            reliability=F._reliability_compute(top),
            mce_min_count=self.mce_min_count,
        )


def calibration_metrics(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, mce_min_count: int = F.DEFAULT_MCE_MIN_COUNT
) -> CalibrationMetrics:
    """All metrics of one condition in one call (an accumulator fed a single batch)."""
    accumulator = CalibrationAccumulator(n_bins, mce_min_count)
    accumulator.update(probs, labels)
    return accumulator.compute()
