"""``quantize_as_released`` against the released sets' own conversions, done with numpy and PIL."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from robench._errors import ConfigError
from robench.corruptions import TABLES
from robench.corruptions._quantize import QUANTIZE_MODES, quantize_as_released
from robench.registry import registry
from tests.corruptions._images import mnist_batch, smooth_rgb


def _batches() -> dict[str, torch.Tensor]:
    """Corrupted float batches (off the 8-bit grid), the grid itself, and values just below its steps."""
    generator = torch.Generator().manual_seed(0)
    noisy_rgb = registry.get("corruption", "gaussian_noise")(smooth_rgb(4), 3, TABLES["cifar10"], generator)
    fog_gray = registry.get("corruption", "fog")(mnist_batch(4), 2, TABLES["cifar10"], generator)
    grid = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 16, 16)
    below = torch.nextafter(grid, torch.zeros_like(grid)).clamp(0, 1)
    return {"noisy_rgb": noisy_rgb, "fog_gray": fog_gray, "grid": grid, "below_grid": below, "uniform64": torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=generator)}


@pytest.mark.parametrize("which", ["noisy_rgb", "fog_gray", "grid", "below_grid", "uniform64"])
def test_uint8_is_numpys_truncating_cast(which: str) -> None:
    """make_cifar_c.py stores ``np.uint8(corruption(img))`` of the 0..255 float image: a truncation."""
    x = _batches()[which]
    got = quantize_as_released(x, "uint8")
    expected = np.uint8(255 * x.numpy()).astype(np.float64)
    assert got.dtype == x.dtype and got.shape == x.shape
    assert np.array_equal(np.round(got.double().numpy() * 255), expected)  # exactly the levels numpy keeps
    assert torch.equal(got, (torch.from_numpy(expected) / 255).to(x.dtype))  # and each level k is the float k / 255
    if which == "grid":
        assert torch.equal(got, x)  # clean 8-bit images do not move
    if which == "below_grid":
        levels = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16)
        assert torch.equal(got.flatten()[1:] * 255, levels.flatten()[:-1])  # one ulp under step k is k - 1


def test_truncation_darkens_by_half_a_level_on_average() -> None:
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(1)).view(10, 1, 100, 100)
    shift = float((quantize_as_released(x, "uint8") - x).mean()) * 255
    assert shift == pytest.approx(-0.5, abs=0.01)


@pytest.mark.parametrize("images", ["rgb", "gray"])
def test_jpeg85_is_pils_save_of_the_uint8_image(images: str) -> None:
    """make_imagenet_c.py: ``Image.fromarray(np.uint8(img)).save(path, quality=85, optimize=True)``."""
    generator = torch.Generator().manual_seed(2)
    clean = smooth_rgb(3) if images == "rgb" else mnist_batch(3)
    x = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    got = quantize_as_released(x, "jpeg85")
    for image, out in zip(x.numpy(), got.numpy()):
        array = np.uint8(255 * image.transpose(1, 2, 0))
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, "JPEG", quality=85, optimize=True)
        decoded = np.asarray(Image.open(buffer)).reshape(array.shape).transpose(2, 0, 1)
        assert np.array_equal(np.round(out * 255), decoded)


def test_none_leaves_the_batch_as_it_is_and_other_modes_are_refused() -> None:
    x = smooth_rgb(2)
    assert quantize_as_released(x, "none") is x
    assert QUANTIZE_MODES == ("none", "uint8", "jpeg85")
    with pytest.raises(ConfigError, match=r"Expected `quantize` to be one of none, uint8, jpeg85, but got 'int8'"):
        quantize_as_released(x, "int8")
