"""Flip probability and top-5 distance against hand-computed values and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from robench._errors import ConfigError
from robench.stability import comparison_pairs, flip_probability, rankings, top5_distance
from robench.stability.functional import top5_distance_max


def _flip_brute_force(predictions: np.ndarray, noise: bool, difficulty: int) -> float:
    """FP as the paper defines it, with explicit loops over sequences, chains and frames."""
    per_sequence = []
    for sequence in predictions:
        flips = []
        if noise:  # every frame against the clean frame 0
            flips = [int(sequence[j] != sequence[0]) for j in range(1, len(sequence))]
        else:  # chains i, i+d, i+2d, ... compared consecutively
            for start in range(difficulty):
                chain = sequence[start::difficulty]
                flips += [int(chain[j] != chain[j - 1]) for j in range(1, len(chain))]
        per_sequence.append(np.mean(flips))
    return float(np.mean(per_sequence))


def _top5_pair_distance(scores_a: np.ndarray, scores_b: np.ndarray) -> int:
    """d(tau(x), tau(x')) = sum_{i=1}^{5} sum_{j=min(i, s(i))+1}^{max(i, s(i))} 1[1 <= j-1 <= 5],
    with s(i) the rank in x' of the class ranked i in x (ranks from scipy's rankdata, ordinal)."""
    rank_a = rankdata(-scores_a, method="ordinal")
    rank_b = rankdata(-scores_b, method="ordinal")
    total = 0
    for i in range(1, min(5, len(scores_a)) + 1):
        cls = int(np.flatnonzero(rank_a == i)[0])
        sigma = int(rank_b[cls])
        total += sum(1 for j in range(min(i, sigma) + 1, max(i, sigma) + 1) if 1 <= j - 1 <= 5)
    return total


def _t5d_brute_force(scores: np.ndarray, noise: bool, difficulty: int) -> float:
    per_sequence = []
    for sequence in scores:
        distances = []
        if noise:
            distances = [_top5_pair_distance(sequence[0], sequence[j]) for j in range(1, len(sequence))]
        else:
            for start in range(difficulty):
                chain = sequence[start::difficulty]
                distances += [_top5_pair_distance(chain[j - 1], chain[j]) for j in range(1, len(chain))]
        per_sequence.append(np.mean(distances))
    return float(np.mean(per_sequence))


def test_flip_probability_hand_computed() -> None:
    predictions = torch.tensor([[0, 1, 1, 1, 1], [3, 3, 2, 3, 3]])
    # Sequential, stride 1: pairs (0,1) (1,2) (2,3) (3,4).
    assert flip_probability(predictions, noise=False).tolist() == [1 / 4, 2 / 4]
    # Noise: frames 1..4 against frame 0.
    assert flip_probability(predictions, noise=True).tolist() == [4 / 4, 1 / 4]
    # Stride 2: chains 0,2,4 and 1,3 give pairs (0,2) (2,4) (1,3).
    assert flip_probability(predictions, noise=False, difficulty=2).tolist() == [1 / 3, 2 / 3]
    # Stride 3: chains 0,3 / 1,4 / 2 give pairs (0,3) (1,4).
    assert flip_probability(predictions, noise=False, difficulty=3).tolist() == [1 / 2, 0.0]
    # Noise ignores the stride (the difficulty picks the noise strength instead).
    assert flip_probability(predictions, noise=True, difficulty=3).tolist() == [1.0, 1 / 4]


@pytest.mark.parametrize("noise", [True, False])
@pytest.mark.parametrize("difficulty", [1, 2, 3, 5])
@pytest.mark.parametrize("frames", [16, 21, 31])
def test_flip_probability_equals_brute_force(noise: bool, difficulty: int, frames: int) -> None:
    gen = torch.Generator().manual_seed(frames * 10 + difficulty)
    # Sticky predictions (mostly repeats) so that flip probabilities are away from 0 and 1.
    changes = torch.rand(40, frames, generator=gen) < 0.3
    predictions = torch.cumsum(changes.long() * torch.randint(1, 3, (40, frames), generator=gen), dim=1) % 4
    ours = flip_probability(predictions, noise, difficulty)
    assert ours.shape == (40,)
    assert float(ours.mean()) == pytest.approx(_flip_brute_force(predictions.numpy(), noise, difficulty), abs=1e-12)


def test_rankings_equal_scipy_ordinal_with_ties() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.2, 0.5], [3.0, 3.0, 1.0, 2.0, 0.0]])
    expected = np.stack([rankdata(-row, method="ordinal") for row in scores.numpy()])
    assert np.array_equal(rankings(scores).numpy(), expected)


def test_top5_distance_constructed_rankings() -> None:
    classes = 10
    base = torch.arange(classes, 0, -1, dtype=torch.float64)  # class 0 first, class 9 last

    def frame(order: list[int]) -> torch.Tensor:
        scores = torch.empty(classes, dtype=torch.float64)
        scores[torch.tensor(order)] = base
        return scores

    identity = list(range(classes))
    swap12 = [1, 0] + identity[2:]  # top-1 and top-2 exchange places: |2-1| + |1-2| = 2
    drop_first = identity[1:] + [0]  # former top-1 falls to rank 10: min(10, 6) - 1 = 5, and 4 x 1
    swap56 = [0, 1, 2, 3, 5, 4] + identity[6:]  # only rank 5 <-> 6 changes: |min(6, 6) - 5| = 1
    outside = [0, 1, 2, 3, 4, 6, 5] + identity[7:]  # ranks 6 and 7 exchange: top-5 unchanged
    for order, expected in ((identity, 0), (swap12, 2), (drop_first, 9), (swap56, 1), (outside, 0)):
        scores = torch.stack([frame(identity), frame(order)])[None]
        assert float(top5_distance(scores, noise=False)[0]) == expected
        assert _top5_pair_distance(scores[0, 0].numpy(), scores[0, 1].numpy()) == expected


@pytest.mark.parametrize("noise,difficulty,classes", [(True, 1, 10), (False, 1, 10), (False, 2, 7), (True, 2, 4), (False, 3, 1000)])
def test_top5_distance_equals_brute_force(noise: bool, difficulty: int, classes: int) -> None:
    gen = torch.Generator().manual_seed(classes + difficulty)
    drift = torch.randn(6, 1, classes, generator=gen, dtype=torch.float64)
    scores = drift + 0.4 * torch.randn(6, 12, classes, generator=gen, dtype=torch.float64)
    scores[0, 3] = scores[0, 2]  # identical frames
    scores[1, :, :3] = 1.0  # ties broken by class index
    ours = top5_distance(scores, noise, difficulty)
    assert float(ours.mean()) == pytest.approx(_t5d_brute_force(scores.numpy(), noise, difficulty), abs=1e-12)
    assert float(ours.max()) <= top5_distance_max(classes)


def test_comparison_pairs_and_errors() -> None:
    assert comparison_pairs(4, noise=True).tolist() == [[0, 1], [0, 2], [0, 3]]
    assert comparison_pairs(5, noise=False, difficulty=2).tolist() == [[0, 2], [1, 3], [2, 4]]
    # (1, True, 1): a single frame has no pair under noise semantics either (FP would be a NaN mean)
    for args in ((1, False, 1), (1, True, 1), (5, False, 0), (5, False, 5), (5.0, False, 1)):
        with pytest.raises(ConfigError):
            comparison_pairs(*args)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dims"):
        flip_probability(torch.zeros(5, dtype=torch.long), noise=True)


@pytest.mark.parametrize("classes", [2, 3, 4, 5, 6, 7])
def test_top5_distance_max_is_the_largest_distance_of_any_ranking(classes: int) -> None:
    """The support used by the stability intervals: every reordering of the second frame, scored with
    the paper's double sum (not 15, which 7 or more classes exceed, nor 15 below 5 classes)."""
    import itertools

    base = np.arange(classes, 0, -1, dtype=np.float64)
    largest = 0
    for order in itertools.permutations(range(classes)):
        scores_b = np.empty(classes)
        scores_b[list(order)] = base
        largest = max(largest, _top5_pair_distance(base, scores_b))
    assert top5_distance_max(classes) == largest  # 2, 4, 8, 12, 15, 17, 18


def test_top5_distance_reaches_18_with_many_classes() -> None:
    """The leaders 1-4 fall below rank 5 (5 + 4 + 3 + 2) and the 5th becomes the top class (4)."""
    classes = 12
    base = torch.arange(classes, 0, -1, dtype=torch.float64)
    order = [4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 11]  # new ranking: class 4 first, classes 0-3 at ranks 8-11
    second = torch.empty(classes, dtype=torch.float64)
    second[torch.tensor(order)] = base
    scores = torch.stack([base, second])[None]
    assert float(top5_distance(scores, noise=False)[0]) == 18 == _top5_pair_distance(base.numpy(), second.numpy())
    assert top5_distance_max(classes) == 18 and top5_distance_max(1000) == 18


def test_top5_distance_refuses_non_finite_scores() -> None:
    """NaN scores sort last (argmax would take them first): a number came back for them."""
    scores = torch.randn(2, 4, 10, generator=torch.Generator().manual_seed(0))
    scores[0, 1, 3] = float("nan")
    with pytest.raises(ConfigError, match="finite"):
        top5_distance(scores, noise=True)


@pytest.mark.parametrize("classes", [100, 1000])
def test_heavy_ties_break_by_class_index_with_many_classes(classes: int) -> None:
    """Scores on three levels, so hundreds of classes tie: ranks and T5D must break ties by class index
    as scipy's ordinal rankdata does. An unstable sort agrees with it on short rows only (from about
    100 classes on, torch's CPU sort reorders tied entries), which the 5-class tie tests could not see."""
    gen = torch.Generator().manual_seed(classes)
    scores = torch.randint(0, 3, (4, 6, classes), generator=gen).double()
    expected = np.stack([rankdata(-row, method="ordinal") for row in scores.reshape(-1, classes).numpy()])
    assert np.array_equal(rankings(scores).reshape(-1, classes).numpy(), expected)
    for noise in (True, False):
        ours = top5_distance(scores, noise)
        assert float(ours.mean()) == pytest.approx(_t5d_brute_force(scores.numpy(), noise, 1), abs=1e-12)
        assert float(ours.mean()) > 0  # the top-5 sets differ between frames: ties do decide the distances
