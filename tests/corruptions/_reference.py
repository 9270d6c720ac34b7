"""The imagecorruptions package (the reference implementation) made importable on numpy 2 and
current scikit-image, without touching the installed package or the global numpy module; the
released-data generator's formulas where the package departs from them; and a way to run the
reference on the random draws robench made (:func:`recorded_draws`, :class:`DrawFeeder`), which
turns a random corruption into a deterministic one on both sides.

Patches, local to the loaded module:
- ``pkg_resources`` (gone from setuptools >= 81) is provided as a stub whose ``resource_filename``
  resolves paths next to the module, which is all the package uses it for (frost textures);
- ``np.float_`` (removed in numpy 2, used by fog's plasma fractal) through a numpy proxy;
- ``gaussian(..., multichannel=True)`` (removed from scikit-image, used by glass_blur and
  gaussian_blur) is mapped to ``channel_axis=-1``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import types
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import torch


class _NumpyProxy(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("numpy")
        self.float_ = np.float64

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _load() -> types.ModuleType:
    if "pkg_resources" not in sys.modules:
        stub = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            module = sys.modules[package]
            return os.path.join(os.path.dirname(module.__file__ or ""), resource)

        stub.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stub
    import imagecorruptions
    from imagecorruptions import corruptions
    from skimage.filters import gaussian as sk_gaussian

    def gaussian(image: Any, sigma: Any = 1.0, multichannel: bool | None = None, **kwargs: Any) -> Any:
        if multichannel and np.ndim(image) == 3:  # gray 2-D arrays have no channel axis
            kwargs["channel_axis"] = -1
        return sk_gaussian(image, sigma=sigma, **kwargs)

    corruptions.np = _NumpyProxy()
    corruptions.gaussian = gaussian
    return imagecorruptions


imagecorruptions = _load()
NAMES: tuple[str, ...] = tuple(imagecorruptions.corruption_dict)


# make_imagenet_c.py (hendrycks/robustness, ImageNet-C/create_c/): elastic_transform's
# (alpha, sigma, affine jitter) in pixels of a 224 px image, written there as multiples of 244
# ("244 should have been 224, but ultimately nothing is incorrect").
ORIGINAL_ELASTIC = (
    (244 * 2, 244 * 0.7, 244 * 0.1),
    (244 * 2, 244 * 0.08, 244 * 0.2),
    (244 * 0.05, 244 * 0.01, 244 * 0.02),
    (244 * 0.07, 244 * 0.01, 244 * 0.02),
    (244 * 0.12, 244 * 0.01, 244 * 0.02),
)
ORIGINAL_DEPARTURES: tuple[str, ...] = ("snow", "elastic_transform", "glass_blur", "frost")
"""Where ``original=True`` changes the reference (see :func:`reference_corrupt`)."""


def _original_clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """make_imagenet_c.py's clipped_zoom: zoom the central crop, then trim the centre back to size.

    The package's version skips the trim (its callers crop the top-left corner later, after
    snow's motion blur), which moves the blurred edge rows at small image sizes.
    """
    from scipy.ndimage import zoom as scizoom

    side = img.shape[0]
    crop = int(np.ceil(side / zoom_factor))
    top = (side - crop) // 2
    zoomed = scizoom(img[top : top + crop, top : top + crop], (zoom_factor, zoom_factor, 1), order=1)
    trim = (zoomed.shape[0] - side) // 2
    return zoomed[trim : trim + side, trim : trim + side]


def original_elastic_transform(image: np.ndarray, severity: int) -> np.ndarray:
    """make_imagenet_c.py's elastic_transform on one uint8 image (H, W[, C]); float output in [0, 255].

    A random affine warp (three points at +-side/3 around the centre jittered by U(-c2, c2),
    OpenCV bilinear, reflect-101 border), then a displacement field ``c0 * gaussian(U(-1, 1), c1)``
    per axis (reflect, truncate 3) sampled bilinearly with a reflecting border. The constants are
    rescaled from 224 px to the image's smaller side (the original only ever saw 224 px images).
    Random numbers come from the module's ``np.random`` (numpy's, or a :class:`DrawFeeder`).
    """
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    rng = imagecorruptions.corruptions.np.random
    img = np.asarray(image, dtype=np.float32) / 255.0
    gray = img.ndim == 2
    if gray:
        img = img[..., None]
    height, width, channels = img.shape
    alpha, sigma, jitter = (v * min(height, width) / 224 for v in ORIGINAL_ELASTIC[severity - 1])
    centre = np.float32((height, width)) // 2
    half = min(height, width) // 3
    pts1 = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    pts2 = pts1 + np.asarray(rng.uniform(-jitter, jitter, size=pts1.shape)).astype(np.float32)
    warped = cv2.warpAffine(img, cv2.getAffineTransform(pts1, pts2), (width, height), borderMode=cv2.BORDER_REFLECT_101)
    warped = warped.reshape(height, width, channels)  # OpenCV drops a single channel axis
    dx = (gaussian(np.asarray(rng.uniform(-1, 1, size=(height, width))), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(np.asarray(rng.uniform(-1, 1, size=(height, width))), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = np.stack([map_coordinates(warped[..., k], (rows + dy, cols + dx), order=1, mode="reflect") for k in range(channels)], axis=-1)
    out = np.clip(out, 0, 1) * 255
    return out[..., 0] if gray else out


def reference_corrupt(image: np.ndarray, name: str, severity: int, seed: int, *, original: bool = False) -> np.ndarray:
    """imagecorruptions' ``name`` on one uint8 image (H, W, 3) or (H, W); float output in [0, 1].

    The package's ``corrupt`` wrapper truncates to uint8 and refuses images under 32 px; this
    calls the corruption function itself (as ``corrupt`` does) and keeps its float output.
    Gray images are passed as 2-D arrays, which the package supports for most corruptions.

    ``original=True`` follows the released-data generator (make_imagenet_c.py) where the package
    departs from it: snow trims its zoomed flake layer and truncates it to 8 bits before the motion
    blur; elastic_transform
    is :func:`original_elastic_transform`; glass_blur and frost run gray images stacked to three
    channels (what the package's ``corrupt`` does with every gray image, and the only layout the
    generator knew: glass_blur's "swap" then copies whole pixels, and frost adds the texture in
    RGB order) and return the luma (the package's ``rgb2gray`` weights).
    """
    from PIL import Image

    np.random.seed(seed)
    if original and name == "elastic_transform":
        return np.clip(original_elastic_transform(image, severity) / 255.0, 0, 1)
    source = image
    if image.ndim == 2 and (name == "motion_blur" or (original and name in ("glass_blur", "frost"))):
        source = np.stack([image] * 3, axis=-1)  # motion_blur: the package's gray branch raises IndexError
    corruptions = imagecorruptions.corruptions
    zoom = _original_clipped_zoom if original else corruptions.clipped_zoom
    package_blur = blur = corruptions._motion_blur
    if original and name == "snow":
        # make_imagenet_c.py hands ImageMagick the flake layer as 8 bits, truncated (astype(np.uint8))
        def blur(layer: np.ndarray, **kwargs: Any) -> np.ndarray:
            return package_blur(np.floor(layer * 255) / 255, **kwargs)

    import skimage.util

    package_noise = skimage.util.random_noise

    def seeded_noise(*args: Any, **kwargs: Any) -> np.ndarray:
        # impulse_noise's s&p: scikit-image draws from its own unseeded default_rng, so the global
        # seed above would not reach it and the reference could not be reproduced
        return package_noise(*args, **{**kwargs, "rng": np.random.default_rng(seed)})

    with (
        mock.patch.object(corruptions, "clipped_zoom", zoom),
        mock.patch.object(corruptions, "_motion_blur", blur),
        mock.patch.object(skimage.util, "random_noise", seeded_noise),
    ):
        out = imagecorruptions.corruption_dict[name](Image.fromarray(source), severity)
    out = np.asarray(out, dtype=np.float64)
    if image.ndim == 2 and out.ndim == 3:
        out = out @ np.array([0.2989, 0.5870, 0.1140]) if original and name in ("glass_blur", "frost") else out[..., 0]
    return np.clip(out / 255.0, 0, 1)


def package_table() -> Any:
    """robench's ImageNet-C table as the package implements it: pixelate up-sampled with NEAREST
    (make_imagenet_c.py uses BOX)."""
    from robench.corruptions import TABLES

    rows = dict(TABLES["imagenet"].rows)
    rows["pixelate"] = tuple((fraction, "nearest") for fraction, _ in rows["pixelate"])
    return dataclasses.replace(TABLES["imagenet"], rows=rows)


def _per_image(x: torch.Tensor, corrupt: Any) -> np.ndarray:
    """``corrupt(i, image)`` on each image of a batch (N, C, H, W) in [0, 1] (8-bit valued), given as
    the reference takes it: uint8 (H, W, 3) or (H, W). Outputs stacked back to (N, C, H, W)."""
    images = (x * 255).round().to(torch.uint8).numpy()
    ref = np.stack([corrupt(i, im.transpose(1, 2, 0) if im.shape[0] == 3 else im[0]) for i, im in enumerate(images)])
    return ref.transpose(0, 3, 1, 2) if ref.ndim == 4 else ref[:, None]


def reference_batch(x: torch.Tensor, name: str, severity: int, *, seed: int = 0, original: bool = False) -> np.ndarray:
    """:func:`reference_corrupt` on each image of a batch; image ``i`` seeds ``numpy.random`` with
    ``seed * 1_000_003 + i``. Output (N, C, H, W) in [0, 1]."""
    return _per_image(x, lambda i, image: reference_corrupt(image, name, severity, seed=seed * 1_000_003 + i, original=original))


# --------------------------------------------------------------------------- shared random draws
SHARED_DRAWS: dict[str, tuple[str, ...]] = {
    "gaussian_noise": ("gray",),
    "speckle_noise": ("gray",),
    "glass_blur": ("gray", "rgb"),
    "motion_blur": ("gray", "rgb"),
    "snow": ("gray", "rgb"),
    "fog": ("gray", "rgb"),
    "elastic_transform": ("gray", "rgb"),
    "spatter": ("gray", "rgb"),
}
"""Random corruptions whose draws line up one to one with the reference's, per image layout.

Robench draws every image's numbers for a batch at once; the reference draws one image's at a
time, in the same order and kind (normal, uniform, integer) and, for these, the same memory
layout. The noise corruptions draw (C, H, W) where the reference draws (H, W, C): gray only.
"""


@contextlib.contextmanager
def recorded_draws() -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Record every draw robench's corruptions make, as ``(kind, values)`` in call order.

    Kinds: ``uniform`` (:func:`_ops.uniform`, values after scaling to ``[low, high)``), ``rand``
    (a bare :func:`_ops.rand`), ``randn`` and ``randint``.
    """
    from robench.corruptions import _ops

    records: list[tuple[str, torch.Tensor]] = []
    depth = [0]

    def recording(kind: str, draw: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
            depth[0] += 1
            try:
                out = draw(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:  # uniform's own call of rand is not a draw of its own
                records.append((kind, out.detach().cpu().double()))
            return out

        return wrapper

    patches = {kind: recording(kind, getattr(_ops, kind)) for kind in ("uniform", "rand", "randn", "randint")}
    with mock.patch.multiple(_ops, **patches):
        yield records


class DrawFeeder:
    """Stands in for ``numpy.random`` inside the reference, serving one image's recorded draws.

    ``streams[kind]`` is the flat sequence of that image's values of one kind. Each reference call
    consumes as many values as it asks for; asking for more than robench drew fails, and
    :meth:`check_exhausted` fails when robench drew more than the reference used.
    """

    def __init__(self, streams: dict[str, np.ndarray]) -> None:
        self._streams = streams
        self._used = dict.fromkeys(streams, 0)

    @classmethod
    def for_image(cls, records: list[tuple[str, torch.Tensor]], index: int) -> DrawFeeder:
        streams: dict[str, list[np.ndarray]] = {}
        for kind, values in records:
            streams.setdefault(kind, []).append(values[index].reshape(-1).numpy())
        return cls({kind: np.concatenate(parts) for kind, parts in streams.items()})

    def _take(self, kind: str, size: Any) -> Any:
        count = 1 if size is None else int(np.prod(size))
        stream = self._streams.get(kind, np.empty(0))
        start = self._used.get(kind, 0)
        if start + count > len(stream):
            raise AssertionError(f"the reference drew more {kind} values than robench ({len(stream)})")
        self._used[kind] = start + count
        values = stream[start : start + count]
        return values[0] if size is None else values.reshape(size)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        values = self._take("uniform", size)
        assert np.all((low <= values) & (values <= high)), f"robench's uniform draws are not in [{low}, {high}]"
        return values

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        return loc + scale * self._take("randn", size)

    def randint(self, low: int, high: int | None = None, size: Any = None) -> Any:
        values = self._take("randint", size)
        lo, hi = (0, low) if high is None else (low, high)
        assert np.all((lo <= values) & (values < hi)), f"robench's integer draws are not in [{lo}, {hi})"
        return values.astype(np.int64)

    def check_exhausted(self) -> None:
        left = {kind: len(stream) - self._used[kind] for kind, stream in self._streams.items() if self._used[kind] != len(stream)}
        assert not left, f"robench drew values the reference never used: {left}"


def reference_on_draws(image: np.ndarray, name: str, severity: int, feeder: DrawFeeder, *, original: bool = True) -> np.ndarray:
    """:func:`reference_corrupt` with ``feeder`` in place of the reference's ``numpy.random``."""
    proxy = imagecorruptions.corruptions.np
    proxy.random = feeder
    try:
        out = reference_corrupt(image, name, severity, seed=0, original=original)
    finally:
        del proxy.random
    feeder.check_exhausted()
    return out


def on_shared_draws(x: torch.Tensor, name: str, severity: int, table: Any, generator: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """robench's ``name`` on the batch ``x``, and the reference (``original=True``) on each image
    with robench's own random numbers: (robench's output, the reference's as (N, C, H, W))."""
    from robench.registry import registry

    with recorded_draws() as draws:
        ours = registry.get("corruption", name)(x, severity, table, generator)
    return ours, _per_image(x, lambda i, image: reference_on_draws(image, name, severity, DrawFeeder.for_image(draws, i)))
