"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Formulas of make_cifar_c.py / make_imagenet_c.py (hendrycks/robustness); every channel of every
pixel gets its own draw, as in the reference (which draws on the H x W x C array).
"""

from __future__ import annotations

import torch

from robench.corruptions import _ops
from robench.corruptions._base import corruption
from robench.corruptions.params import CorruptionTable


@corruption("gaussian_noise", "noise")
def gaussian_noise(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise: ``clip(x + N(0, sigma^2))``."""
    sigma = table("gaussian_noise", severity)
    return x + sigma * _ops.randn(tuple(x.shape), generator, x.device).to(x.dtype)


@corruption("shot_noise", "noise")
def shot_noise(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Poisson (shot) noise: ``Poisson(x * c) / c`` with ``c`` photons per unit intensity."""
    photons = float(table("shot_noise", severity))
    rates = (x * photons).to(torch.float32).to(generator.device)
    return (torch.poisson(rates, generator=generator).to(x.device) / photons).to(x.dtype)


@corruption("impulse_noise", "noise")
def impulse_noise(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper noise (skimage ``random_noise(mode='s&p')``): a fraction ``amount`` of values set to 0 or 1."""
    amount = table("impulse_noise", severity)
    shape = tuple(x.shape)
    flipped = _ops.rand(shape, generator, x.device) < amount
    salted = _ops.rand(shape, generator, x.device) < 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)


@corruption("speckle_noise", "noise", extra=True)
def speckle_noise(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative Gaussian noise: ``clip(x + x * N(0, sigma^2))``."""
    sigma = table("speckle_noise", severity)
    return x + x * sigma * _ops.randn(tuple(x.shape), generator, x.device).to(x.dtype)
