"""Weather corruptions: snow, frost, fog, and the extra spatter.

Formulas of make_cifar_c.py / make_imagenet_c.py (hendrycks/robustness); snow's ImageMagick
motion blur is the imagecorruptions package's Gaussian line kernel (:func:`_ops.motion_blur`).
"""

from __future__ import annotations

import torch

from robench.corruptions import _ops
from robench.corruptions._base import corruption
from robench.corruptions._edges import canny, capped_distance_to_edges, equalize_hist_uint8
from robench.corruptions._textures import N_USED, frost_textures
from robench.corruptions.params import CorruptionTable

# rgb2gray of the imagecorruptions package (frost and spatter on gray images).
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def _gray(x: torch.Tensor, weights: tuple[float, float, float] = _GRAY_WEIGHTS) -> torch.Tensor:
    return _ops.rgb_to_gray(x, weights)


def next_power_of_two(value: int) -> int:
    """Smallest power of two >= ``value`` (1 for 0)."""
    return 1 if value <= 1 else 1 << (value - 1).bit_length()


def plasma_fractal(n: int, mapsize: int, wibble_decay: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` diamond-square height maps (n, mapsize, mapsize) normalised to [0, 1].

    Each step sets new points to the mean of their four neighbours (periodic) plus
    ``wibble * U(-wibble, wibble)``; ``wibble`` starts at 100 and is divided by ``wibble_decay``
    each time the step halves (the reference's ``plasma_fractal``).
    """
    heights = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=device)
    step, wibble = mapsize, 100.0

    def jitter(mean: torch.Tensor) -> torch.Tensor:
        return mean / 4 + wibble * _ops.uniform(tuple(mean.shape), -wibble, wibble, generator, device).double()

    while step >= 2:
        half = step // 2
        corners = heights[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        heights[:, half::step, half::step] = jitter(squares)
        centres = heights[:, half::step, half::step]
        corners = heights[:, 0::step, 0::step]
        left = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        heights[:, 0::step, half::step] = jitter(left)
        top = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        heights[:, half::step, 0::step] = jitter(top)
        step //= 2
        wibble /= wibble_decay
    heights = heights - heights.amin(dim=(1, 2), keepdim=True)
    return heights / heights.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


@corruption("fog", "weather")
def fog(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Add ``c0`` times a plasma fractal, then rescale: ``(x + c0 * plasma) * max(x) / (max(x) + c0)``."""
    amount, decay = table("fog", severity)
    n, _, height, width = x.shape
    plasma = plasma_fractal(n, next_power_of_two(max(height, width)), float(decay), generator, x.device)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + amount * plasma[:, None, :height, :width].to(x.dtype)) * peak / (peak + amount)


@corruption("frost", "weather")
def frost(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """``c0 * x + c1 * frost``, a random crop of one of five frost textures (gray images: its luma)."""
    image_weight, frost_weight = table("frost", severity)
    n, channels, height, width = x.shape
    scale = table.frost_scale * min(height, width) / table.base_size
    textures = frost_textures(round(scale, 6), height, width, str(x.device))
    choice = _ops.randint((n,), 0, N_USED, generator, torch.device("cpu"))
    u_top = _ops.rand((n,), generator, torch.device("cpu"))
    u_left = _ops.rand((n,), generator, torch.device("cpu"))
    layer = torch.empty(n, 3, height, width, dtype=x.dtype, device=x.device)
    for index in choice.unique().tolist():
        members = (choice == index).nonzero().flatten()
        texture = textures[index].to(x.dtype)
        # randint(0, size - side): a uniform integer offset in [0, size - side).
        tops = (u_top[members] * (texture.shape[1] - height)).long()
        lefts = (u_left[members] * (texture.shape[2] - width)).long()
        rows = (tops[:, None] + torch.arange(height)).to(x.device)
        cols = (lefts[:, None] + torch.arange(width)).to(x.device)
        crops = texture[:, rows[:, :, None], cols[:, None, :]]  # (3, m, H, W)
        layer[members.to(x.device)] = crops.permute(1, 0, 2, 3)
    if channels == 1:
        layer = _gray(layer)
    return image_weight * x + frost_weight * layer


def _clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    height, width = x.shape[-2:]
    return _ops.apply_axes_two_tap(x, _ops.clipped_zoom_matrix(height, factor), _ops.clipped_zoom_matrix(width, factor))


@corruption("snow", "weather")
def snow(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Zoomed, thresholded Gaussian flakes, motion-blurred at ``U(-135, -45)`` degrees, added twice (once rotated 180)."""
    mean, std, zoom, threshold, radius, sigma, image_weight = table("snow", severity)
    n, channels, height, width = x.shape
    flakes = mean + std * _ops.randn((n, 1, height, width), generator, x.device).to(x.dtype)
    flakes = _clipped_zoom(flakes, float(zoom))
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0, 1)
    # The reference truncates the layer to 8 bits (astype(np.uint8)) for ImageMagick's motion blur,
    # whose output is 8-bit again (rounded): make_cifar_c.py / make_imagenet_c.py, snow.
    flakes = torch.floor(flakes * 255.0) / 255.0
    angle = _ops.uniform((n,), -135.0, -45.0, generator, torch.device("cpu")).double()
    flakes = _ops.motion_blur(flakes, int(radius), float(sigma), angle)
    flakes = torch.round(flakes * 255.0) / 255.0
    luma = x if channels == 1 else _ops.rgb_to_gray(x)
    x = image_weight * x + (1 - image_weight) * torch.maximum(x, luma * 1.5 + 0.5)
    return x + flakes + flakes.flip(-1, -2)


@corruption("spatter", "weather", extra=True)
def spatter(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Water drops (edge-shaded pale turquoise) or mud (brown blobs) from a thresholded smoothed noise layer."""
    mean, std, sigma, threshold, intensity, mud = table("spatter", severity)
    n, channels, height, width = x.shape
    liquid = mean + std * _ops.randn((n, 1, height, width), generator, x.device).double()
    liquid = _ops.gaussian_filter(liquid, float(sigma))
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        # The reference casts with ``astype(np.uint8)``: a smoothed value above 1 (near the corners, where
        # 'nearest' padding repeats one noise value) wraps modulo 256 on x86, where the data were made.
        liquid8 = torch.remainder(torch.floor(liquid * 255.0), 256.0)
        distance = capped_distance_to_edges(canny(liquid8, 50.0, 150.0), cap=20)
        distance = torch.floor(_ops.box_blur3(distance).float())  # float32 blur, astype(uint8)
        distance = equalize_hist_uint8(distance)
        emboss = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
        distance = torch.round(_ops.correlate2d(distance, emboss, "reflect101")).clamp(0, 255)
        distance = torch.round(_ops.box_blur3(distance))  # uint8 blur rounds
        mask = liquid8 * distance
        mask = mask / mask.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12) * intensity
        colour = torch.tensor([175.0, 238.0, 238.0], dtype=mask.dtype, device=x.device).view(1, 3, 1, 1) / 255.0
        stain = mask * colour
        if channels == 1:
            return x + _gray(stain.clamp(0, 1)).to(x.dtype)
        return x + stain.to(x.dtype)
    mask = _ops.gaussian_filter((liquid > threshold).double(), float(intensity))
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask).to(x.dtype)
    colour = torch.tensor([63.0, 42.0, 20.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255.0 * mask
    if channels == 1:
        colour = _gray(colour)
    return x * (1 - mask) + colour
