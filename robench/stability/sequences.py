"""Perturbation sequences of ImageNet-P / CIFAR-10-P, generated in batched torch on the device.

Every registered perturbation is ``fn(x, generator, *, params, level) -> frames`` with ``x`` an
``(N, C, H, W)`` batch in [0, 1], ``params`` its :class:`~robench.stability.params.SequenceParams`
and ``level`` the noise strength 1..3 (ignored by sequential perturbations); ``frames`` is
``(N, T, C, H, W)`` in [0, 1]. Randomness comes only from ``generator``. Frames are quantised to
the 8-bit grid as the official code made them: by truncation (``np.uint8(255 * x)``; PIL's
affine transforms match it), by rounding for tilt (OpenCV's ``warpPerspective`` rounds); measured
against those libraries in the interior of 32-px frames (rotate, shear, tilt: 99.9% of values
equal; scale: 98.8%).

Geometry follows the official code: torchvision's ``affine`` (rotate, scale, shear, translate,
zoom), OpenCV's ``warpPerspective`` homography for tilt (applied with torchvision's ``perspective``
through the images of the four corners), zero fill outside the image. Generated sequences apply the
transforms to the model-size image itself; the ImageNet-P release transformed the 256-px image and
cropped the central 224 px, so borders differ slightly from the release for ImageNet-size inputs.
Spatter is approximate: the official Canny / distance-transform shading of the drops is replaced
by a blurred drop mask (see :func:`spatter`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from robench._numerics import ieee_fp32
from robench.corruptions import _ops
from robench.registry import register
from robench.stability.params import SequenceParams
from robench.threat_model import TEST_PERTURBATIONS

Perturbation = Callable[..., torch.Tensor]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and truncate to the 8-bit grid (``np.uint8(255 * x) / 255``).

    The small offset keeps values already on the grid (``k / 255`` in float32) where they are.
    """
    return torch.floor(x.clamp(0, 1) * 255 + 1e-3).div_(255)


def _stack(frames: list[torch.Tensor], rounded: bool = False) -> torch.Tensor:
    """Frames ``(N, T, C, H, W)`` on the 8-bit grid: truncated like the official float pipelines, or
    ``rounded`` like OpenCV, which made the tilt frames."""
    stacked = torch.stack(frames, dim=1)
    return stacked.clamp_(0, 1).mul_(255).round_().div_(255) if rounded else quantize(stacked)


def _tags(name: str, noise: bool) -> tuple[str, ...]:
    return ("noise" if noise else "sequential", "test" if name in TEST_PERTURBATIONS else "validation")


def _rgb(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply a colour operation to RGB; gray inputs go through RGB and back to luma."""
    rgb, gray = _ops.as_rgb(x)
    out = fn(rgb)
    return _ops.rgb_to_gray(out) if gray else out


# --------------------------------------------------------------------------- noise
@register("perturbation", "gaussian_noise", tags=_tags("gaussian_noise", True))
def gaussian_noise(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Frame 0 clean, frames 1..T-1 ``clip(x + sigma * N(0, 1))`` with independent draws."""
    sigma = params.values["sigma"][level - 1]
    frames = [x] + [x + sigma * _ops.randn(tuple(x.shape), generator, x.device) for _ in range(params.frames - 1)]
    return _stack(frames)


@register("perturbation", "shot_noise", tags=_tags("shot_noise", True))
def shot_noise(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Frame 0 clean, frames 1..T-1 ``clip(Poisson(lam * x) / lam)``."""
    lam = params.values["lam"][level - 1]
    rate = (x * lam).to(generator.device)
    # Poisson sampling consumes a data-dependent amount of randomness per value: one stream per frame,
    # so that the rows after an example (a padded last block, more examples) cannot shift its later frames
    seeds = torch.randint(0, 2**62, (params.frames - 1,), generator=generator, device=generator.device).tolist()
    frames = [x] + [
        torch.poisson(rate, generator=torch.Generator(device=generator.device).manual_seed(seed)).to(x.device) / lam for seed in seeds
    ]
    return _stack(frames)


@register("perturbation", "speckle_noise", tags=_tags("speckle_noise", True))
def speckle_noise(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Frame 0 clean, frames 1..T-1 ``clip(x + x * N(0, scale^2))``."""
    scale = params.values["scale"][level - 1]
    frames = [x] + [x + x * scale * _ops.randn(tuple(x.shape), generator, x.device) for _ in range(params.frames - 1)]
    return _stack(frames)


# --------------------------------------------------------------------------- blur
@register("perturbation", "motion_blur", tags=_tags("motion_blur", False))
def motion_blur(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Motion blur of fixed radius and sigma whose angle turns by ``angle_step`` degrees per frame."""
    v = params.values
    n = x.shape[0]
    frames = []
    for i in range(params.frames):
        angle = torch.full((n,), float(v["angle0"] + v["angle_step"] * i), dtype=torch.float64)
        frames.append(_ops.motion_blur(x, v["radius"], v["sigma"], angle))
    return _stack(frames)


@register("perturbation", "zoom_blur", tags=_tags("zoom_blur", False))
def zoom_blur(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Frame ``i``: the running mean of ``x`` and its zooms by ``1 + step * j`` for ``j = 1..i``."""
    step = params.values["zoom_step"]
    total = x.clone()
    frames = [x]
    for i in range(1, params.frames):
        zoomed = _affine(x, scale=1 + step * i)
        total = total + quantize(zoomed)
        frames.append(total / (i + 1))
    return _stack(frames)


@register("perturbation", "gaussian_blur", tags=_tags("gaussian_blur", False))
def gaussian_blur(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Gaussian blur whose sigma grows by ``sigma_step`` per frame (skimage ``gaussian``, mode nearest)."""
    v = params.values
    frames = [_ops.gaussian_filter(x, v["sigma0"] + v["sigma_step"] * i, "nearest", v["truncate"]) for i in range(params.frames)]
    return _stack(frames)


# --------------------------------------------------------------------------- weather / digital
@register("perturbation", "snow", tags=_tags("snow", False))
def snow(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """One snow layer per image, motion-blurred at an angle turning by ``angle_step`` per frame."""
    v = params.values
    n, _, h, w = x.shape
    layer = 0.05 + 0.3 * _ops.randn((n, 1, h, w), generator, x.device)
    layer = _ops.apply_axes(layer, _ops.clipped_zoom_matrix(h, v["zoom"]), _ops.clipped_zoom_matrix(w, v["zoom"]))
    layer = quantize(torch.where(layer < 0.5, torch.zeros_like(layer), layer))  # saved as an 8-bit PNG

    def base(rgb: torch.Tensor) -> torch.Tensor:
        return 0.85 * rgb + 0.15 * torch.maximum(rgb, _ops.rgb_to_gray(rgb) * 1.5 + 0.5)

    whitened = _rgb(x, base)
    frames = []
    for i in range(params.frames):
        angle = torch.full((n,), float(v["angle0"] + v["angle_step"] * i), dtype=torch.float64)
        moving = quantize(_ops.motion_blur(layer, v["radius"], v["sigma"], angle))
        frames.append(whitened + moving + torch.flip(moving, dims=(2, 3)))
    return _stack(frames)


@register("perturbation", "brightness", tags=_tags("brightness", False))
def brightness(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """HSV value shifted by ``(i - 15) * step`` (frames 0..30), clipped to [0, 1]."""
    step = params.values["step"]

    def shift(c: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def apply(rgb: torch.Tensor) -> torch.Tensor:
            hsv = _ops.rgb_to_hsv(rgb)
            hsv = torch.cat((hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)), dim=1)
            return _ops.hsv_to_rgb(hsv)

        return apply

    middle = (params.frames - 1) // 2
    return _stack([_rgb(x, shift((i - middle) * step)) for i in range(params.frames)])


@register("perturbation", "spatter", tags=_tags("spatter", False))
def spatter(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Water drops (pale turquoise) running down the image by the official drift kernel per frame.

    The drop layer, threshold, colour, opacity 0.6 and drift follow the official code; the drop
    shading (official: Canny edges, distance transform, histogram equalisation, emboss) is
    approximated by the drop mask blurred with a 3x3 box, normalised to a maximum of 1.
    """
    v = params.values
    n, _, h, w = x.shape
    layer = _ops.gaussian_filter(v["loc"] + v["scale"] * _ops.randn((n, 1, h, w), generator, x.device), v["sigma"])
    layer = torch.where(layer < v["threshold"], torch.zeros_like(layer), layer)
    drift = torch.tensor(v["drift"], dtype=x.dtype, device=x.device)
    # np.convolve(column, drift, 'same') as a correlation with the flipped kernel, zero padded.
    size = drift.numel()
    start = (size - 1) // 2
    kernel = torch.flip(drift, dims=(0,)).view(1, 1, size, 1)
    color = torch.tensor([175 / 255, 238 / 255, 238 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    frames = []
    for _ in range(params.frames):
        drops = torch.floor(layer.clamp(0, 1) * 255) / 255
        shade = _ops.box_blur3(drops)
        peak = shade.amax(dim=(2, 3), keepdim=True)
        mask = 0.6 * shade / torch.where(peak > 0, peak, torch.ones_like(peak))

        def tinted(rgb: torch.Tensor, m: torch.Tensor = mask) -> torch.Tensor:
            return rgb + m * color

        frames.append(_rgb(x, tinted))
        padded = F.pad(layer, (0, 0, size - 1 - start, start))
        with ieee_fp32():  # as every filter of robench.corruptions._ops: TF32 would compound over the frames
            layer = F.conv2d(padded, kernel)
    return _stack(frames)


# --------------------------------------------------------------------------- geometry
def _affine(x: torch.Tensor, *, angle: float = 0.0, translate: tuple[int, int] = (0, 0), scale: float = 1.0,
            shear: float = 0.0, bilinear: bool = True) -> torch.Tensor:  # fmt: skip
    # imported here: torchvision's import pulls in torch._dynamo (about 3 s), which commands that
    # generate no frames (validate, ls, report, compare) need not pay
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    mode = InterpolationMode.BILINEAR if bilinear else InterpolationMode.NEAREST
    with ieee_fp32():  # torchvision builds the sampling grid with a float32 bmm: TF32 under matmul precision "high"
        return TF.affine(x, angle=angle, translate=list(translate), scale=scale, shear=[shear, 0.0], interpolation=mode, fill=0.0)


@register("perturbation", "translate", tags=_tags("translate", False))
def translate(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Horizontal shift by ``shift0 + i`` pixels (nearest, zero fill)."""
    shift0 = params.values["shift0"]
    return _stack([_affine(x, translate=(shift0 + i, 0), bilinear=False) for i in range(params.frames)])


@register("perturbation", "rotate", tags=_tags("rotate", False))
def rotate(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Rotation by ``angle0 + i * step`` degrees about the centre (bilinear, zero fill)."""
    v = params.values
    return _stack([_affine(x, angle=v["angle0"] + v["angle_step"] * i) for i in range(params.frames)])


@register("perturbation", "scale", tags=_tags("scale", False))
def scale(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Scaling by ``scale0 + i * step`` about the centre (bilinear, zero fill)."""
    v = params.values
    return _stack([_affine(x, scale=v["scale0"] + v["scale_step"] * i) for i in range(params.frames)])


@register("perturbation", "shear", tags=_tags("shear", False))
def shear(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Horizontal shear by ``angle0 + i * step`` degrees (bilinear, zero fill)."""
    v = params.values
    return _stack([_affine(x, shear=v["angle0"] + v["angle_step"] * i) for i in range(params.frames)])


def tilt_homography(height: int, width: int, angle_deg: float) -> np.ndarray:
    """The official tilt's 3x3 homography: rotate the image plane by ``angle`` about both the x and
    y axes at focal distance ``sqrt(w^2 + h^2)`` and project back (``P2 T RX RY P1``)."""
    phi = theta = math.radians(angle_deg)
    f = math.hypot(width, height)
    p1 = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1], [0, 0, 1]], dtype=np.float64)
    rx = np.array([[1, 0, 0, 0], [0, math.cos(theta), -math.sin(theta), 0], [0, math.sin(theta), math.cos(theta), 0], [0, 0, 0, 1]])
    ry = np.array([[math.cos(phi), 0, -math.sin(phi), 0], [0, 1, 0, 0], [math.sin(phi), 0, math.cos(phi), 0], [0, 0, 0, 1]])
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=np.float64)
    p2 = np.array([[f, 0, width / 2, 0], [0, f, height / 2, 0], [0, 0, 1, 0]], dtype=np.float64)
    return p2 @ t @ rx @ ry @ p1


@register("perturbation", "tilt", tags=_tags("tilt", False))
def tilt(x: torch.Tensor, generator: torch.Generator, *, params: SequenceParams, level: int = 1) -> torch.Tensor:
    """Perspective tilt by ``angle0 + i * step`` degrees about both image axes (bilinear, zero fill)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    v = params.values
    h, w = x.shape[-2:]
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], dtype=np.float64)
    frames = []
    for i in range(params.frames):
        mapped = corners @ tilt_homography(h, w, v["angle0"] + v["angle_step"] * i).T
        # OpenCV puts pixel centres at integer coordinates, torchvision at i + 0.5: the four
        # correspondences move by half a pixel into torchvision's frame (else S^-1 H S is applied)
        ends = (mapped[:, :2] / mapped[:, 2:] + 0.5).tolist()
        with ieee_fp32():  # its grid is a float32 bmm, as _affine's
            frames.append(
                TF.perspective(x, startpoints=(corners[:, :2] + 0.5).tolist(), endpoints=ends,
                               interpolation=InterpolationMode.BILINEAR, fill=0.0)
            )  # fmt: skip
    return _stack(frames, rounded=True)
