"""ieee_fp32: TF32 off inside the block, the previous settings back after it (also on errors)."""

from __future__ import annotations

import pytest
import torch

from robench._numerics import _knobs, ieee_fp32
from tests.conftest import DEVICES


def _state() -> list[object]:
    return [getattr(owner, name) for owner, name in _knobs()]


def test_switches_to_ieee_and_restores() -> None:
    before = _state()
    with ieee_fp32():
        assert all(value in ("ieee", False) for value in _state())
    assert _state() == before
    with pytest.raises(ZeroDivisionError), ieee_fp32():
        1 / 0
    assert _state() == before


@pytest.mark.parametrize("device", DEVICES)
def test_conv_inside_the_block_matches_float64(device: str) -> None:
    # On an Ampere+ GPU a float32 convolution defaults to TF32 (relative error ~1e-3); inside the
    # block it must agree with float64 to float32 accuracy.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 64, 16, 16, generator=generator)
    w = torch.randn(64, 64, 3, 3, generator=generator)
    exact = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    with ieee_fp32():
        out = torch.nn.functional.conv2d(x.to(device), w.to(device), padding=1).cpu().double()
    assert float(((out - exact).abs() / exact.abs().clamp(min=1.0)).max()) < 1e-4
