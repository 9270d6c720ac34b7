"""Corruptions against the reference implementation (imagecorruptions, ImageNet-C table).

Inputs are 8-bit images given to both sides, so the formulas must agree to float rounding
(atol 1e-3 of the 0..255 scale), except where the reference quantises: PIL's pixelate rounds to
uint8 after each resize (atol 1 grey level). Random corruptions are compared on the same random
numbers: robench's draws are recorded and served to the reference in place of ``numpy.random``.
"""

from __future__ import annotations

import re


import numpy as np
import pytest
import torch

from robench.corruptions import TABLES
from robench.registry import registry
from tests.corruptions._images import mnist_batch, smooth_rgb
from tests.corruptions._reference import (
    SHARED_DRAWS,
    DrawFeeder,
    on_shared_draws,
    package_table,
    recorded_draws,
    reference_batch,
)

EXACT = ("contrast", "brightness", "defocus_blur", "gaussian_blur", "zoom_blur", "saturate", "jpeg_compression")
IMAGECORRUPTIONS_TABLE = package_table()


@pytest.mark.parametrize("images", ["rgb32", "gray28"])
@pytest.mark.parametrize("name", EXACT)
def test_deterministic_corruptions_match_imagecorruptions(name: str, images: str) -> None:
    x = smooth_rgb(2) if images == "rgb32" else mnist_batch(2)
    for severity in range(1, 6):
        ours = registry.get("corruption", name)(x.double(), severity, IMAGECORRUPTIONS_TABLE, torch.Generator()).numpy()
        np.testing.assert_allclose(ours * 255, reference_batch(x, name, severity) * 255, atol=1e-3, rtol=0)


def test_pixelate_matches_up_to_pil_uint8_rounding() -> None:
    x = smooth_rgb(2)
    for severity in range(1, 6):
        ours = registry.get("corruption", "pixelate")(x.double(), severity, IMAGECORRUPTIONS_TABLE, torch.Generator()).numpy()
        np.testing.assert_allclose(ours * 255, reference_batch(x, "pixelate", severity) * 255, atol=1.0 + 1e-6, rtol=0)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_noise_statistics_match_imagecorruptions(name: str) -> None:
    """Mean and std of the corrupted pixels agree within 3 standard errors on 8 x 32 x 32 x 3 draws."""
    x = smooth_rgb(8)
    severity = 3
    ours = registry.get("corruption", name)(x, severity, IMAGECORRUPTIONS_TABLE, torch.Generator().manual_seed(0)).numpy() - x.numpy()
    ref = reference_batch(x, name, severity) - x.numpy()
    n = ours.size
    assert abs(ours.mean() - ref.mean()) < 3 * np.sqrt((ours.var() + ref.var()) / n) + 1e-4
    assert abs(ours.std() - ref.std()) / ref.std() < 0.05


@pytest.mark.parametrize(("name", "images"), [(name, layout) for name, layouts in SHARED_DRAWS.items() for layout in layouts])
def test_random_corruptions_match_the_reference_on_the_same_draws(name: str, images: str) -> None:
    """Given robench's random numbers, the reference (with the released-data generator's formula where
    the package departs from it) produces the same images: every draw is consumed, none is missing."""
    x = smooth_rgb(2) if images == "rgb" else mnist_batch(2, start=7)
    for severity in range(1, 6):
        ours, ref = on_shared_draws(x.double(), name, severity, TABLES["imagenet"], torch.Generator().manual_seed(severity))
        # gray glass_blur: the reference's luma weights sum to 0.9999
        np.testing.assert_allclose(ours.numpy() * 255, ref * 255, atol=0.05, rtol=0, err_msg=f"{name} severity {severity}")


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


def test_fidelity_report_covers_every_corruption_and_severity() -> None:
    """docs/corruption_fidelity.md is the script's output: every table holds a row per corruption, with
    a cell per severity, and the accuracy table a paired interval in each cell."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "corruption_fidelity.md").read_text()
    assert "`python scripts/corruption_fidelity.py" in text and (root / "scripts" / "corruption_fidelity.py").is_file()
    tables: list[dict[str, list[str]]] = []
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| corruption")]
        if rows:
            tables.append({row.split("|")[1].strip(): [cell.strip() for cell in row.split("|")[2:-1]] for row in rows})
    assert len(tables) == 4  # pixels on gray and on RGB, demo-model accuracy, the package as it ships
    for table in tables[:3]:
        assert set(registry.names("corruption")) <= set(table)
        assert all(len([c for c in cells if c.startswith(("max", "Δmean")) or " / " in c]) == 5 for cells in table.values())
    accuracy = tables[2]
    assert all(re.search(r"\([+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", cell) for cells in accuracy.values() for cell in cells[1:])


@pytest.mark.parametrize("images", ["gray", "rgb"])
def test_spatter_liquid_above_one_wraps_like_the_reference_uint8_cast(images: str) -> None:
    """Near a corner, 'nearest' padding can lift the smoothed liquid above 1; the reference's
    ``astype(np.uint8)`` wraps it (x86), which changes the edges and the mask's normalisation."""
    from unittest import mock

    from robench.corruptions import _ops

    def spiky(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
        z = torch.zeros(shape)
        z[..., 8:14, 8:14] = 2.0  # a drop in the middle
        z[..., -1, -1] = 40.0  # a corner value the smoothing cannot bring under 1
        return z.to(device)

    x = smooth_rgb(1) if images == "rgb" else mnist_batch(1, start=3)
    with mock.patch.object(_ops, "randn", spiky):
        ours, ref = on_shared_draws(x.double(), "spatter", 3, TABLES["imagenet"], torch.Generator())
    np.testing.assert_allclose(ours.numpy() * 255, ref * 255, atol=0.05, rtol=0)


@pytest.mark.parametrize("scale", [0.2, 0.3, 0.175])
def test_frost_textures_equal_opencv_resize(scale: float) -> None:
    """make_cifar_c.py resizes the textures with cv2.resize(fx=scale): sampled at 1 / scale input
    pixels per output pixel (frost4's 527 px width is not a multiple of 5: resizing to a target size
    drifted by up to 0.4 px, 128 grey levels at the far edge)."""
    cv2 = pytest.importorskip("cv2")
    from robench.corruptions._textures import FROST_FILES, frost_dir, frost_textures

    for name, ours in zip(FROST_FILES, frost_textures(scale, 8, 8, "cpu")):
        reference = cv2.resize(cv2.imread(str(frost_dir() / name)), (0, 0), fx=scale, fy=scale)[..., ::-1].astype(np.int32)
        mine = (ours.permute(1, 2, 0).numpy() * 255).round().astype(np.int32)
        assert mine.shape == reference.shape, name
        # OpenCV interpolates uint8 in 11-bit fixed point: at most one level apart, exact at 0.2
        assert np.abs(mine - reference).max() <= (0 if scale == 0.2 else 1), name
