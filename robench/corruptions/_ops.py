"""Batched tensor building blocks of the corruptions: random draws, padding, filters, colour, resampling.

Everything works on ``(N, C, H, W)`` float tensors on any device. Random numbers are drawn on the
generator's device and moved to the data, so one generator gives the same corruption on CPU and GPU.
Filters and resampling run in full float32 there too (:func:`robench._numerics.ieee_fp32`): cuDNN's
default TF32 rounds the pixels to 10 mantissa bits, and a value on the 8-bit grid (every decoded
image) then truncates one level lower (glass blur's ``floor(255 x)`` after a one-tap blur lowered
about half the pixels by 1/255 against the CPU).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from robench._numerics import ieee_fp32


# --------------------------------------------------------------------------- random draws
def rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) floats drawn with ``generator``, on ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal floats drawn with ``generator``, on ``device``."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform floats in [low, high)."""
    return low + (high - low) * rand(shape, generator, device)


def randint(shape: tuple[int, ...], low: int, high: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Integers in [low, high) (int64)."""
    return torch.randint(low, high, shape, generator=generator, device=generator.device).to(device)


# --------------------------------------------------------------------------- padding / indices
def reflect_index(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Map integer indices outside ``[0, size)`` back inside.

    Modes: ``symmetric`` (scipy/skimage ``reflect``: d c b a | a b c d | d c b a),
    ``reflect101`` (OpenCV's default border, torch ``reflect``: d c b | a b c d | c b a),
    ``nearest`` (edge replicate).
    """
    if mode == "nearest" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "symmetric":
        period = 2 * size
        m = torch.remainder(index, period)
        return torch.where(m >= size, period - 1 - m, m)
    if mode == "reflect101":
        period = 2 * size - 2
        m = torch.remainder(index, period)
        return torch.where(m >= size, period - m, m)
    raise ValueError(f"Expected a padding mode among symmetric, reflect101, nearest, but got {mode!r}")


def pad2d(x: torch.Tensor, pad_h: int, pad_w: int, mode: str) -> torch.Tensor:
    """Pad the last two dims by ``pad_h``/``pad_w`` on both sides (any width, see :func:`reflect_index`)."""
    height, width = x.shape[-2:]
    rows = reflect_index(torch.arange(-pad_h, height + pad_h, device=x.device), height, mode)
    cols = reflect_index(torch.arange(-pad_w, width + pad_w, device=x.device), width, mode)
    return x[..., rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------- filters
def correlate2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel of ``x`` (N,C,H,W) with one 2-d ``kernel`` (kh, kw), same-size output."""
    kh, kw = kernel.shape
    channels = x.shape[1]
    padded = pad2d(x, kh // 2, kw // 2, mode)
    weight = kernel.to(x.dtype).to(x.device).expand(channels, 1, kh, kw)
    with ieee_fp32():
        return F.conv2d(padded, weight, groups=channels)


def separable(x: torch.Tensor, kernel_h: torch.Tensor, kernel_w: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate with ``kernel_h`` along H then ``kernel_w`` along W (odd lengths, centred)."""
    channels = x.shape[1]
    kernel_h = kernel_h.to(x.dtype).to(x.device)
    kernel_w = kernel_w.to(x.dtype).to(x.device)
    rh, rw = kernel_h.numel() // 2, kernel_w.numel() // 2
    with ieee_fp32():
        out = F.conv2d(pad2d(x, rh, 0, mode), kernel_h.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        return F.conv2d(pad2d(out, 0, rw, mode), kernel_w.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


@functools.lru_cache(maxsize=128)
def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised (float64)."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return weights / weights.sum()


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian per channel (default mode ``nearest``, truncate 4); sigma 0 is the identity."""
    if sigma <= 0:
        return x
    kernel = gaussian_kernel1d(sigma, truncate)
    return separable(x, kernel, kernel, mode)


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): 3x3 mean, OpenCV's default border (reflect101).

    As OpenCV computes it: the window sum (exact in float64 for 8-bit or float32 values) times
    the float64 ``1 / 9``, so a mean of whole numbers comes out whole (a later floor or round
    agrees with OpenCV's), not a hair below through two rounded 1/3 passes.
    """
    ones = torch.ones(3, dtype=torch.float64)
    return separable(x, ones, ones, "reflect101") * (1.0 / 9.0)


def cv2_gaussian_kernel1d(ksize: int, sigma: float) -> torch.Tensor:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0 (float64)."""
    offsets = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma * sigma))
    return weights / weights.sum()


# --------------------------------------------------------------------------- colour
def rgb_to_gray(x: torch.Tensor, weights: tuple[float, float, float] = (0.299, 0.587, 0.114)) -> torch.Tensor:
    """Luma (N,1,H,W) of an RGB batch (cv2.COLOR_RGB2GRAY weights by default)."""
    w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv on (N,3,H,W): hue in [0,1); ties resolve as blue > green > red."""
    r, g, b = x.unbind(dim=1)
    value = x.amax(dim=1)
    delta = value - x.amin(dim=1)
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    saturation = torch.where(value == 0, torch.zeros_like(value), delta / torch.where(value == 0, torch.ones_like(value), value))
    hue = torch.where(r == value, (g - b) / safe_delta, torch.zeros_like(value))
    hue = torch.where(g == value, 2.0 + (b - r) / safe_delta, hue)
    hue = torch.where(b == value, 4.0 + (r - g) / safe_delta, hue)
    hue = torch.remainder(hue / 6.0, 1.0)
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue)
    return torch.stack((hue, saturation, value), dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb on (N,3,H,W)."""
    hue, saturation, value = hsv.unbind(dim=1)
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    p = value * (1 - saturation)
    q = value * (1 - frac * saturation)
    t = value * (1 - (1 - frac) * saturation)
    sector = torch.remainder(sector, 6).long()
    choices = torch.stack(
        [
            torch.stack((value, t, p), dim=1),
            torch.stack((q, value, p), dim=1),
            torch.stack((p, value, t), dim=1),
            torch.stack((p, q, value), dim=1),
            torch.stack((t, p, value), dim=1),
            torch.stack((value, p, q), dim=1),
        ],
        dim=0,
    )
    index = sector.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)
    return choices.gather(0, index).squeeze(0)


def as_rgb(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Replicate a 1-channel batch to 3 channels; say whether it was gray."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1), True
    return x, False


# --------------------------------------------------------------------------- resampling
@functools.lru_cache(maxsize=128)
def pil_resample_matrix(in_size: int, out_size: int, kind: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(out_size, in_size) weights of PIL's ``Image.resize`` along one axis (``box`` or ``nearest``).

    Follows Pillow's ``precompute_coeffs``: output pixel ``o`` is centred at ``(o + 0.5) * scale`` in
    the input, the filter support is ``0.5 * max(scale, 1)``, weights are normalised.
    """
    scale = in_size / out_size
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    if kind == "nearest":
        # Pillow maps nearest-neighbour coordinates by accumulating the scale in floating point, so
        # exact-integer centres can land on either side; ask Pillow for its index map instead of
        # re-deriving its rounding (an index image of mode "I" resized along this axis).
        from PIL import Image

        ramp = Image.fromarray(np.arange(in_size, dtype=np.int32)[None, :])  # int32: mode "I"
        index = torch.from_numpy(np.asarray(ramp.resize((out_size, 1), Image.NEAREST), dtype=np.int64)[0].copy())  # type: ignore[attr-defined]  # Image.Resampling is Pillow >= 9.1
        return F.one_hot(index, in_size).to(dtype)
    if kind != "box":
        raise ValueError(f"Expected resampling filter 'box' or 'nearest', but got {kind!r}")
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    xmin = torch.clamp(torch.floor(centers - support + 0.5), min=0)
    xmax = torch.clamp(torch.floor(centers + support + 0.5), max=in_size)
    positions = torch.arange(in_size, dtype=torch.float64)
    arg = (positions[None, :] - centers[:, None] + 0.5) / filterscale
    weights = ((arg > -0.5) & (arg <= 0.5)).to(torch.float64)
    inside = (positions[None, :] >= xmin[:, None]) & (positions[None, :] < xmax[:, None])
    weights = weights * inside
    return (weights / weights.sum(dim=1, keepdim=True)).to(dtype)


@functools.lru_cache(maxsize=128)
def linear_zoom_matrix(in_size: int, zoom: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(out, in) weights of scipy.ndimage.zoom(order=1) along one axis; out = round(in * zoom).

    scipy (``grid_mode=False``) maps output ``o`` to input ``o * (in - 1) / (out - 1)``.
    """
    out_size = int(round(in_size * zoom))
    if out_size <= 1 or in_size <= 1:
        coords = torch.zeros(max(out_size, 1), dtype=torch.float64)
    else:
        coords = torch.arange(out_size, dtype=torch.float64) * (in_size - 1) / (out_size - 1)
    low = torch.floor(coords).long().clamp(0, in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = coords - low
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.scatter_add_(1, low[:, None], (1 - frac)[:, None])
    matrix.scatter_add_(1, high[:, None], frac[:, None])
    return matrix.to(dtype)


@functools.lru_cache(maxsize=128)
def clipped_zoom_matrix(size: int, zoom: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(size, size) weights of make_imagenet_c's ``clipped_zoom`` along one axis.

    Crop the central ``ceil(size / zoom)`` pixels, zoom them linearly, trim the centre ``size``.
    """
    crop = int(math.ceil(size / zoom))
    top = (size - crop) // 2
    zoomed = linear_zoom_matrix(crop, zoom)
    trim = (zoomed.shape[0] - size) // 2
    zoomed = zoomed[trim : trim + size]
    matrix = torch.zeros(size, size, dtype=torch.float64)
    rows = zoomed.shape[0]
    matrix[:rows, top : top + crop] = zoomed
    return matrix.to(dtype)


def apply_axes(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ cols.T`` over the last two dims (separable linear resampling)."""
    rows = rows.to(x.dtype).to(x.device)
    cols = cols.to(x.dtype).to(x.device)
    with ieee_fp32():  # float32 matmuls are TF32 after torch.set_float32_matmul_precision("high")
        return torch.matmul(torch.matmul(rows, x), cols.t())


def apply_axes_two_tap(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """:func:`apply_axes` for matrices with at most two non-zeros per row (linear or nearest resampling).

    Gathers the two source lines per output line instead of multiplying dense matrices: O(H W)
    work per image instead of O(H W (H + W)).
    """
    row_w, row_i = rows.abs().topk(min(2, rows.shape[1]), dim=1)
    row_w = rows.gather(1, row_i).to(x.dtype).to(x.device)
    col_w, col_i = cols.abs().topk(min(2, cols.shape[1]), dim=1)
    col_w = cols.gather(1, col_i).to(x.dtype).to(x.device)
    row_i, col_i = row_i.to(x.device), col_i.to(x.device)
    out = x[..., row_i[:, 0], :] * row_w[:, 0, None]
    for k in range(1, row_i.shape[1]):
        out = out + x[..., row_i[:, k], :] * row_w[:, k, None]
    result = out[..., col_i[:, 0]] * col_w[:, 0]
    for k in range(1, col_i.shape[1]):
        result = result + out[..., col_i[:, k]] * col_w[:, k]
    return result


def bilinear_sample(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample ``x`` (N,C,H,W) at float coordinates ``ys``/``xs`` (N,H',W') with linear interpolation.

    Out-of-range neighbours are mapped back with :func:`reflect_index` (``mode``), which is how
    scipy's ``map_coordinates(order=1, mode='reflect')`` and OpenCV's ``BORDER_REFLECT_101`` behave.
    """
    n, c, h, w = x.shape
    y0 = torch.floor(ys)
    x0 = torch.floor(xs)
    wy = (ys - y0).to(x.dtype)
    wx = (xs - x0).to(x.dtype)
    y0 = y0.long()
    x0 = x0.long()
    flat = x.reshape(n, c, h * w)

    def gather(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = reflect_index(yi, h, mode) * w + reflect_index(xi, w, mode)
        return flat.gather(2, index.reshape(n, 1, -1).expand(n, c, -1)).reshape(n, c, *ys.shape[1:])

    top = gather(y0, x0) * (1 - wx)[:, None] + gather(y0, x0 + 1) * wx[:, None]
    bottom = gather(y0 + 1, x0) * (1 - wx)[:, None] + gather(y0 + 1, x0 + 1) * wx[:, None]
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def shift_gather(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ``shift``: per-image integer shift (N,) with edge replication."""
    n, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] - dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device)[None, :] - dx[:, None]).clamp(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, -1)
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ImageMagick-free motion blur: a one-sided Gaussian line kernel at ``angle``.

    Tap ``i`` (0..2*radius) of weight ``exp(-i^2 / (2 sigma^2))`` (normalised over all taps) takes
    the image shifted by ``(-ceil(i sin(a) - 0.5), -ceil(i cos(a) - 0.5))`` with edge replication;
    taps whose shift reaches the image size are dropped (the reference stops there too).
    """
    n, _, h, w = x.shape
    width = 2 * int(radius) + 1
    taps = torch.arange(width, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * float(sigma) ** 2))
    kernel = (kernel / kernel.sum()).to(x.dtype).to(x.device)
    angle = torch.deg2rad(angle_deg.to(torch.float64)).to(x.device)
    out = torch.zeros_like(x)
    alive = torch.ones(n, dtype=torch.bool, device=x.device)
    for i in range(width):
        dy = -torch.ceil(i * torch.sin(angle) - 0.5).long()
        dx = -torch.ceil(i * torch.cos(angle) - 0.5).long()
        alive = alive & (dy.abs() < h) & (dx.abs() < w)
        if not bool(alive.any()):
            break
        out = out + (kernel[i] * alive.to(x.dtype)).view(n, 1, 1, 1) * shift_gather(x, dy, dx)
    return out


# --------------------------------------------------------------------------- codecs
def libjpeg_roundtrip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode ``(N, C, H, W)`` uint8 images as baseline JPEG at ``quality`` and decode them (uint8, on the CPU).

    libjpeg via torchvision (4:2:0 chroma, as PIL's default) on every device, the reference's codec:
    nvJPEG, torchvision's CUDA codec, uses other DCT arithmetic (3/255 mean difference), and the same
    images would differ by device."""
    from torchvision.io import decode_jpeg, encode_jpeg

    decoded = decode_jpeg(encode_jpeg(list(images.cpu().unbind(0)), quality=quality))
    return torch.stack(decoded)
