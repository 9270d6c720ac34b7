"""Calibration: functional metrics (ECE, MCE, adaptive/classwise ECE, Brier, NLL, reliability bins),
a batched accumulator, bootstrap intervals, temperature scaling and the ``calibration`` section evaluator.

Importing registers the section evaluator.
"""

from robench.calibration import evaluate as _evaluate  # noqa: F401
from robench.calibration.bootstrap import bootstrap_intervals
from robench.calibration.functional import (
    ReliabilityBins,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    max_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from robench.calibration.metric import CalibrationAccumulator, CalibrationMetrics, calibration_metrics
from robench.calibration.temperature import apply_temperature, fit_temperature

__all__ = [
    "CalibrationAccumulator",
    "CalibrationMetrics",
    "ReliabilityBins",
    "adaptive_calibration_error",
    "apply_temperature",
    "bootstrap_intervals",
    "brier_score",
    "calibration_metrics",
    "classwise_calibration_error",
    "expected_calibration_error",
    "fit_temperature",
    "max_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
]

from robench.registry import registry as _registry

for _name, _fn in (
    ("ece", expected_calibration_error),
    ("max_calibration_error", max_calibration_error),
    ("adaptive_ece", adaptive_calibration_error),
    ("classwise_ece", classwise_calibration_error),
    ("brier_score", brier_score),
    ("nll", negative_log_likelihood),
):
    _registry.register("metric", _name, tags=("calibration",))(_fn)
