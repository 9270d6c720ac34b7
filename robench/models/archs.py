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

    def forward(self, x):
        return self.classifier(self.features(x))


class _WideBlock(nn.Module):
    """Pre-activation basic block of a WideResNet (BN-ReLU-conv3x3 twice, identity or 1x1 shortcut).

    When the width or stride changes, the shortcut convolution (like the main branch) reads the
    activated input, as in Zagoruyko & Komodakis's and TRADES's code; parameter names follow theirs,
    so their state_dicts load unchanged.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        identity = in_planes == out_planes and stride == 1
        self.convShortcut = None if identity else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        return out + (x if self.convShortcut is None else self.convShortcut(activated))


class _WideGroup(nn.Module):
    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[_WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1) for i in range(blocks)]
        )

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """CIFAR WideResNet-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016) for 32 px inputs.

    The layout and parameter names are those of the TRADES / RobustBench ``WideResNet`` (``conv1``,
    ``block1..3.layer.N.{bn1,conv1,bn2,conv2,convShortcut}``, ``bn1``, ``fc``), so the many
    RobustBench CIFAR checkpoints of this family load with ``--arch wrn-28-10`` (or ``wrn-34-10``)
    without the robustbench package. It applies no normalisation itself: RobustBench's checkpoints
    of this family take [0, 1] pixels; for others, declare the mean/std in the threat model.
    """

    #: Checkpoint keys skipped on loading: TRADES-derived checkpoints carry a ``sub_block1`` group
    #: that their forward pass never uses.
    ignored_checkpoint_keys = ("sub_block1.",)

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _WideGroup(blocks, widths[0], widths[1], 1)
        self.block2 = _WideGroup(blocks, widths[1], widths[2], 2)
        self.block3 = _WideGroup(blocks, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(8)  # global on the 8 x 8 maps of a 32 px input
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():  # He initialisation of the convolutions, as the reference code
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.flatten(self.pool(self.relu(self.bn1(out)))))


@register("arch", "wrn-28-10")
def wrn_28_10(num_classes: int = 10) -> WideResNet:
    """WideResNet-28-10 (36.5M parameters): the CIFAR model of RobustBench's Standard and Carmon2019 entries."""
    return WideResNet(28, 10, num_classes)


@register("arch", "wrn-34-10")
def wrn_34_10(num_classes: int = 10) -> WideResNet:
    """WideResNet-34-10 (46.2M parameters): TRADES (Zhang et al. 2019) and many later entries."""
    return WideResNet(34, 10, num_classes)
