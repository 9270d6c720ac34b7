"""Registration of corruption functions and the checks every one of them shares."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from robench._errors import ConfigError, DataError
from robench.corruptions.params import CorruptionTable
from robench.registry import register

CorruptionFn = Callable[[torch.Tensor, int, CorruptionTable, torch.Generator], torch.Tensor]

GROUPS: dict[str, str] = {}
"""Corruption name -> group (``noise``, ``blur``, ``weather``, ``digital``), as in Hendrycks & Dietterich."""


def check_batch(x: torch.Tensor) -> None:
    """Reject what no corruption accepts: not (N, 1|3, H, W) floating point.

    Raises:
        DataError: wrong rank, channel count or dtype.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        dtype = getattr(x, "dtype", None)
        raise DataError(f"Expected a float batch of shape (N, 1 or 3, H, W) in [0, 1], but got {shape} ({dtype})")


def corruption(name: str, group: str, *, extra: bool = False) -> Callable[[CorruptionFn], CorruptionFn]:
    """Register ``fn(x, severity, table, generator)`` as corruption ``name``.

    The wrapper checks the batch, looks the severity up in ``table`` (so a bad severity or a
    table without the corruption raises :class:`ConfigError`), runs the corruption in float32
    (or the batch's wider float type) and returns a tensor of ``x``'s dtype clipped to [0, 1].
    """

    def decorate(fn: CorruptionFn) -> CorruptionFn:
        @functools.wraps(fn)
        def wrapper(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
            check_batch(x)
            if not isinstance(table, CorruptionTable):
                raise ConfigError(f"Expected `table` to be a CorruptionTable, but got {type(table).__name__}")
            table(name, severity)  # validates severity and presence
            work = x if x.dtype in (torch.float32, torch.float64) else x.float()
            if x.shape[0] == 0:
                return x.clone()
            out = fn(work, severity, table, generator)
            return out.clamp_(0.0, 1.0).to(x.dtype)

        GROUPS[name] = group
        tags = ("extra", group) if extra else ("benchmark", group)
        return register("corruption", name, tags=tags)(wrapper)

    return decorate
