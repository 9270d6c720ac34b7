"""Flip-rate stability (ImageNet-P / CIFAR-10-P): perturbation sequences, flip probability,
top-5 distance, flip rate and the ``stability`` section evaluator.

Importing registers the perturbations (kind ``perturbation``) and the section evaluator.
"""

from robench.stability import evaluate as _evaluate  # noqa: F401
from robench.stability import sequences as _sequences  # noqa: F401
from robench.stability.functional import comparison_pairs, flip_probability, rankings, top5_distance
from robench.stability.params import SequenceParams, sequence_params
from robench.stability.released import ReleasedSequences, open_released

__all__ = [
    "ReleasedSequences",
    "SequenceParams",
    "comparison_pairs",
    "flip_probability",
    "open_released",
    "rankings",
    "sequence_params",
    "top5_distance",
]

from robench.registry import registry as _registry

_registry.register("metric", "flip_probability", tags=("stability",))(flip_probability)
_registry.register("metric", "top5_distance", tags=("stability",))(top5_distance)
