"""Generated corrupted images stored as the released sets stored theirs (the threat model's ``quantize``)."""

from __future__ import annotations

from typing import get_args

import torch

from robench._errors import ConfigError
from robench.corruptions import _ops
from robench.threat_model import Quantize

QUANTIZE_MODES: tuple[str, ...] = get_args(Quantize)
"""The values of ``corruptions.quantize`` (:class:`robench.threat_model.CorruptionsSpec`)."""

RELEASED_JPEG_QUALITY = 85
"""make_imagenet_c.py saves every ImageNet-C image with ``quality=85``."""


def quantize_as_released(x: torch.Tensor, mode: str) -> torch.Tensor:
    """A corrupted batch in [0, 1] as the released files hold it, back in [0, 1] and in ``x``'s dtype.

    - ``none``: ``x`` itself (robench's images stay in floating point).
    - ``uint8`` (CIFAR-10-C): make_cifar_c.py stores ``np.uint8(corruption(img))``, the 0..255 float
      image cast to 8 bits, which truncates: ``q(x) = floor(255 x) / 255`` (``x`` clipped to [0, 1],
      as every corruption returns it). On average half a level darker than the float image.
    - ``jpeg85`` (ImageNet-C): make_imagenet_c.py saves ``Image.fromarray(np.uint8(img))`` with
      ``quality=85, optimize=True``: the same truncation, then baseline JPEG at quality 85 (4:2:0
      chroma; ``optimize`` changes only the Huffman tables, not the decoded pixels), decoded with
      libjpeg on the CPU (:func:`robench.corruptions._ops.libjpeg_roundtrip`).

    Args:
        x: ``(N, C, H, W)`` floats in [0, 1], on any device.
        mode: one of :data:`QUANTIZE_MODES`.

    Returns:
        The quantised batch on ``x``'s device.

    Raises:
        ConfigError: ``mode`` is not one of :data:`QUANTIZE_MODES`.
    """
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"Expected `quantize` to be one of {', '.join(QUANTIZE_MODES)}, but got {mode!r}")
    if mode == "none":
        return x
    # 255 x in (at least) float32: the product numpy's np.uint8(255 * x) truncates, and k / 255 comes back as k.
    work = x.to(torch.promote_types(x.dtype, torch.float32))
    levels = (work.clamp(0.0, 1.0) * 255).floor_()
    if mode == "jpeg85":
        levels = _ops.libjpeg_roundtrip(levels.to(torch.uint8), RELEASED_JPEG_QUALITY).to(x.device).to(work.dtype)
    return (levels / 255).to(x.dtype)
