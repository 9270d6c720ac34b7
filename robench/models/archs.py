"""Architectures shipped with robench (registry kind ``arch``)."""

from __future__ import annotations

from torch import nn

from robench.registry import register


@register("arch", "small_cnn")
class SmallCNN(nn.Module):
    """Two conv layers and two linear layers; the demo's MNIST model (about 0.4M parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, image_size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.classifier(self.features(x))
