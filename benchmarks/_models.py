"""The models every benchmark may run on, built one way for all of them.

``small_cnn``: the demo's MNIST CNN (1 x 28 x 28). ``small``: a three-convolution CIFAR-size net,
cheap enough for CPU runs. ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3 x 3 stride-1
first convolution, no max-pool; 0.56 GFLOP per 32 px image), the "ResNet-18-size model" of the
issues. ``wrn-28-10``: robench's WideResNet-28-10 (10.5 GFLOP per image), the yardstick's model.
Weights are random: throughput does not depend on them.
"""

from __future__ import annotations

import torch
from torch import nn

MODELS = ("small_cnn", "small", "resnet18", "wrn-28-10")


def build(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, tuple[int, int, int]]:
    """``(model in eval mode with frozen parameters, input shape C x H x W)``."""
    from robench.models.loading import build_arch

    shape = (3, 32, 32)
    if name == "small_cnn":
        net, shape = build_arch("small_cnn"), (1, 28, 28)
    elif name == "small":
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )  # fmt: skip
    elif name == "resnet18":
        import torchvision

        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif name == "wrn-28-10":
        net = build_arch("wrn-28-10")
    else:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    net = net.to(device).eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net, shape


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings must not stop the clock early)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
