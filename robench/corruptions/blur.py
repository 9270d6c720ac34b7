"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur.

Formulas of make_cifar_c.py / make_imagenet_c.py (hendrycks/robustness) with the ImageMagick-free
motion blur of the imagecorruptions package (bethgelab/imagecorruptions).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from robench.corruptions import _ops
from robench.corruptions._base import corruption
from robench.corruptions.params import CorruptionTable


@functools.lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk: a normalised 0/1 disk on a grid of at least 17 x 17, Gaussian-blurred.

    The grid is ``[-8, 8]^2`` up to radius 8 (blurred with a 3 x 3 kernel), ``[-r, r]^2`` beyond (5 x 5),
    both with OpenCV's reflect-101 border, as ``cv2.GaussianBlur`` does.
    """
    half, ksize = (8, 3) if radius <= 8 else (int(radius), 5)
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    aliased = ((offsets[None, :] ** 2 + offsets[:, None] ** 2) <= radius**2).to(torch.float64)
    aliased = aliased / aliased.sum()
    gauss = _ops.cv2_gaussian_kernel1d(ksize, alias_blur)
    return _ops.separable(aliased[None, None], gauss, gauss, "reflect101")[0, 0]


@corruption("defocus_blur", "blur")
def defocus_blur(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Correlate every channel with an anti-aliased disk (``cv2.filter2D``, reflect-101 border)."""
    radius, alias_blur = table("defocus_blur", severity)
    return _ops.correlate2d(x, disk_kernel(float(radius), float(alias_blur)), "reflect101")


@corruption("gaussian_blur", "blur", extra=True)
def gaussian_blur(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """skimage ``gaussian`` per channel (nearest border, truncate 4)."""
    return _ops.gaussian_filter(x, float(table("gaussian_blur", severity)))


def _local_copy(x: torch.Tensor, max_delta: int, generator: torch.Generator) -> torch.Tensor:
    """One pass of the reference's pixel "swap" loop, vectorised.

    The reference visits ``(h, w)`` for ``h`` from ``H - d`` down to ``d + 1`` (row-major, backwards),
    draws ``dx, dy`` in ``[-d, d)`` and executes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``, which with
    numpy views copies pixel ``(h', w')`` onto ``(h, w)``. A source visited earlier in the same pass
    already holds its copied value, so the final value of a pixel follows a chain of copies; the
    chains are resolved by pointer jumping (``log2`` of the longest chain steps), exactly.
    """
    n, c, height, width = x.shape
    rows = torch.arange(height - max_delta, max_delta, -1)
    cols = torch.arange(width - max_delta, max_delta, -1)
    if rows.numel() == 0 or cols.numel() == 0:
        return x
    device = x.device
    size = height * width
    nxt = torch.arange(size, device=device).expand(n, size).clone()
    draws = _ops.randint((n, rows.numel(), cols.numel(), 2), -max_delta, max_delta, generator, device)
    h = rows.to(device)[None, :, None]
    w = cols.to(device)[None, None, :]
    flat = (h * width + w).expand(n, -1, -1)
    source = (h + draws[..., 1]) * width + (w + draws[..., 0])
    nxt.scatter_(1, flat.reshape(n, -1), source.reshape(n, -1))
    visited = torch.zeros(size, dtype=torch.bool, device=device)
    visited[(h * width + w).reshape(-1)] = True
    index = torch.arange(size, device=device)
    # p continues its chain when its source is a visited pixel processed before it (larger flat index).
    terminal = ~(visited[nxt] & (nxt > index))
    while not bool(terminal.all()):
        terminal_next = terminal.gather(1, nxt)
        nxt = torch.where(terminal, nxt, nxt.gather(1, nxt))
        terminal = terminal | terminal_next
    flat_x = x.reshape(n, c, size)
    return flat_x.gather(2, nxt[:, None, :].expand(n, c, size)).reshape(n, c, height, width)


@corruption("glass_blur", "blur")
def glass_blur(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, quantise to uint8 (truncating), shuffle pixels locally ``iterations`` times, blur again."""
    sigma, max_delta, iterations = table("glass_blur", severity)
    blurred = torch.floor(_ops.gaussian_filter(x, float(sigma)) * 255.0) / 255.0
    for _ in range(int(iterations)):
        blurred = _local_copy(blurred, int(max_delta), generator)
    return _ops.gaussian_filter(blurred, float(sigma))


@corruption("motion_blur", "blur")
def motion_blur(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """One-sided Gaussian line blur of ``2 * radius + 1`` taps at an angle ``U(-45, 45)`` degrees per image."""
    radius, sigma = table("motion_blur", severity)
    angle = _ops.uniform((x.shape[0],), -45.0, 45.0, generator, torch.device("cpu")).double()
    return _ops.motion_blur(x, int(radius), float(sigma), angle)


def zoom_factors(stop: float, step: float) -> list[float]:
    """``np.arange(1, stop, step)``: the reference's zoom factors, with numpy's float quirks kept."""
    return [float(z) for z in np.arange(1, stop, step)]


@corruption("zoom_blur", "blur")
def zoom_blur(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Mean of the image and its centre zooms (linear interpolation) at every factor of the severity."""
    stop, step = table("zoom_blur", severity)
    height, width = x.shape[-2:]
    factors = zoom_factors(stop, step)
    out = x.clone()
    for factor in factors:
        out += _ops.apply_axes_two_tap(x, _ops.clipped_zoom_matrix(height, factor), _ops.clipped_zoom_matrix(width, factor))
    return out / (len(factors) + 1)
