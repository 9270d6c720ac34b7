"""mnist5k digits and a few-second training loop, shared by the test fixtures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.data import load_dataset
from robench.data.base import ArrayDataset
from robench.threat_model import DatasetSpec


def digits(split: str, stop: int, start: int = 0, seed: int = 0) -> ArrayDataset:
    """Digits ``start:stop`` of the ``split`` in a fixed random order (seeded permutation)."""
    data, _ = load_dataset(DatasetSpec(manifest="mnist5k", split=split))
    x, y = data.load(slice(0, len(data)))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[start:stop]
    return ArrayDataset(x[order], y[order], 10)


def fit(net: nn.Module, data: ArrayDataset, epochs: int, lr: float = 3e-3, batch: int = 50, seed: int = 0) -> nn.Module:
    """Adam on cross-entropy, seeded; returns the network in eval mode."""
    x_all, y_all = data.load(slice(0, len(data)))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            loss = F.cross_entropy(net(x_all[index]), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()
