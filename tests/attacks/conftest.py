"""Shared fixtures: a tiny MNIST model trained in seconds on mnist5k, and helpers to run the section."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.context import EvalContext
from robench.data import load_dataset
from robench.data.base import ArrayDataset
from robench.models import load_model
from robench.threat_model import DatasetSpec, ThreatModel


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine OpenMP threads
    spinning against other processes made the suite 8x slower (84 s vs 10 s measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class TinyCNN(nn.Module):
    """Conv(8, stride 2) -> ReLU -> Conv(16, stride 2) -> ReLU -> Linear: fast enough for attack tests."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)


@pytest.fixture(scope="session")
def mnist_test() -> ArrayDataset:
    """The first 200 mnist5k test digits (20 per class, in class order shuffled by a fixed permutation)."""
    data, _ = load_dataset(DatasetSpec(manifest="mnist5k", split="test"))
    x, y = data.load(slice(0, len(data)))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:200]
    return ArrayDataset(x[order], y[order], 10)


@pytest.fixture(scope="session")
def trained_net() -> nn.Module:
    """TinyCNN trained for 4 epochs on 600 mnist5k training digits (about a second on CPU)."""
    data, _ = load_dataset(DatasetSpec(manifest="mnist5k", split="train"))
    x_all, y_all = data.load(slice(0, len(data)))
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(y_all), generator=generator)[:600]
    x_all, y_all = x_all[chosen], y_all[chosen]
    torch.manual_seed(0)
    net = TinyCNN()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(4):
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(order), 50):
            index = order[start : start + 50]
            loss = F.cross_entropy(net(x_all[index]), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


@pytest.fixture()
def handle(trained_net):
    """A fresh ModelHandle (own pass counter) around the trained net."""
    return load_model(trained_net, device="cpu")


def make_threat(attacks: list[dict], norm: str = "Linf", eps: float | str = 0.1, **adversary) -> ThreatModel:
    """A threat model on mnist5k with the given attack entries."""
    return ThreatModel.model_validate(
        {
            "name": "test",
            "dataset": {"manifest": "mnist5k"},
            "adversary": {"norm": norm, "eps": eps, **adversary},
            "evaluations": {"attacks": attacks},
        }
    )


def run_section(handle, data, threat: ThreatModel, index: int = 0, ctx: EvalContext | None = None, seed: int = 0):
    """Run the ``attacks`` evaluator for the threat model's attack entry ``index``."""
    from robench.registry import registry

    ctx = ctx or EvalContext(device=torch.device("cpu"), seed=seed, batch_size=100, progress=False)
    spec = threat.evaluations.attacks[index]
    ctx.begin(f"attacks/{spec.key}")
    return registry.get("evaluation", "attacks")(handle, data, threat, spec, ctx), ctx


def record(output, name: str, **condition):
    """The one record called ``name`` whose condition contains ``condition``."""
    found = [r for r in output.records if r.name == name and all(r.condition.get(k) == v for k, v in condition.items())]
    assert len(found) == 1, (name, condition, len(found))
    return found[0]
