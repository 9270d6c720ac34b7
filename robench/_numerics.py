"""Arithmetic settings that numbers depend on.

On Ampere and later GPUs PyTorch runs float32 convolutions in TF32 by default (10-bit mantissa,
relative error ~1e-3). That is harmless for attacks but not for certificates: bounds computed in
TF32 need not contain the outputs of the float32 model they certify. :func:`ieee_fp32` switches
convolutions and matrix products to full float32 for the duration of a block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _knobs() -> list[tuple[object, str]]:
    """The (object, attribute) pairs holding the float32 precision of convolutions and matmuls."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9: the per-backend API
        return [(conv, "fp32_precision"), (torch.backends.cuda.matmul, "fp32_precision")]
    return [(torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")]  # older torch


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """Full-precision (IEEE) float32 convolutions and matrix products inside the block; restored after."""
    knobs = _knobs()
    saved = [getattr(owner, name) for owner, name in knobs]
    try:
        for owner, name in knobs:
            setattr(owner, name, "ieee" if name == "fp32_precision" else False)
        yield
    finally:
        for (owner, name), value in zip(knobs, saved):
            setattr(owner, name, value)

