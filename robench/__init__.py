"""robench: robustness evaluation and certification for PyTorch image classifiers.

The public API is small::

    import robench
    threat = robench.load_threat_model("mnist-linf-0.3")
    results = robench.evaluate("model.pt", threat, arch="small_cnn", out_dir="out/")
"""

from robench._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    JournalError,
    ModelError,
    ResourceError,
    RobenchError,
    UnavailableError,
)
from robench.data import load_dataset
from robench.models import load_model
from robench.results import MetricRecord, Results, load_results
from robench.runner import evaluate
from robench.threat_model import ThreatModel, load_threat_model

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "JournalError",
    "MetricRecord",
    "ModelError",
    "ResourceError",
    "Results",
    "RobenchError",
    "ThreatModel",
    "UnavailableError",
    "evaluate",
    "load_dataset",
    "load_model",
    "load_results",
    "load_threat_model",
]
