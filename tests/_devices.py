"""CUDA's device rule on the CPU: ``meta`` tensors stand in for a GPU's, and an op that mixes them
with CPU tensors raises as CUDA does (torch itself lets some such mixes through on ``meta``)."""

from __future__ import annotations

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
