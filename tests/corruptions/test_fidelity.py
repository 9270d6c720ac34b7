"""Corruptions against the reference implementation (imagecorruptions, ImageNet-C table).

Inputs are 8-bit images given to both sides, so the formulas must agree to float rounding
(atol 1e-3 of the 0..255 scale), except where the reference quantises: PIL's pixelate rounds to
uint8 after each resize (atol 1 grey level). Random corruptions are compared on the same random
numbers: robench's draws are recorded and served to the reference in place of ``numpy.random``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robench.corruptions import TABLES
from robench.registry import registry
from tests.corruptions._images import mnist_batch, smooth_rgb
from tests.corruptions._reference import SHARED_DRAWS, DrawFeeder, recorded_draws, reference_corrupt, reference_on_draws

# imagecorruptions up-samples pixelate with NEAREST where make_imagenet_c.py uses BOX.
_ROWS = dict(TABLES["imagenet"].rows)
_ROWS["pixelate"] = tuple((fraction, "nearest") for fraction, _ in _ROWS["pixelate"])
IMAGECORRUPTIONS_TABLE = dataclasses.replace(TABLES["imagenet"], rows=_ROWS)

EXACT = ("contrast", "brightness", "defocus_blur", "gaussian_blur", "zoom_blur", "saturate", "jpeg_compression")


def _reference_batch(x: torch.Tensor, name: str, severity: int) -> np.ndarray:
    images = (x * 255).round().to(torch.uint8).numpy()
    out = [reference_corrupt(im.transpose(1, 2, 0) if im.shape[0] == 3 else im[0], name, severity, seed=i) for i, im in enumerate(images)]
    ref = np.stack(out)
    return ref.transpose(0, 3, 1, 2) if ref.ndim == 4 else ref[:, None]


@pytest.mark.parametrize("images", ["rgb32", "gray28"])
@pytest.mark.parametrize("name", EXACT)
def test_deterministic_corruptions_match_imagecorruptions(name: str, images: str) -> None:
    x = smooth_rgb(2) if images == "rgb32" else mnist_batch(2)
    for severity in range(1, 6):
        ours = registry.get("corruption", name)(x.double(), severity, IMAGECORRUPTIONS_TABLE, torch.Generator()).numpy()
        np.testing.assert_allclose(ours * 255, _reference_batch(x, name, severity) * 255, atol=1e-3, rtol=0)


def test_pixelate_matches_up_to_pil_uint8_rounding() -> None:
    x = smooth_rgb(2)
    for severity in range(1, 6):
        ours = registry.get("corruption", "pixelate")(x.double(), severity, IMAGECORRUPTIONS_TABLE, torch.Generator()).numpy()
        np.testing.assert_allclose(ours * 255, _reference_batch(x, "pixelate", severity) * 255, atol=1.0 + 1e-6, rtol=0)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_noise_statistics_match_imagecorruptions(name: str) -> None:
    """Mean and std of the corrupted pixels agree within 3 standard errors on 8 x 32 x 32 x 3 draws."""
    x = smooth_rgb(8)
    severity = 3
    ours = registry.get("corruption", name)(x, severity, IMAGECORRUPTIONS_TABLE, torch.Generator().manual_seed(0)).numpy() - x.numpy()
    ref = _reference_batch(x, name, severity) - x.numpy()
    n = ours.size
    assert abs(ours.mean() - ref.mean()) < 3 * np.sqrt((ours.var() + ref.var()) / n) + 1e-4
    assert abs(ours.std() - ref.std()) / ref.std() < 0.05


@pytest.mark.parametrize(("name", "images"), [(name, layout) for name, layouts in SHARED_DRAWS.items() for layout in layouts])
def test_random_corruptions_match_the_reference_on_the_same_draws(name: str, images: str) -> None:
    """Given robench's random numbers, the reference (with the released-data generator's formula where
    the package departs from it) produces the same images: every draw is consumed, none is missing."""
    x = smooth_rgb(2) if images == "rgb" else mnist_batch(2, start=7)
    pixels = (x * 255).round().to(torch.uint8).numpy()
    for severity in range(1, 6):
        with recorded_draws() as draws:
            ours = registry.get("corruption", name)(x.double(), severity, TABLES["imagenet"], torch.Generator().manual_seed(severity))
        for i, image in enumerate(pixels):
            ref = reference_on_draws(image.transpose(1, 2, 0) if images == "rgb" else image[0], name, severity, DrawFeeder.for_image(draws, i))
            ref = ref.transpose(2, 0, 1) if ref.ndim == 3 else ref[None]
            # gray glass_blur: the reference's luma weights sum to 0.9999
            np.testing.assert_allclose(ours[i].numpy() * 255, ref * 255, atol=0.05, rtol=0, err_msg=f"{name} severity {severity} image {i}")


def test_draw_feeder_refuses_draws_that_do_not_line_up() -> None:
    with recorded_draws() as draws:
        registry.get("corruption", "motion_blur")(smooth_rgb(1), 1, TABLES["imagenet"], torch.Generator().manual_seed(0))
    feeder = DrawFeeder.for_image(draws, 0)
    with pytest.raises(AssertionError, match="not in"):
        feeder.uniform(0.0, 1.0)  # the recorded angle lies in [-45, 45)
    with pytest.raises(AssertionError, match="more uniform"):
        feeder.uniform(-45.0, 45.0)
    unused = DrawFeeder.for_image(draws, 0)
    with pytest.raises(AssertionError, match="never used"):
        unused.check_exhausted()
