"""The imagecorruptions package (the reference implementation) made importable on numpy 2 and
current scikit-image, without touching the installed package or the global numpy module.

Patches, local to the loaded module:
- ``pkg_resources`` (gone from setuptools >= 81) is provided as a stub whose ``resource_filename``
  resolves paths next to the module, which is all the package uses it for (frost textures);
- ``np.float_`` (removed in numpy 2, used by fog's plasma fractal) through a numpy proxy;
- ``gaussian(..., multichannel=True)`` (removed from scikit-image, used by glass_blur and
  gaussian_blur) is mapped to ``channel_axis=-1``.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import numpy as np


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


def reference_corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """imagecorruptions' ``name`` on one uint8 image (H, W, 3) or (H, W); float output in [0, 1].

    The package's ``corrupt`` wrapper truncates to uint8 and refuses images under 32 px; this
    calls the corruption function itself (as ``corrupt`` does) and keeps its float output.
    Gray images are passed as 2-D arrays, which the package supports for most corruptions.
    """
    from PIL import Image

    np.random.seed(seed)
    source = image
    if image.ndim == 2 and name == "motion_blur":  # the package's gray branch raises IndexError
        source = np.stack([image] * 3, axis=-1)
    out = imagecorruptions.corruption_dict[name](Image.fromarray(source), severity)
    out = np.asarray(out, dtype=np.float64)
    if image.ndim == 2 and out.ndim == 3:
        out = out[..., 0]
    return np.clip(out / 255.0, 0, 1)
