"""The OpenCV steps of spatter (robench/corruptions/_edges.py) against OpenCV itself, on random inputs
shaped like the ones spatter feeds them, so that the corruption matches the reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from robench.corruptions import _ops
from robench.corruptions._edges import canny, capped_distance_to_edges, equalize_hist_uint8

cv2 = pytest.importorskip("cv2")


def _as_batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float64))[None, None]


def test_canny_matches_opencv_on_spatter_like_liquid_layers() -> None:
    rng = np.random.default_rng(0)
    for trial in range(150):
        # Spatter's liquid layer: smoothed noise, cut below a threshold, as 8-bit (make_imagenet_c.py).
        sigma, threshold = [(4, 0.69), (3, 0.68), (2, 0.68), (1, 0.6)][trial % 4]
        liquid = gaussian_filter(0.65 + 0.3 * rng.normal(size=(32, 28)), sigma=sigma)
        liquid[liquid < threshold] = 0
        image = (liquid * 255).astype(np.uint8)
        expected = cv2.Canny(image, 50, 150) > 0
        got = canny(_as_batch(image), 50.0, 150.0)[0, 0].numpy() > 0
        assert (got == expected).all(), f"trial {trial}: {np.argwhere(got != expected)[:4].tolist()}"


def test_canny_matches_opencv_on_noise_with_other_thresholds() -> None:
    rng = np.random.default_rng(1)
    for trial in range(100):
        image = rng.integers(0, 256, size=(rng.integers(5, 30), rng.integers(5, 30))).astype(np.uint8)
        low, high = sorted(rng.choice([20, 50, 100, 150, 300], size=2, replace=False).tolist())
        expected = cv2.Canny(image, low, high) > 0
        got = canny(_as_batch(image), float(low), float(high))[0, 0].numpy() > 0
        assert (got == expected).all(), f"trial {trial}"


def test_capped_distance_matches_opencv_chamfer_distance() -> None:
    rng = np.random.default_rng(2)
    for trial in range(200):
        h, w = rng.integers(3, 45, size=2)
        density = rng.choice([0.0, 0.002, 0.01, 0.05, 0.3])
        edges = rng.random((h, w)) < density
        expected = cv2.distanceTransform(np.where(edges, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
        _, expected = cv2.threshold(expected, 20, 20, cv2.THRESH_TRUNC)
        got = capped_distance_to_edges(torch.from_numpy(edges.astype(np.float32))[None, None], 20)[0, 0].numpy()
        assert np.abs(got - expected).max() < 1e-5, f"trial {trial} ({h}x{w}, density {density})"


def test_capped_distance_is_chamfer_not_euclidean() -> None:
    # A single edge pixel: a knight's move away is 2.1969 under OpenCV's mask, sqrt(5) = 2.236 in truth.
    edges = torch.zeros(1, 1, 7, 7)
    edges[0, 0, 3, 3] = 1
    distance = capped_distance_to_edges(edges, 20)[0, 0]
    assert distance[3, 3] == 0 and distance[3, 4] == 1
    assert distance[4, 4] == pytest.approx(1.4, abs=1e-6)
    assert distance[4, 5] == pytest.approx(2.1969, abs=1e-6)


def test_blur_and_floor_match_opencv_on_distances() -> None:
    # Spatter blurs the distance map with cv2.blur(3 x 3, reflect-101 borders) and floors it.
    rng = np.random.default_rng(3)
    for trial in range(100):
        edges = rng.random((rng.integers(4, 40), rng.integers(4, 40))) < 0.05
        distance = cv2.distanceTransform(np.where(edges, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
        _, distance = cv2.threshold(distance, 20, 20, cv2.THRESH_TRUNC)
        expected = np.floor(cv2.blur(distance, (3, 3)))
        got = torch.floor(_ops.box_blur3(torch.from_numpy(distance.astype(np.float64))[None, None]).float())[0, 0].numpy()
        assert (got == expected).all(), f"trial {trial}"


def test_equalize_hist_matches_opencv_including_rounding_ties() -> None:
    rng = np.random.default_rng(4)
    for trial in range(1500):
        # Few distinct levels and small images make the half-way ties that float32 rounding decides.
        levels = rng.choice(21, size=rng.integers(1, 6), replace=False)
        image = rng.choice(levels, size=(rng.integers(2, 40), rng.integers(2, 40))).astype(np.uint8)
        got = equalize_hist_uint8(_as_batch(image))[0, 0].numpy()
        assert (got == cv2.equalizeHist(image)).all(), f"trial {trial}"


def test_equalize_hist_is_per_image_in_a_batch() -> None:
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size=(16, 16)).astype(np.uint8) for _ in range(3)]
    images[1][:] = 7  # a constant image keeps its value
    got = equalize_hist_uint8(torch.from_numpy(np.stack(images).astype(np.float64))[:, None])[:, 0].numpy()
    for image, out in zip(images, got):
        assert (out == cv2.equalizeHist(image)).all()
