"""The frost textures of Hendrycks & Dietterich, as shipped inside the imagecorruptions package.

The package is located with :func:`importlib.util.find_spec`, which does not execute it (its
``__init__`` imports ``pkg_resources``, absent from current setuptools). Files are decoded once
and kept on the CPU; resized copies are cached per scale and device.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from robench._errors import DataError

FROST_FILES: tuple[str, ...] = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
N_USED = 5
"""The reference draws ``np.random.randint(5)``: the sixth texture is never used."""


def frost_dir() -> Path:
    """Folder of the frost textures inside the installed imagecorruptions package.

    Raises:
        DataError: the package or one of its texture files is missing.
    """
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the frost corruption needs the frost textures of the 'imagecorruptions' package: pip install imagecorruptions")
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    missing = [name for name in FROST_FILES[:N_USED] if not (folder / name).is_file()]
    if missing:
        raise DataError(f"frost textures {missing} are missing from {folder}; reinstall the 'imagecorruptions' package")
    return folder


@functools.lru_cache(maxsize=1)
def _raw_textures() -> tuple[torch.Tensor, ...]:
    from torchvision.io import ImageReadMode, decode_image, read_file

    folder = frost_dir()
    return tuple(decode_image(read_file(str(folder / name)), mode=ImageReadMode.RGB) for name in FROST_FILES[:N_USED])


@functools.lru_cache(maxsize=16)
def frost_textures(scale: float, min_height: int, min_width: int, device: str) -> tuple[torch.Tensor, ...]:
    """The five used textures as float RGB (3, h, w) in [0, 1], resized by ``scale``.

    Resizing is bilinear with half-pixel centres and no anti-aliasing (``cv2.resize`` INTER_LINEAR)
    and the result is rounded to 8 bits, as the reference's uint8 textures are. A texture that would
    be no larger than the image is scaled up to 1.1 times the needed size (the imagecorruptions rule).
    """
    out = []
    for texture in _raw_textures():
        height, width = texture.shape[-2:]
        factor = scale
        if round(height * factor) <= min_height or round(width * factor) <= min_width:
            factor = 1.1 * max((min_height + 1) / height, (min_width + 1) / width, factor)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        image = texture.float()[None]
        if size != (height, width):
            # Sample at 1 / factor input pixels per output pixel, as cv2.resize(fx=factor) does (a
            # target size alone would sample at in / out: frost4's 527 -> 105 drifted 0.4 px). Rows
            # and columns replicated past the edge (where OpenCV clamps) let torch's floor((n + p) *
            # factor) output pixels reach OpenCV's round(n * factor).
            pad = math.ceil(1 / factor)
            padded = F.pad(image, (0, pad, 0, pad), mode="replicate")
            image = F.interpolate(
                padded, scale_factor=factor, mode="bilinear", align_corners=False, antialias=False, recompute_scale_factor=False
            )[..., : size[0], : size[1]]
        out.append((image[0].round().clamp(0, 255) / 255.0).to(device))
    return tuple(out)
