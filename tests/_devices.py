"""CUDA's device rule on the CPU: ``meta`` tensors stand in for a GPU's, and an op that mixes them
with CPU tensors raises as CUDA does (torch itself lets some such mixes through on ``meta``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# CUDA accepts CPU index tensors here (it copies them over)
_INDEXING = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})


class CudaDeviceRule(TorchDispatchMode):
    """Inside the block, every aten op whose tensor operands (0-dim CPU scalars excepted) lie on two
    devices raises ``RuntimeError: Expected all tensors to be on the same device``. Reading a number
    out of a ``meta`` tensor (``float()``, ``.item()``) gives 1 (``True`` for bool), so code that
    branches on values runs on."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = func._overloadpacket.__name__
        operands = tree_leaves((args[:1], args[2:], kwargs) if name in _INDEXING else (args, kwargs))
        devices = {t.device for t in operands if isinstance(t, torch.Tensor) and t.dim() > 0}
        if len(devices) > 1:
            raise RuntimeError(f"Expected all tensors to be on the same device, but {name} got {sorted(map(str, devices))}")
        if name == "_local_scalar_dense" and args[0].device.type == "meta":
            return True if args[0].dtype == torch.bool else (1.0 if args[0].is_floating_point() else 1)
        return func(*args, **kwargs)


def tf32(t: torch.Tensor) -> torch.Tensor:
    """``t`` as TF32 tensor cores read a float32 operand: the mantissa cut to 10 bits (truncated)."""
    if t.dtype != torch.float32:
        return t
    return (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)


@contextmanager
def backend_setting(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.name = value`` inside the block, the earlier value assigned back after. For torch's
    backend settings (``torch.backends.cuda.matmul.fp32_precision``...), which are properties of
    the module's class: pytest >= 9.2's ``monkeypatch.setattr`` undoes a patch by the instance's
    ``__dict__``, so it deletes such a setting instead of restoring it (an AttributeError at
    teardown, and TF32 left on for every later test)."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def emulate_tf32(monkeypatch: Any) -> None:
    """Make ``F.conv2d`` and ``torch.matmul`` round their float32 operands as TF32 does on an Ampere+
    GPU wherever the current settings would let CUDA use it (:func:`robench._numerics.tf32_enabled`:
    convolutions by default, matmuls after ``torch.set_float32_matmul_precision("high")``)."""
    import torch.nn.functional as F

    from robench._numerics import tf32_enabled

    conv2d, matmul = F.conv2d, torch.matmul

    def conv(input: torch.Tensor, weight: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if tf32_enabled("conv"):
            input, weight = tf32(input), tf32(weight)
        return conv2d(input, weight, *args, **kwargs)

    def product(a: torch.Tensor, b: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if tf32_enabled("matmul"):
            a, b = tf32(a), tf32(b)
        return matmul(a, b, **kwargs)

    monkeypatch.setattr(F, "conv2d", conv)
    monkeypatch.setattr(torch, "matmul", product)
