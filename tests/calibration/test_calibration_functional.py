"""Calibration metrics against torchmetrics, netcal and brute-force numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from netcal.metrics import ECE as NetcalECE
from netcal.metrics import MCE as NetcalMCE
from torchmetrics.functional.classification import multiclass_calibration_error

from robench._errors import ConfigError
from robench.calibration import (
    CalibrationAccumulator,
    adaptive_calibration_error,
    brier_score,
    calibration_metrics,
    classwise_calibration_error,
    expected_calibration_error,
    max_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)


def _random(n: int, k: int, seed: int, temperature: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen) * temperature
    labels = torch.where(
        torch.rand(n, generator=gen) < 0.6, logits.argmax(1), torch.randint(0, k, (n,), generator=gen)
    )
    return logits.softmax(1), labels


def _binned_reference(conf: np.ndarray, hit: np.ndarray, n_bins: int, right_closed: bool, min_count: int = 1) -> tuple[float, float]:
    """Guo et al.'s ECE and MCE with an explicit loop over bins (right- or left-closed); the MCE over
    the bins holding at least ``min_count`` examples (NaN when none does)."""
    # The same float edges as robench (torch.linspace in the confidences' dtype): "on an edge" is
    # equality with these floats.
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.from_numpy(conf[:1]).dtype).numpy()
    ece, mce, counted = 0.0, 0.0, False
    for m in range(n_bins):
        low, high = edges[m], edges[m + 1]
        if right_closed:
            inside = (conf > low) & (conf <= high) if m > 0 else (conf >= low) & (conf <= high)
        else:
            inside = (conf >= low) & (conf < high) if m < n_bins - 1 else (conf >= low) & (conf <= high)
        if inside.any():
            gap = abs(hit[inside].mean() - conf[inside].astype(np.float64).mean())
            ece += inside.mean() * gap
            if inside.sum() >= min_count:
                mce, counted = max(mce, gap), True
    return ece, mce if counted else float("nan")


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (10, 2), (100, 3)])
@pytest.mark.parametrize("n_bins", [15, 7])
def test_ece_mce_equal_torchmetrics(k: int, seed: int, n_bins: int) -> None:
    probs, labels = _random(3000, k, seed)
    ece_tm = float(multiclass_calibration_error(probs, labels, k, n_bins=n_bins, norm="l1"))
    mce_tm = float(multiclass_calibration_error(probs, labels, k, n_bins=n_bins, norm="max"))
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(ece_tm, abs=1e-6)
    # torchmetrics takes the MCE over every non-empty bin: robench's min_count=1
    assert max_calibration_error(probs, labels, n_bins, min_count=1) == pytest.approx(mce_tm, abs=1e-6)


@pytest.mark.parametrize("k,seed", [(3, 4), (10, 5), (50, 6)])
def test_ece_mce_equal_netcal(k: int, seed: int) -> None:
    probs, labels = _random(2000, k, seed)
    x, y = probs.double().numpy(), labels.numpy()
    assert expected_calibration_error(probs.double(), labels) == pytest.approx(NetcalECE(bins=15).measure(x, y), abs=1e-9)
    assert max_calibration_error(probs.double(), labels, min_count=1) == pytest.approx(NetcalMCE(bins=15).measure(x, y), abs=1e-9)


EDGE_CASES = {
    "one-hot": (torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])], torch.tensor([0, 1, 2, 3, 1, 1])),
    "uniform (argmax ties)": (torch.full((6, 3), 1 / 3), torch.tensor([0, 0, 1, 2, 2, 0])),
    "near one half": (torch.tensor([[0.5, 0.49, 0.01], [0.51, 0.48, 0.01], [0.02, 0.5, 0.48]]), torch.tensor([1, 0, 2])),
    "single example": (torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([1])),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases_equal_torchmetrics_and_netcal(case: str) -> None:
    probs, labels = EDGE_CASES[case]
    probs = probs.double()
    k = probs.shape[1]
    ece, mce = expected_calibration_error(probs, labels), max_calibration_error(probs, labels, min_count=1)
    assert ece == pytest.approx(float(multiclass_calibration_error(probs, labels, k, n_bins=15, norm="l1")), abs=1e-6)
    assert mce == pytest.approx(float(multiclass_calibration_error(probs, labels, k, n_bins=15, norm="max")), abs=1e-6)
    if len(labels.unique()) == k:  # netcal infers the class count from the labels present
        x, y = probs.numpy(), labels.numpy()
        assert ece == pytest.approx(NetcalECE(bins=15).measure(x, y), abs=1e-9)
        assert mce == pytest.approx(NetcalMCE(bins=15).measure(x, y), abs=1e-9)


@pytest.mark.parametrize("n,k,n_bins,min_count,seed", [(200, 10, 10, 10, 0), (3000, 10, 15, 10, 1), (500, 3, 15, 25, 2), (60, 5, 10, 10, 3)])
def test_mce_over_bins_of_a_minimum_count_equals_brute_force(n: int, k: int, n_bins: int, min_count: int, seed: int) -> None:
    """The MCE over bins of at least ``min_count`` examples (bins of one example set the old MCE:
    0.71 for one correct digit at confidence 0.29) against a loop over the bins; the one-shot and
    batched metrics agree with it."""
    probs, labels = _random(n, k, seed, temperature=1.0)  # spread-out confidences: sparse bins at the low end
    conf, pred = probs.max(1)
    hit = (pred == labels).double().numpy()
    _, reference = _binned_reference(conf.numpy(), hit, n_bins, right_closed=True, min_count=min_count)
    _, every_bin = _binned_reference(conf.numpy(), hit, n_bins, right_closed=True)
    counts = reliability_bins(probs, labels, n_bins).count
    assert bool(((counts > 0) & (counts < min_count)).any())  # some bins are left out
    assert max_calibration_error(probs, labels, n_bins, min_count=min_count) == pytest.approx(reference, abs=1e-9)
    assert max_calibration_error(probs, labels, n_bins, min_count=1) == pytest.approx(every_bin, abs=1e-9)
    assert calibration_metrics(probs, labels, n_bins, mce_min_count=min_count).mce == pytest.approx(reference, abs=1e-9)
    accumulator = CalibrationAccumulator(n_bins, mce_min_count=min_count)
    for part in range(0, n, 37):
        accumulator.update(probs[part : part + 37], labels[part : part + 37])
    assert accumulator.compute().mce == pytest.approx(reference, abs=1e-9)


def test_mce_min_count_is_checked() -> None:
    probs, labels = _random(20, 3, 0)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="min_count"):
            max_calibration_error(probs, labels, 10, min_count=bad)  # type: ignore[arg-type]


def test_classwise_ece_binary_equals_netcal_binary_ece() -> None:
    # netcal reads an (N, 2) input as a binary problem: calibration of p(y = 1) over bins of p1.
    # With K = 2 the two classes' binned errors coincide, so the classwise ECE is that number.
    probs, labels = _random(4000, 2, 7)
    x, y = probs.double().numpy(), labels.numpy()
    assert classwise_calibration_error(probs.double(), labels) == pytest.approx(NetcalECE(bins=15).measure(x, y), abs=1e-9)


def test_edge_confidences_follow_guo_right_closed_bins() -> None:
    # Top-label confidences exactly on inner bin edges (as float32): Guo's bins put m/M in bin m,
    # torchmetrics' left-closed bins put it in bin m+1. Each matches its own brute-force reference.
    n_bins, k = 15, 20
    edges = torch.linspace(0, 1, n_bins + 1)
    rows, labels = [], []
    for i, m in enumerate(range(2, n_bins)):
        # One example exactly on the edge m/M (right) and a companion inside the next bin (wrong):
        # left-closed bins put both in one bin, right-closed bins keep them apart.
        for top, right in ((float(edges[m]), True), (float(edges[m]) + 0.02, False)):
            rest = (1 - top) / (k - 1)
            row = torch.full((k,), rest, dtype=torch.float32)
            row[i % k] = top
            rows.append(row)
            labels.append(i % k if right else (i + 1) % k)
    probs, labels_t = torch.stack(rows), torch.tensor(labels)
    conf, pred = probs.max(1)
    assert torch.equal(conf[::2], edges[2:n_bins])
    hit = (pred == labels_t).double().numpy()
    ours = expected_calibration_error(probs, labels_t, n_bins)
    right, right_max = _binned_reference(conf.numpy(), hit, n_bins, right_closed=True)
    left, _ = _binned_reference(conf.numpy(), hit, n_bins, right_closed=False)
    assert ours == pytest.approx(right, abs=1e-7)
    assert max_calibration_error(probs, labels_t, n_bins, min_count=1) == pytest.approx(right_max, abs=1e-7)
    torchmetrics_value = float(multiclass_calibration_error(probs, labels_t, k, n_bins=n_bins, norm="l1"))
    assert torchmetrics_value == pytest.approx(left, abs=1e-6)
    assert abs(right - left) > 1e-3  # the conventions really differ on these inputs


def test_extreme_confidences() -> None:
    # Confidence 1.0 lands in the last bin, one-hot correct predictions are perfectly calibrated.
    probs = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0])]
    labels = torch.tensor([0, 1, 2, 3, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(1 / 5)
    assert max_calibration_error(probs, labels, min_count=1) == pytest.approx(1 / 5)
    assert max_calibration_error(probs, labels, min_count=5) == pytest.approx(1 / 5)  # the one bin holds all five
    assert np.isnan(max_calibration_error(probs, labels))  # no bin of the default 10 examples: no MCE
    bins = reliability_bins(probs, labels)
    assert int(bins.count[-1]) == 5 and int(bins.count[:-1].sum()) == 0
    uniform = torch.full((6, 3), 1 / 3)
    assert expected_calibration_error(uniform, torch.tensor([0, 0, 0, 1, 2, 2])) == pytest.approx(abs(3 / 6 - 1 / 3), abs=1e-6)


def test_adaptive_and_classwise_equal_brute_force() -> None:
    probs, labels = _random(1003, 6, 8)
    n_bins = 15
    conf, pred = probs.max(1)
    order = np.argsort(conf.numpy(), kind="stable")
    hit = (pred == labels).double().numpy()
    expected = 0.0
    for group in np.array_split(order, n_bins):
        expected += len(group) / len(order) * abs(hit[group].mean() - conf.double().numpy()[group].mean())
    assert adaptive_calibration_error(probs, labels, n_bins) == pytest.approx(expected, abs=1e-9)

    p, y = probs.double().numpy(), labels.numpy()
    per_class = []
    for c in range(p.shape[1]):
        onehot = (y == c).astype(np.float64)
        per_class.append(_binned_reference(p[:, c], onehot, n_bins, right_closed=True)[0])
    assert classwise_calibration_error(probs.double(), labels, n_bins) == pytest.approx(np.mean(per_class), abs=1e-9)


def test_brier_and_nll_equal_references() -> None:
    from sklearn.metrics import log_loss

    probs, labels = _random(500, 5, 9)
    probs = probs.double()
    probs = probs / probs.sum(dim=1, keepdim=True)  # rows summing to 1 in float64, as sklearn's log_loss checks
    onehot = np.eye(5)[labels.numpy()]
    assert brier_score(probs, labels) == pytest.approx(((probs.double().numpy() - onehot) ** 2).sum(1).mean(), abs=1e-9)
    assert negative_log_likelihood(probs.double(), labels) == pytest.approx(
        log_loss(labels.numpy(), probs.double().numpy(), labels=list(range(5))), abs=1e-9
    )
    # A zero probability on the true class costs a large but finite amount.
    zero = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    assert 80 < negative_log_likelihood(*zero) < 90


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulated_equals_one_shot_over_random_splits(seed: int) -> None:
    probs, labels = _random(777, 7, 10 + seed)
    once = calibration_metrics(probs, labels, 15)
    gen = np.random.default_rng(seed)
    cuts = np.sort(gen.choice(np.arange(1, 777), size=gen.integers(1, 12), replace=False))
    accumulator = CalibrationAccumulator(15)
    for chunk_p, chunk_y in zip(np.split(probs.numpy(), cuts), np.split(labels.numpy(), cuts)):
        accumulator.update(torch.from_numpy(chunk_p), torch.from_numpy(chunk_y))
    batched = accumulator.compute()
    for name in ("ece", "mce", "adaptive_ece", "classwise_ece", "brier", "nll", "accuracy"):
        assert getattr(batched, name) == pytest.approx(getattr(once, name), abs=1e-10), name
    assert batched.n == once.n == 777
    assert torch.allclose(batched.reliability.count, once.reliability.count)
    assert once.ece == pytest.approx(expected_calibration_error(probs, labels), abs=1e-12)
    assert once.adaptive_ece == pytest.approx(adaptive_calibration_error(probs, labels), abs=1e-12)


def test_accumulator_empty_and_class_mismatch() -> None:
    accumulator = CalibrationAccumulator()
    assert accumulator.compute().ece == 0.0
    accumulator.update(*_random(10, 3, 0))
    with pytest.raises(ConfigError, match="3 classes"):
        accumulator.update(*_random(10, 4, 0))


@pytest.mark.parametrize(
    "probs,labels,n_bins,message",
    [
        (torch.full((2, 3), 1 / 3), torch.tensor([0, 1]), 0, "n_bins"),
        (torch.full((2, 3), 1 / 3), torch.tensor([0, 1]), True, "n_bins"),
        (torch.randn(2, 3) * 5, torch.tensor([0, 1]), 15, "logits|sum to 1"),
        (torch.full((2, 3), 0.2), torch.tensor([0, 1]), 15, "sum to 1"),
        (torch.full((2, 3), 1 / 3), torch.tensor([0, 3]), 15, "labels"),
        (torch.full((2, 3), 1 / 3), torch.tensor([0.0, 1.0]), 15, "integer"),
        (torch.full((2, 3), 1 / 3), torch.tensor([0, 1, 2]), 15, "shape"),
        (torch.full((3,), 1 / 3), torch.tensor([0]), 15, "shape"),
        (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), 15, "finite"),
    ],
)
def test_bad_inputs_raise_config_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expected_calibration_error(probs, labels, n_bins)  # type: ignore[arg-type]


def test_temperature_refuses_nan_and_inf_logits() -> None:
    # scipy's bounded search on a NaN objective returned T = 0.337 without a word
    from robench.calibration.temperature import apply_temperature, fit_temperature

    logits, labels = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 4
    for bad in (float("nan"), float("inf")):
        broken = logits.clone()
        broken[3, 1] = bad
        with pytest.raises(ConfigError, match="NaN or \\+inf"):
            fit_temperature(broken, labels)
        with pytest.raises(ConfigError, match="NaN or \\+inf"):
            apply_temperature(broken, 1.5)
    minus_inf = logits.clone()
    minus_inf[3, 1] = -float("inf")  # a log-probability of 0 is a valid logit
    assert 0.01 < fit_temperature(minus_inf, labels).temperature < 100



def test_reliability_bins_equal_a_loop_over_guo_bins() -> None:
    """Per-bin count, mean confidence and accuracy of the reliability diagram (only the counts were
    checked: the two means could be swapped) against a loop over right-closed bins; empty bins NaN."""
    probs, labels = _random(700, 5, 11, temperature=1.0)
    n_bins = 12
    conf, pred = probs.max(1)
    conf_np, hit = conf.double().numpy(), (pred == labels).double().numpy()
    edges = torch.linspace(0.0, 1.0, n_bins + 1).double().numpy()
    bins = reliability_bins(probs, labels, n_bins)
    assert bins.edges.numpy() == pytest.approx(np.linspace(0.0, 1.0, n_bins + 1), abs=1e-7)
    for m in range(n_bins):
        inside = (conf_np > edges[m]) & (conf_np <= edges[m + 1]) if m else (conf_np <= edges[1])
        assert int(bins.count[m]) == int(inside.sum())
        if inside.any():
            assert float(bins.confidence[m]) == pytest.approx(conf_np[inside].mean(), abs=1e-7)
            assert float(bins.accuracy[m]) == pytest.approx(hit[inside].mean(), abs=1e-12)
        else:
            assert np.isnan(float(bins.confidence[m])) and np.isnan(float(bins.accuracy[m]))
    assert bool((bins.count == 0).any()) and bool((bins.count > 0).sum() > 3)  # empty and filled bins both checked
    metrics = calibration_metrics(probs, labels, n_bins)
    for name in ("count", "confidence", "accuracy"):
        assert torch.allclose(getattr(metrics.reliability, name), getattr(bins, name), equal_nan=True), name


def test_every_metric_of_the_accumulator_equals_an_independent_reference() -> None:
    """Each field of ``calibration_metrics`` (the accumulator) against torchmetrics, sklearn and numpy:
    the batched-versus-one-shot test compares the accumulator with itself, which a wrong divisor of
    Brier or NLL, or the classwise ECE fed the top-label bins, passes."""
    from sklearn.metrics import accuracy_score, log_loss

    probs, labels = _random(900, 6, 12)
    probs = probs.double() / probs.double().sum(dim=1, keepdim=True)
    p, y = probs.numpy(), labels.numpy()
    accumulator = CalibrationAccumulator(15, mce_min_count=1)
    for part in range(0, 900, 250):
        accumulator.update(probs[part : part + 250], labels[part : part + 250])
    metrics = accumulator.compute()
    assert metrics.n == 900 and metrics.correct == int((p.argmax(1) == y).sum())
    assert metrics.accuracy == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-12)
    assert metrics.ece == pytest.approx(float(multiclass_calibration_error(probs, labels, 6, n_bins=15, norm="l1")), abs=1e-6)
    assert metrics.mce == pytest.approx(float(multiclass_calibration_error(probs, labels, 6, n_bins=15, norm="max")), abs=1e-6)
    assert metrics.brier == pytest.approx(((p - np.eye(6)[y]) ** 2).sum(1).mean(), abs=1e-12)
    assert metrics.nll == pytest.approx(log_loss(y, p, labels=list(range(6))), abs=1e-9)
    per_class = [_binned_reference(p[:, c], (y == c).astype(np.float64), 15, right_closed=True)[0] for c in range(6)]
    assert metrics.classwise_ece == pytest.approx(np.mean(per_class), abs=1e-9)
    order = np.argsort(p.max(1), kind="stable")
    hit = (p.argmax(1) == y).astype(np.float64)
    adaptive = sum(len(g) / 900 * abs(hit[g].mean() - p.max(1)[g].mean()) for g in np.array_split(order, 15))
    assert metrics.adaptive_ece == pytest.approx(adaptive, abs=1e-9)


def test_no_examples_give_zero_metrics_and_an_mce_of_zero() -> None:
    """Without examples every metric is 0 (the MCE is NaN only when examples exist but no bin holds
    ``min_count``), for the functions and the accumulator alike."""
    probs, labels = torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
    assert max_calibration_error(probs, labels) == 0.0 and max_calibration_error(probs, labels, min_count=1) == 0.0
    for metric in (expected_calibration_error, adaptive_calibration_error, classwise_calibration_error, brier_score, negative_log_likelihood):
        assert metric(probs, labels) == 0.0, metric.__name__
    for metrics in (CalibrationAccumulator().compute(), calibration_metrics(probs, labels)):
        assert (metrics.n, metrics.ece, metrics.mce, metrics.adaptive_ece, metrics.brier, metrics.nll) == (0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_a_zero_probability_on_the_true_class_costs_minus_log_of_the_dtype_tiny() -> None:
    """The NLL clamps at the smallest normal number of the probabilities' dtype: 87.3 nats in float32,
    708.4 in float64 (not float32's 87.3 for float64 inputs)."""
    import math

    for dtype, expected in ((torch.float32, 87.336544750553), (torch.float64, 708.3964185322641)):
        probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=dtype)
        assert expected == pytest.approx(-math.log(float(np.finfo(np.float32 if dtype == torch.float32 else np.float64).tiny)), rel=1e-12)
        assert negative_log_likelihood(probs, torch.tensor([1, 0])) == pytest.approx((expected + math.log(2)) / 2, rel=1e-12)


@pytest.mark.parametrize(
    "probs,labels,message",
    [
        (torch.tensor([[1.0005, 0.0], [0.5, 0.5]]), torch.tensor([0, 1]), r"in \[0, 1\]"),  # row sum within tolerance, value above 1
        (torch.full((2, 3), 1 / 3), torch.tensor([-1, 1]), "labels"),  # one_hot / gather raise RuntimeError, not ConfigError
    ],
)
def test_values_above_one_and_negative_labels_raise_config_error(probs: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    for metric in (expected_calibration_error, negative_log_likelihood, brier_score):
        with pytest.raises(ConfigError, match=message):
            metric(probs, labels)


def test_adaptive_ece_splits_tied_confidences_in_their_given_order() -> None:
    """Many examples share each of four confidences (a quantised model): which tied examples fall into
    which equal-mass bin changes the value, and robench keeps their order (numpy's stable argsort
    with array_split); an unstable sort, which reorders ties from about 50 examples on, gave another."""
    n, n_bins, k = 600, 7, 5
    gen = np.random.default_rng(0)
    conf = np.array([0.4, 0.55, 0.7, 0.9])[gen.integers(0, 4, n)]
    hit = (gen.random(n) < np.where(np.arange(n) < n // 2, conf + 0.1, conf - 0.2)).astype(np.float64)  # drifts along the order
    probs = np.empty((n, k))
    probs[:, 0], probs[:, 1:] = conf, ((1 - conf) / (k - 1))[:, None]
    labels = np.where(hit == 1, 0, 1 + gen.integers(0, k - 1, n))

    def reference(order: np.ndarray) -> float:
        return sum(len(g) / n * abs(hit[g].mean() - conf[g].mean()) for g in np.array_split(order, n_bins))

    expected = reference(np.argsort(conf, kind="stable"))
    assert abs(reference(np.lexsort((-np.arange(n), conf))) - expected) > 1e-3  # ties the other way round: another value
    assert adaptive_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), n_bins) == pytest.approx(expected, abs=1e-12)


def test_a_perfectly_calibrated_model_has_an_mce_of_zero_not_nan() -> None:
    """One-hot probabilities, all correct: every filled bin has gap 0, so the MCE is 0 (the largest
    gap of an eligible bin may be exactly 0; NaN is for no eligible bin)."""
    probs, labels = torch.eye(3)[torch.tensor([0, 1, 2] * 4)], torch.tensor([0, 1, 2] * 4)
    assert max_calibration_error(probs, labels) == 0.0 and max_calibration_error(probs, labels, min_count=1) == 0.0
    assert float(multiclass_calibration_error(probs, labels, 3, n_bins=15, norm="max")) == 0.0
    assert calibration_metrics(probs, labels).mce == 0.0 and expected_calibration_error(probs, labels) == 0.0


def test_reliability_json_writes_empty_bins_as_null() -> None:
    """Empty bins have NaN means, which JSON cannot hold: ``to_json`` writes them as None."""
    import json

    probs, labels = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]]), torch.tensor([0, 1, 0])
    data = reliability_bins(probs, labels, n_bins=5).to_json()
    assert data["count"] == [0, 0, 1, 1, 1]
    assert data["confidence"][:2] == [None, None] and data["accuracy"][:2] == [None, None]
    assert data["confidence"][2:] == pytest.approx([0.6, 0.8, 0.9]) and data["accuracy"][2:] == [1.0, 0.0, 1.0]
    json.loads(json.dumps(data, allow_nan=False))


@pytest.mark.parametrize(
    "probs,labels,message",
    [
        (torch.tensor([[0.5, 0.505], [0.5, 0.5]], dtype=torch.float64), torch.tensor([0, 1]), "sum to 1"),  # off by 5e-3 > 1e-3
        (torch.ones(2, 1), torch.tensor([0, 0]), "K >= 2"),  # one class: no calibration to measure
    ],
)
def test_rows_off_by_more_than_the_tolerance_and_a_single_class_raise_config_error(probs: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expected_calibration_error(probs, labels)
    assert expected_calibration_error(torch.tensor([[0.5, 0.5005], [0.5, 0.5]], dtype=torch.float64), torch.tensor([0, 1])) >= 0  # within 1e-3
