"""Flip probability and top-5 distance as pure functions on per-frame predictions.

Semantics follow the official ImageNet-P / CIFAR-10-P evaluation code (Hendrycks & Dietterich,
ICLR 2019, Sec. 3 and ``ImageNet-P/test.py``):

* **Noise** perturbations (frames are independent draws): every frame ``j >= 1`` is compared with
  the clean frame 0; the difficulty selects the noise strength, not a stride.
* **Sequential** perturbations (frames are temporally related): with difficulty (stride) ``d``,
  for every start ``i < d`` the frames ``i, i+d, i+2d, ...`` are compared consecutively, giving
  ``T - d`` comparisons per sequence.

A sequence's flip probability is the mean of ``1[f(x_a) != f(x_b)]`` over its comparison pairs
``(a, b)``; the perturbation's flip probability FP is the mean over sequences. The top-5 distance
T5D replaces the indicator by the distance between the top-5 rankings (see :func:`top5_distance`).
"""

from __future__ import annotations

import functools
import itertools

import torch

from robench._errors import ConfigError

__all__ = [
    "comparison_pairs",
    "flip_probability",
    "rankings",
    "top5_distance",
]


def comparison_pairs(n_frames: int, noise: bool, difficulty: int = 1) -> torch.Tensor:
    """Index pairs ``(a, b)`` of the frames compared, shape ``(P, 2)``.

    Args:
        n_frames: Frames per sequence ``T`` (frame 0 is the clean image for noise sequences).
        noise: Compare every frame with frame 0 (noise) or consecutive strided frames (sequential).
        difficulty: Stride ``d`` of sequential perturbations (ignored for noise).

    Raises:
        ConfigError: fewer than 2 frames, ``d < 1`` or ``d >= T`` (nothing to compare).
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 2:
        raise ConfigError(f"Expected `n_frames` to be an integer >= 2, but got {n_frames!r}.")
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty < 1:
        raise ConfigError(f"Expected `difficulty` to be an integer >= 1, but got {difficulty!r}.")
    if noise:
        return torch.stack((torch.zeros(n_frames - 1, dtype=torch.long), torch.arange(1, n_frames)), dim=1)
    if difficulty >= n_frames:
        raise ConfigError(f"Expected a stride `difficulty` < {n_frames} frames, but got {difficulty}.")
    first = torch.arange(0, n_frames - difficulty)
    # Chains i, i+d, i+2d... compared consecutively are exactly the pairs (a, a+d) for a < T-d.
    return torch.stack((first, first + difficulty), dim=1)


def _check_frames(values: torch.Tensor, name: str, ndim: int) -> None:
    if not isinstance(values, torch.Tensor) or values.ndim != ndim:
        shape = list(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ConfigError(f"Expected `{name}` as a tensor with {ndim} dims (sequences, frames...), but got {shape}.")


def flip_probability(predictions: torch.Tensor, noise: bool, difficulty: int = 1) -> torch.Tensor:
    """Per-sequence flip probability.

    ``FP(seq) = (1/|P|) sum_{(a,b) in P} 1[pred_a != pred_b]`` with the pairs ``P`` of
    :func:`comparison_pairs` (Hendrycks & Dietterich 2019, Eq. for FP^p; official ``flip_prob``).

    Args:
        predictions: ``(N, T)`` top-1 class per frame.
        noise: Noise (compare with frame 0) or sequential semantics.
        difficulty: Stride of sequential perturbations.

    Returns:
        ``(N,)`` float64 flip probabilities; their mean is the perturbation's FP.

    Raises:
        ConfigError: bad shapes or strides.
    """
    _check_frames(predictions, "predictions", 2)
    pairs = comparison_pairs(predictions.shape[1], noise, difficulty).to(predictions.device)
    flips = predictions[:, pairs[:, 0]] != predictions[:, pairs[:, 1]]
    return flips.double().mean(dim=1)


def rankings(scores: torch.Tensor) -> torch.Tensor:
    """Rank (1 = highest score) of every class in every frame, ties broken by class index.

    This is ``scipy.stats.rankdata(-scores, method='ordinal')`` along the last dimension.

    Args:
        scores: ``(..., K)`` logits or probabilities.

    Returns:
        ``(..., K)`` int64 ranks in ``1..K``.
    """
    order = torch.sort(-scores, dim=-1, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order)
    return ranks.scatter_(-1, order, positions)


def top5_distance(scores: torch.Tensor, noise: bool, difficulty: int = 1) -> torch.Tensor:
    """Per-sequence top-5 distance.

    For a compared pair ``(a, b)`` let ``c_1..c_5`` be the five highest-scoring classes of frame
    ``a`` in order and ``sigma(i)`` the rank of ``c_i`` in frame ``b``. Their distance is
    ``d = sum_{i=1}^{5} sum_{j=min(i, sigma(i))+1}^{max(i, sigma(i))} 1[1 <= j-1 <= 5]
    = sum_{i=1}^{5} |min(sigma(i), 6) - i|`` (Hendrycks & Dietterich 2019, Sec. 3; official
    ``ranking_dist(mode='top5')``). A sequence's T5D is the mean of ``d`` over its pairs. With fewer
    than 5 classes, the sum runs over the ``K`` ranked classes.

    Args:
        scores: ``(N, T, K)`` logits (or probabilities) per frame.
        noise: Noise or sequential semantics (as :func:`flip_probability`).
        difficulty: Stride of sequential perturbations.

    Returns:
        ``(N,)`` float64 distances in ``[0, top5_distance_max(K)]`` (0: identical top-5 rankings).

    Raises:
        ConfigError: bad shapes or strides, or non-finite scores (a NaN has no rank).
    """
    _check_frames(scores, "scores", 3)
    if scores.is_floating_point() and not bool(torch.isfinite(scores).all()):
        raise ConfigError("Expected finite `scores`, but got NaN or infinite values: a NaN has no rank.")
    n_classes = scores.shape[2]
    top = min(5, n_classes)
    pairs = comparison_pairs(scores.shape[1], noise, difficulty).to(scores.device)
    # A stable sort (not topk) so that ties break by class index, as in `rankings`.
    order = torch.sort(-scores, dim=2, stable=True).indices
    leaders = order[..., :top]  # (N, T, top)
    ranks = torch.empty_like(order).scatter_(2, order, torch.arange(1, n_classes + 1, device=scores.device).expand_as(order))
    first = leaders[:, pairs[:, 0]]  # (N, P, top)
    sigma = ranks[:, pairs[:, 1]].gather(2, first)  # ranks in frame b of frame a's leaders
    position = torch.arange(1, top + 1, device=scores.device)
    distance = (sigma.clamp(max=6) - position).abs().sum(dim=2)  # (N, P)
    return distance.double().mean(dim=1)


@functools.cache
def top5_distance_max(num_classes: int) -> float:
    """The largest top-5 distance of one compared pair with ``num_classes`` classes (the support of
    :func:`top5_distance`): 18 from 8 classes on (the leaders 1-4 fall to rank 6 or below,
    ``5 + 4 + 3 + 2``, and the 5th rises to rank 1, ``4``); 2, 4, 8, 12, 15, 17 with 2 to 7 classes.

    Found by enumerating the ranks ``sigma`` the leaders can take in the other frame: injective
    maps into ``1..min(K, 10)`` (ranks beyond 6 count as 6, so 10 distinct ranks already give
    every value).
    """
    if num_classes < 1:
        raise ValueError(f"Expected at least one class, but got {num_classes}")
    top = min(5, num_classes)
    ranks = range(1, min(num_classes, 10) + 1)
    return float(max(
        sum(abs(min(rank, 6) - i) for i, rank in enumerate(sigma, start=1))
        for sigma in itertools.permutations(ranks, top)
    ))  # fmt: skip
