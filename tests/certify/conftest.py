"""Fixtures: mnist5k digits and a small MLP trained on them in about a second."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.data import load_dataset
from robench.data.base import ArrayDataset
from robench.threat_model import DatasetSpec


@pytest.fixture(scope="session")
def digits() -> ArrayDataset:
    """200 mnist5k test digits in a fixed random order."""
    data, _ = load_dataset(DatasetSpec(manifest="mnist5k", split="test"))
    x, y = data.load(slice(0, len(data)))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:200]
    return ArrayDataset(x[order], y[order], 10)


@pytest.fixture(scope="session")
def digit_mlp() -> nn.Module:
    """Flatten -> Linear(784, 64) -> ReLU -> Linear(64, 10), 8 epochs on 800 test digits not in ``digits``."""
    data, _ = load_dataset(DatasetSpec(manifest="mnist5k", split="test"))
    x_all, y_all = data.load(slice(0, len(data)))
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))[200:1000]
    x_all, y_all = x_all[chosen], y_all[chosen]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(8):
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(order), 50):
            index = order[start : start + 50]
            loss = F.cross_entropy(net(x_all[index]), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval()
