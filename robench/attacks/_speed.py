"""Execution modes of the attack step: ``exact`` (fp32, as the peers) or ``fast`` (bf16 autocast).

Both modes may compile the model with :func:`torch.compile`. Fast mode runs the attack iterations
under bf16 autocast with channels_last inputs; success is always decided afterwards by the fp32
model in :meth:`robench.attacks.base.Attack.__call__`, so only examples that fool the fp32 model
count, and which examples still need attacking is decided in fp32 too (:meth:`StepModel.verdict`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import nn

from robench._numerics import fp32_label

Mode = Literal["exact", "fast"]


class StepModel:
    """The model as the attack iterations call it, in the chosen mode.

    Args:
        model: Pixel-space model.
        mode: ``exact`` or ``fast``.
        compile: Wrap the model in :func:`torch.compile`.
    """

    def __init__(self, model: nn.Module, mode: Mode = "exact", compile: bool = False) -> None:
        self.model = model
        self.mode = mode
        self._forward: Callable[[torch.Tensor], torch.Tensor] = model
        if compile:
            # a PixelModel compiles its network and counts outside the graph (see PixelModel.compiled)
            compiled = getattr(model, "compiled", None)
            self._forward = compiled() if callable(compiled) else torch.compile(model, dynamic=True)  # type: ignore[assignment]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits as the attack iterations see them (bf16 autocast in fast mode)."""
        if self.mode == "exact":
            return self._forward(x)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return self._forward(x).float()

    def verdict(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 logits, whatever the mode: what decides which examples are attacked, whether a
        restart succeeded and whether the attack succeeded. (A bf16 model that misclassifies an
        input the fp32 model gets right must not exempt it from the attack.)"""
        return self._forward(x) if self.mode == "exact" else self.model(x)

    @contextlib.contextmanager
    def prepared(self) -> Iterator[StepModel]:
        """In fast mode, hold the weights in channels_last for the block and restore them after."""
        if self.mode != "fast":
            yield self
            return
        self.model.to(memory_format=torch.channels_last)
        try:
            yield self
        finally:
            self.model.to(memory_format=torch.contiguous_format)


def precision_label(mode: Mode, device: torch.device | str) -> str:
    """What goes into ``cost.precision`` for a mode on ``device``: exact mode's float32 as it runs
    there (:func:`robench._numerics.fp32_label`: TF32 convolutions on CUDA by default)."""
    return "bf16-autocast+channels_last (success in fp32)" if mode == "fast" else fp32_label(device)
