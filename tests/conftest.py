"""Shared fixtures: a tiny npz dataset with its manifest, a tiny model, a threat model for them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import torch.nn.functional as F
from torch import nn

# Small models: one thread is fastest and keeps the suite steady on loaded CI machines.
torch.set_num_threads(1)

#: Parametrize a test over devices; the CUDA case carries the ``gpu`` marker.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``gpu`` where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)

N_CLASSES = 4
SIDE = 8


def write_npz_dataset(folder: Path, n: int = 48, seed: int = 0) -> Path:
    """A 4-class, 1x8x8 uint8 NHWC dataset whose class is the brightest quadrant; return its manifest."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    x = rng.integers(0, 60, size=(n, SIDE, SIDE, 1), dtype=np.uint8)
    half = SIDE // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, r * half : (r + 1) * half, c * half : (c + 1) * half, 0] += 180
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "tiny.npz"
    np.savez(data, x=x, y=y.astype(np.int64))
    raw = data.read_bytes()
    manifest = {
        "schema_version": 1,
        "name": "tiny",
        "description": "test fixture",
        "format": "npz",
        "num_classes": N_CLASSES,
        "input_shape": [1, SIDE, SIDE],
        "files": [{"path": "tiny.npz", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}],
        "splits": {"test": {"n": n, "label_counts": [n // N_CLASSES] * N_CLASSES}},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


class QuadrantNet(nn.Module):
    """Scores each quadrant's mean brightness: accurate on the fixture, and differentiable."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.pool(x).flatten(1)


class NoisyQuadrantNet(nn.Module):
    """QuadrantNet with input dropout that stays on in eval mode and noisy logits: a randomized model
    (right on about two passes in three)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = QuadrantNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(F.dropout(x, 0.4, training=True))
        return logits + 6 * torch.randn_like(logits)


@pytest.fixture
def tiny_manifest(tmp_path: Path) -> Path:
    return write_npz_dataset(tmp_path / "data")


@pytest.fixture
def tiny_threat(tmp_path: Path, tiny_manifest: Path) -> Path:
    """A threat model on the tiny dataset: clean + FGSM + PGD at Linf 0.1."""
    threat = {
        "schema_version": 1,
        "name": "tiny-linf",
        "dataset": {"manifest": str(tiny_manifest), "split": "test"},
        "adversary": {"norm": "Linf", "eps": 0.1},
        "evaluations": {"attacks": [{"name": "fgsm"}, {"name": "pgd", "params": {"steps": 5}}]},
    }
    path = tmp_path / "tiny-linf.yaml"
    path.write_text(yaml.safe_dump(threat))
    return path


@pytest.fixture
def quadrant_checkpoint(tmp_path: Path) -> Path:
    """A weights-only state_dict of :class:`QuadrantNet` (arch ``tests.conftest:QuadrantNet``)."""
    path = tmp_path / "quadrant.pt"
    torch.save(QuadrantNet().state_dict(), path)
    return path
