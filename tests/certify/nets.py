"""Small random networks covering every layer type the bound propagators support."""

from __future__ import annotations

import torch
from torch import nn

from robench.models.wrapper import Normalize


class Residual(nn.Module):
    """``x + branch(x)``: a residual addition in the traced graph."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class Scaled(nn.Module):
    """Multiplies by a constant and flattens with a method call (functional nodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(-1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.scale * x).flatten(1)


class BufferOps(nn.Module):
    """Constant tensors on the left of an operator and arithmetic methods: fx records ``w * x`` with a
    buffer ``w`` as the method call ``w.mul(x)`` (the certifiers crashed or refused it)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor([-1.5, 0.5, 2.0]).view(1, 3, 1, 1))
        self.register_buffer("c", torch.tensor([0.2, -0.1, 0.3]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c - self.w * x
        return torch.relu(x.mul(self.w).add(self.c)).flatten(1)


class ShortcutFirst(nn.Module):
    """A residual block on the input whose 1x1 shortcut is computed before the main branch: two
    branches read the input (CROWN crashed when node 1 of its graph did not lead to the bounded node)."""

    def __init__(self) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(1, 4, 1, stride=2)
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(x)
        h = self.c2(torch.relu(self.c1(x)))
        return self.fc(torch.relu(h + s).flatten(1))


def _randomize_bn(module: nn.Module, generator: torch.Generator) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.3)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.randn(layer.num_features, generator=generator))
            layer.bias.data.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)


def networks() -> dict[str, nn.Module]:
    """Named random networks on (1, 8, 8) or (3, 8, 8) inputs with 5 outputs, eval mode."""
    torch.manual_seed(0)
    nets = {
        "mlp": nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 5)),
        "conv_bn_avgpool": nn.Sequential(
            Normalize([0.5], [0.25]), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1),
            nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Sigmoid(), nn.Flatten(), nn.Linear(24, 5),
        ),
        "conv_maxpool_residual": nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Residual(4), nn.MaxPool2d(2), nn.BatchNorm2d(4),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5),
        ),
        "functional": nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), Scaled(), nn.Linear(27, 5)),
        "buffer_methods": nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), BufferOps(), nn.Linear(27, 5)),
        "shortcut_first": ShortcutFirst(),
    }  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    for net in nets.values():
        _randomize_bn(net, generator)
        net.eval()
    return nets


def input_shape(name: str) -> tuple[int, int, int]:
    """Input shape of network ``name``."""
    return (3, 8, 8) if name == "conv_maxpool_residual" else (1, 8, 8)
