"""Batched versions of the OpenCV steps of the spatter corruption: Canny edges, OpenCV's 5 x 5
chamfer distance transform (capped) and histogram equalisation. Inputs are (N, 1, H, W) float
tensors holding 8-bit values (0..255)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.corruptions import _ops


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(image, low, high)`` (3 x 3 Sobel, L1 gradient magnitude) as a 0/1 float mask.

    Sobel with replicated borders; non-maximum suppression along the gradient direction
    quantised to 0, 45, 90, 135 degrees (like OpenCV: strict towards the previous row or column and
    non-strict towards the next one along the axes, strict both ways along the diagonals);
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

    # OpenCV's sector test in its own fixed point (imgproc/src/canny.cpp: CANNY_SHIFT 15,
    # TG22 = round(tan(22.5 deg) * 2^15) = 13573), so boundary gradients fall on the same side.
    ax, ay = gx.abs(), gy.abs() * 32768
    tg22x = ax * 13573
    horizontal = ay < tg22x
    vertical = ay > tg22x + ax * 65536
    same_sign = (gx * gy) >= 0
    keep_h = (magnitude > at(0, -1)) & (magnitude >= at(0, 1))
    keep_v = (magnitude > at(-1, 0)) & (magnitude >= at(1, 0))
    keep_d_same = (magnitude > at(-1, -1)) & (magnitude > at(1, 1))  # strict on both sides on diagonals
    keep_d_opp = (magnitude > at(-1, 1)) & (magnitude > at(1, -1))
    keep = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, torch.where(same_sign, keep_d_same, keep_d_opp)))
    candidate = keep & (magnitude > low)
    edges = candidate & (magnitude > high)
    while True:
        grown = candidate & (F.max_pool2d(edges.double(), 3, stride=1, padding=1) > 0)
        if bool((grown == edges).all()):
            return edges.to(image.dtype)
        edges = grown


# OpenCV's weights of the 5 x 5 mask for DIST_L2 (axial, diagonal, knight's move), float32 there
# (opencv imgproc/src/distransform.cpp, getDistanceTransformMask).
CHAMFER_5X5 = (1.0, 1.4, 2.1969)


def capped_distance_to_edges(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """``cv2.distanceTransform(255 - edges, DIST_L2, 5)`` then ``threshold(TRUNC, cap)``.

    OpenCV's 5 x 5 chamfer distance (within about 2% of the Euclidean one): the shortest path
    to an edge pixel in steps of 1 (axial), 1.4 (diagonal) and 2.1969 (knight's move), found as
    OpenCV finds it, by a forward and a backward raster pass. Each pass walks the rows; a row
    takes the rows above through the mask, then its left neighbours in one min-plus scan,
    ``d[x] = min over x' <= x of (t[x'] + (x - x'))``, so the work is vectorised across the batch
    and the width. Pixels outside the image are never edges. No edge at all: ``cap`` everywhere.
    """
    axial, diagonal, knight = (float(torch.tensor(w, dtype=torch.float32)) for w in CHAMFER_5X5)
    far = float(cap) + 4 * knight  # beyond the cap: its exact value no longer matters
    distance = torch.where(edges > 0, 0.0, far).double()

    def forward(d: torch.Tensor) -> torch.Tensor:
        width = d.shape[-1]
        ramp = torch.arange(width, dtype=d.dtype, device=d.device) * axial
        rows: list[torch.Tensor] = []
        for y in range(d.shape[-2]):
            t = d[..., y, :]
            if y >= 1:
                above = F.pad(rows[y - 1], (2, 2), value=far)
                for shift, weight in ((-2, knight), (-1, diagonal), (0, axial), (1, diagonal), (2, knight)):
                    t = torch.minimum(t, above[..., 2 + shift : 2 + shift + width] + weight)
            if y >= 2:
                above = F.pad(rows[y - 2], (1, 1), value=far)
                t = torch.minimum(t, torch.minimum(above[..., :width], above[..., 2:]) + knight)
            rows.append(ramp + torch.cummin(t - ramp, dim=-1).values)
        return torch.stack(rows, dim=-2).clamp(max=far)

    distance = forward(distance)
    distance = forward(distance.flip(-2, -1)).flip(-2, -1)
    return distance.clamp(max=float(cap)).to(torch.float32).to(edges.dtype)  # OpenCV returns float32


def equalize_hist_uint8(image: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image on integer values 0..255.

    ``lut[i] = round(255 * (cdf(i) - h0) / (total - h0))`` with ``h0`` the count of the lowest
    occupied level (mapped to 0), in float32 like OpenCV; a constant image keeps its value.
    """
    n = image.shape[0]
    values = image.reshape(n, -1).round().clamp(0, 255).long()
    hist = torch.zeros(n, 256, dtype=torch.float64, device=image.device).scatter_add_(1, values, torch.ones_like(values, dtype=torch.float64))
    first = (hist > 0).double().argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    total = float(values.shape[1])
    cdf = hist.cumsum(dim=1) - first_count
    # In float32 as OpenCV computes it (``float scale = 255.f / (total - h0)``, ``sum * scale``,
    # rounded half to even): a product that is exactly k + 0.5 in float64 can land either side.
    scale = (255.0 / (total - first_count).clamp_min(1.0)).float()  # divide in float64: torch's float32 division is not correctly rounded
    lut = torch.round(cdf.float() * scale).double().clamp(0, 255)
    lut = torch.where(torch.arange(256, device=image.device)[None] < first, torch.zeros_like(lut), lut)
    out = lut.gather(1, values).reshape(image.shape)
    constant = (first_count == total).view(n, 1, 1, 1)
    return torch.where(constant, image.round(), out).to(image.dtype)
