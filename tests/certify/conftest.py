"""Fixtures: mnist5k digits and a small MLP trained on them in about a second."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.data.base import ArrayDataset
from tests._mnist import digits as mnist_digits, fit


@pytest.fixture(scope="session")
def digits() -> ArrayDataset:
    """200 mnist5k test digits in a fixed random order."""
    return mnist_digits("test", 200)


@pytest.fixture(scope="session")
def digit_mlp() -> nn.Module:
    """Flatten -> Linear(784, 64) -> ReLU -> Linear(64, 10), 8 epochs on 800 test digits not in ``digits``."""
    torch.manual_seed(0)
    net = fit(nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)), mnist_digits("test", 1000, 200), epochs=8)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net
