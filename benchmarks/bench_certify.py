"""Randomized-smoothing throughput: robench's sampler vs a Cohen-style loop vs bare forward passes.

Measured in the same process on the same model and device:

- bare forward: ``model(x)`` on a fixed batch of ``--batch`` images (the ceiling);
- Cohen-style loop: the official code's ``_sample_noise`` logic restated
  (:func:`robench.certify.smoothing.cohen_reference_counts`): one image at a time, ``batch`` 400,
  fp32, ``randn_like``, counts copied to the host after every pass;
- robench: :class:`robench.certify.smoothing.NoiseSampler`, noise of many images per pass drawn on the
  device from per-image generators, counts kept on the device (optionally bf16 + channels_last and
  ``torch.compile``).

Usage: ``python benchmarks/bench_certify.py [--device cuda] [--model small|resnet18|wrn-28-10] [--n 2000]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from robench.attacks._speed import StepModel
from robench.certify.smoothing import NoiseSampler, cohen_reference_counts, make_generators

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import MODELS, build, sync as _sync  # noqa: E402


def bare_forward(model: nn.Module, device: torch.device, batch: int, seconds: float) -> float:
    """Forward passes per second (images) on a fixed batch."""
    x = torch.rand(batch, 3, 32, 32, device=device)
    with torch.no_grad():
        model(x)
        _sync(device)
        count, tick = 0, time.perf_counter()
        while time.perf_counter() - tick < seconds:
            model(x).argmax(1)
            count += batch
        _sync(device)
    return count / (time.perf_counter() - tick)


def cohen_loop(model: nn.Module, images: torch.Tensor, n: int, sigma: float) -> float:
    """Noisy samples per second of the Cohen-style loop (batch 400, one image at a time)."""
    _sync(images.device)
    tick = time.perf_counter()
    for image in images:
        cohen_reference_counts(model, image, n, sigma, 400, 10)
    _sync(images.device)
    return images.shape[0] * n / (time.perf_counter() - tick)


def robench_sampler(forward, images: torch.Tensor, n: int, sigma: float, batch: int) -> float:  # noqa: ANN001
    """Noisy samples per second of :class:`NoiseSampler`."""
    sampler = NoiseSampler(forward, 10, sigma, batch)
    generators = make_generators(torch.arange(images.shape[0]), images.device)
    sampler.counts(images[:1], min(n, batch), make_generators(torch.tensor([99]), images.device))  # warm-up
    _sync(images.device)
    tick = time.perf_counter()
    counts = sampler.counts(images, n, generators)
    counts.sum().item()
    _sync(images.device)
    return images.shape[0] * n / (time.perf_counter() - tick)


def main() -> None:
    """Run the three measurements and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="small", choices=[m for m in MODELS if m != "small_cnn"])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--n", type=int, default=2000, help="noisy samples per image")
    parser.add_argument("--batch", type=int, default=1000, help="robench samples per forward pass")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--fast", action="store_true", help="also bf16 autocast + channels_last")
    parser.add_argument("--compile", action="store_true", help="also torch.compile")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each bare-forward measurement")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, _ = build(args.model, device)
    images = torch.rand(args.images, 3, 32, 32, device=device)
    result = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "model": args.model,
        "n_per_image": args.n,
        "images": args.images,
        "bare_forward_img_per_s": {
            "batch_400": bare_forward(model, device, 400, args.seconds),
            f"batch_{args.batch}": bare_forward(model, device, args.batch, args.seconds),
        },
        "cohen_loop_samples_per_s": cohen_loop(model, images, args.n, args.sigma),
        "robench_exact_samples_per_s": robench_sampler(model, images, args.n, args.sigma, args.batch),
    }
    if args.fast or args.compile:
        stepper = StepModel(model, "fast" if args.fast else "exact", args.compile)
        with stepper.prepared():
            result["robench_variant"] = {"fast": args.fast, "compile": args.compile}
            result["robench_variant_samples_per_s"] = robench_sampler(stepper, images, args.n, args.sigma, args.batch)
    result["robench_over_cohen"] = result["robench_exact_samples_per_s"] / result["cohen_loop_samples_per_s"]
    result["robench_over_bare"] = result["robench_exact_samples_per_s"] / result["bare_forward_img_per_s"][f"batch_{args.batch}"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
