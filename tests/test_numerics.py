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


def test_fp32_label_says_tf32_where_cuda_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA a float32 run is TF32 where the settings say so (PyTorch's default for cuDNN
    convolutions): the label says which; the CPU is fp32, and so is CUDA inside ieee_fp32."""
    from robench import _numerics
    from robench.attacks._speed import precision_label
    from robench.context import EvalContext

    assert _numerics.fp32_label("cpu") == "fp32" and precision_label("exact", "cpu") == "fp32"
    with ieee_fp32():
        assert _numerics.fp32_label("cuda") == "fp32"  # no GPU needed: the settings are read, nothing runs
    settings = {"conv": True, "matmul": False}
    monkeypatch.setattr(_numerics, "tf32_enabled", lambda kind: settings[kind])
    assert _numerics.fp32_label("cpu") == "fp32"
    assert _numerics.fp32_label(torch.device("cuda", 0)) == "fp32 (TF32 convolutions)"
    assert precision_label("exact", "cuda") == "fp32 (TF32 convolutions)"
    assert precision_label("fast", "cuda").startswith("bf16")
    ctx = EvalContext(device=torch.device("cuda"), progress=False)
    ctx.begin("clean")
    assert ctx.cost.precision == "fp32 (TF32 convolutions)"  # what the clean pass and the like record
    settings["matmul"] = True
    assert _numerics.fp32_label("cuda") == "fp32 (TF32 convolutions and matmuls)"
    settings["conv"] = False
    assert _numerics.fp32_label("cuda") == "fp32 (TF32 matmuls)"
    settings["matmul"] = False
    assert _numerics.fp32_label("cuda") == "fp32"
    settings["conv"] = None  # torch refused to say (legacy and per-backend settings mixed)
    assert _numerics.fp32_label("cuda") == "fp32 (TF32 unknown)"


def test_tf32_enabled_reads_pytorch_s_defaults() -> None:
    from robench._numerics import tf32_enabled

    # PyTorch's defaults: cuDNN convolutions in TF32, matrix products not (unless the process changed them)
    if torch.backends.cuda.matmul.fp32_precision == "none" and torch.get_float32_matmul_precision() == "highest":
        assert tf32_enabled("matmul") is False
    with ieee_fp32():
        assert tf32_enabled("conv") is False and tf32_enabled("matmul") is False
    assert tf32_enabled("conv") is torch.backends.cudnn.allow_tf32
