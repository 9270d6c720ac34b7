"""Shared fixtures: a tiny MNIST model trained in seconds on mnist5k, and helpers to run the section."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.context import EvalContext
from tests._mnist import digits, fit
from robench.data.base import ArrayDataset
from robench.models import load_model
from robench.threat_model import ThreatModel


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
    """200 mnist5k test digits in a fixed random order."""
    return digits("test", 200)


@pytest.fixture(scope="session")
def trained_net() -> nn.Module:
    """TinyCNN trained for 4 epochs on 600 mnist5k training digits (about a second on CPU)."""
    torch.manual_seed(0)
    return fit(TinyCNN(), digits("train", 600), epochs=4)


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


class AutocastLiar(nn.Module):
    """``net`` in fp32; under autocast (robench's fast mode) the same logits plus 1000 on class 0.

    The offset leaves every input gradient as it is, but the bf16-mode model calls every input of
    another class broken, the clean one included: an attack that trusts it skips those examples.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        logits = self.net(x)
        if torch.is_autocast_enabled(x.device.type):
            logits = logits + 1000.0 * (torch.arange(logits.shape[1], device=x.device) == 0)
        return logits


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205, D102
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205, D102
        return grad * float("nan")


class NaNGradientNet(nn.Module):
    """``net`` with finite outputs and a NaN input gradient (a broken or masking defence)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_NaNGradient.apply(x))
