"""Arithmetic settings that numbers depend on.

On Ampere and later GPUs PyTorch runs float32 convolutions in TF32 by default (10-bit mantissa,
relative error ~1e-3). That is harmless for attacks but not for certificates: bounds computed in
TF32 need not contain the outputs of the float32 model they certify. :func:`ieee_fp32` switches
convolutions and matrix products to full float32 for the duration of a block. :func:`fp32_label`
says which float32 a run's cost records (``fp32``, or ``fp32 (TF32 convolutions)`` on CUDA by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

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



IEEE_FP32 = "fp32"
"""Precision label of float32 computed in full (IEEE) precision: on the CPU, or on CUDA with TF32 off
(inside :func:`ieee_fp32`, where certifiers bound the model)."""


def tf32_enabled(kind: Literal["conv", "matmul"]) -> bool | None:
    """Whether CUDA runs float32 convolutions (``conv``: cuDNN) or matrix products (``matmul``) in
    TF32 under the current settings; ``None`` where torch refuses to say (legacy and per-backend
    settings mixed). Reads the per-backend ``fp32_precision`` (torch >= 2.9; ``none`` inherits
    from the backend, then from ``torch.backends``), else the legacy ``allow_tf32`` flags."""
    backends = torch.backends
    conv = getattr(backends.cudnn, "conv", None)
    try:
        if conv is not None and hasattr(conv, "fp32_precision"):
            chain = (
                (conv.fp32_precision, backends.cudnn.fp32_precision)
                if kind == "conv"
                else (backends.cuda.matmul.fp32_precision, getattr(backends.cuda, "fp32_precision", "none"))
            )
            return next((v for v in (*chain, getattr(backends, "fp32_precision", "none")) if v != "none"), "ieee") == "tf32"
        return bool(backends.cudnn.allow_tf32 if kind == "conv" else backends.cuda.matmul.allow_tf32)
    except RuntimeError:  # "you have used a mix of the legacy and new APIs"
        return None


def fp32_label(device: torch.device | str) -> str:
    """The precision label of a float32 computation on ``device`` under the current settings, what
    ``cost.precision`` records: :data:`IEEE_FP32` on the CPU or with TF32 off; on CUDA with TF32 on
    (PyTorch's default for cuDNN convolutions) ``fp32 (TF32 convolutions)``, ``fp32 (TF32 matmuls)``
    or ``fp32 (TF32 convolutions and matmuls)`` (10-bit mantissa: not the float32 its name says);
    ``fp32 (TF32 unknown)`` where torch does not say (:func:`tf32_enabled`). It labels, and changes nothing."""
    if torch.device(device).type != "cuda":
        return IEEE_FP32
    enabled = {"convolutions": tf32_enabled("conv"), "matmuls": tf32_enabled("matmul")}
    if None in enabled.values():
        return f"{IEEE_FP32} (TF32 unknown)"
    on = [kind for kind, value in enabled.items() if value]
    return f"{IEEE_FP32} (TF32 {' and '.join(on)})" if on else IEEE_FP32
