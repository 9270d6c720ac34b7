"""Batched versions of the OpenCV steps of the spatter corruption: Canny edges, a capped
Euclidean distance transform and histogram equalisation. Inputs are (N, 1, H, W) float tensors
holding 8-bit values (0..255)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robench.corruptions import _ops

_TAN_22_5 = math.tan(math.radians(22.5))
_TAN_67_5 = math.tan(math.radians(67.5))


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(image, low, high)`` (3 x 3 Sobel, L1 gradient magnitude) as a 0/1 float mask.

    Sobel with replicated borders; non-maximum suppression along the gradient direction
    quantised to 0, 45, 90, 135 degrees (strict on one side, non-strict on the other, like OpenCV);
    hysteresis grows edges from pixels above ``high`` through 8-connected pixels above ``low``.
    """
    padded = _ops.pad2d(image.double(), 1, 1, "nearest")
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64, device=image.device)
    gx = F.conv2d(padded, sobel_x.view(1, 1, 3, 3))
    gy = F.conv2d(padded, sobel_x.t().contiguous().view(1, 1, 3, 3))
    magnitude = gx.abs() + gy.abs()
    m = F.pad(magnitude, (1, 1, 1, 1))  # OpenCV pads the magnitude with zeros

    def at(dy: int, dx: int) -> torch.Tensor:
        height, width = magnitude.shape[-2:]
        return m[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < ax * _TAN_22_5
    vertical = ay > ax * _TAN_67_5
    same_sign = (gx * gy) >= 0
    keep_h = (magnitude > at(0, -1)) & (magnitude >= at(0, 1))
    keep_v = (magnitude > at(-1, 0)) & (magnitude >= at(1, 0))
    keep_d_same = (magnitude > at(-1, -1)) & (magnitude >= at(1, 1))
    keep_d_opp = (magnitude > at(-1, 1)) & (magnitude >= at(1, -1))
    keep = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, torch.where(same_sign, keep_d_same, keep_d_opp)))
    candidate = keep & (magnitude > low)
    edges = candidate & (magnitude > high)
    while True:
        grown = candidate & (F.max_pool2d(edges.double(), 3, stride=1, padding=1) > 0)
        if bool((grown == edges).all()):
            return edges.to(image.dtype)
        edges = grown


def capped_distance_to_edges(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """Euclidean distance of every pixel to the nearest edge pixel, capped at ``cap``.

    ``cv2.distanceTransform(255 - edges, DIST_L2, 5)`` then ``threshold(TRUNC, cap)``. Exact
    Euclidean distances (OpenCV's 5 x 5 mask approximates them to about 2%): any edge within
    ``cap`` lies within ``cap`` rows and columns, so two separable passes over +-cap shifts suffice.
    """
    big = float(cap * cap + 1)
    height, width = edges.shape[-2:]
    inf = torch.full_like(edges, big, dtype=torch.float64)
    on = edges > 0
    # Pass 1: squared vertical distance to the nearest edge in the same column.
    column = torch.where(on, torch.zeros_like(inf), inf)
    padded = F.pad(torch.where(on, 0.0, big).double(), (0, 0, cap, cap), value=big)
    for shift in range(1, cap + 1):
        column = torch.minimum(column, padded[..., cap + shift : cap + shift + height, :] + shift * shift)
        column = torch.minimum(column, padded[..., cap - shift : cap - shift + height, :] + shift * shift)
    # Pass 2: combine with horizontal offsets.
    total = column.clone()
    padded = F.pad(column, (cap, cap, 0, 0), value=big)
    for shift in range(1, cap + 1):
        total = torch.minimum(total, padded[..., :, cap + shift : cap + shift + width] + shift * shift)
        total = torch.minimum(total, padded[..., :, cap - shift : cap - shift + width] + shift * shift)
    return total.sqrt().clamp(max=float(cap)).to(edges.dtype)


def equalize_hist_uint8(image: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image on integer values 0..255.

    ``lut[i] = round(255 * (cdf(i) - h0) / (total - h0))`` with ``h0`` the count of the lowest
    occupied level (mapped to 0); a constant image keeps its value.
    """
    n = image.shape[0]
    values = image.reshape(n, -1).round().clamp(0, 255).long()
    hist = torch.zeros(n, 256, dtype=torch.float64, device=image.device).scatter_add_(1, values, torch.ones_like(values, dtype=torch.float64))
    first = (hist > 0).double().argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    total = float(values.shape[1])
    cdf = hist.cumsum(dim=1) - first_count
    scale = 255.0 / (total - first_count).clamp_min(1.0)
    lut = torch.round(cdf * scale).clamp(0, 255)
    lut = torch.where(torch.arange(256, device=image.device)[None] < first, torch.zeros_like(lut), lut)
    out = lut.gather(1, values).reshape(image.shape)
    constant = (first_count == total).view(n, 1, 1, 1)
    return torch.where(constant, image.round(), out).to(image.dtype)
