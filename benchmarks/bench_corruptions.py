"""Corruption throughput: generation vs the imagecorruptions package, and the full sweep on a device.

Generation (default): robench corrupts one batch of ``n`` images on ``--device`` (all torch
threads on a CPU); imagecorruptions corrupts images one at a time in one process on the CPU (multiply
by the number of cores for one-process-per-core throughput). Without imagecorruptions importable
(e.g. on a GPU machine without it) only robench's column is printed::

    python benchmarks/bench_corruptions.py [--device cuda] [--side 32] [--n 64] [--table imagenet]

Sweep (``--sweep``): the real ``corruptions`` evaluation (every benchmark corruption x 5 severities,
CIFAR-10-C table) of ``--n`` synthetic CIFAR-size images through a model, timed end to end, beside
the bare forward passes of the same ``75 n`` images (the ceiling)::

    python benchmarks/bench_corruptions.py --sweep --device cuda --model resnet18 --n 10000 --batch 1024 [--rng device]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import MODELS, build, sync  # noqa: E402
from robench.corruptions import TABLES  # noqa: E402
from robench.registry import registry  # noqa: E402
from robench.threat_model import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS  # noqa: E402
from tests.corruptions._images import smooth_rgb  # noqa: E402


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def generation(args: argparse.Namespace, device: torch.device) -> None:
    """Images/s of every corruption, robench on ``device`` vs imagecorruptions on one CPU core."""
    try:
        from tests.corruptions._reference import reference_corrupt
    except ImportError as exc:
        reference_corrupt = None
        print(f"# imagecorruptions not importable ({exc}): robench only")
    x = smooth_rgb(args.n, side=args.side).to(device)
    images = (x[: args.n_reference].cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    table = TABLES[args.table]
    print(f"# {datetime.date.today()} · {_machine(device)} · torch {torch.__version__} · {args.side} px, {args.table} table, severity {args.severity}, batch {args.n}")
    print("| corruption | robench img/s | imagecorruptions img/s (1 process) | ratio |")
    print("|---|---:|---:|---:|")
    for name in BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS:
        corrupt = registry.get("corruption", name)
        corrupt(x[:2], args.severity, table, torch.Generator().manual_seed(0))  # warm-up (textures, caches)
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):  # best of several: the figures are for an otherwise idle machine
            sync(device)
            tick = time.perf_counter()
            corrupt(x, args.severity, table, torch.Generator().manual_seed(0))
            sync(device)
            ours_s.append(time.perf_counter() - tick)
            if reference_corrupt is not None:
                tick = time.perf_counter()
                for i, image in enumerate(images):
                    reference_corrupt(image, name, args.severity, seed=i)
                theirs_s.append(time.perf_counter() - tick)
        ours = args.n / min(ours_s)
        if theirs_s:
            theirs = len(images) / min(theirs_s)
            print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |")
        else:
            print(f"| {name} | {ours:,.0f} | | |")


def sweep(args: argparse.Namespace, device: torch.device) -> None:
    """Wall time of the 15 x 5 generated sweep through the real evaluation, and of bare forwards."""
    from robench.context import EvalContext
    from robench.data.base import ArrayDataset
    from robench.models import load_model
    from robench.threat_model import CorruptionsSpec, DatasetSpec, ThreatModel

    net, shape = build(args.model, device)
    x = smooth_rgb(args.n, side=shape[-1])
    with torch.no_grad():
        y = torch.cat([net(x[i : i + args.batch].to(device)).argmax(1).cpu() for i in range(0, args.n, args.batch)])
    data = ArrayDataset(x, y, 10)
    handle = load_model(net, device=device)
    threat = ThreatModel(name="bench", dataset=DatasetSpec(manifest="unused"))
    spec = CorruptionsSpec(table="cifar10", rng=args.rng)
    cells = len(spec.corruptions) * len(spec.severities)
    print(f"# {datetime.date.today()} · {_machine(device)} · torch {torch.__version__} · {args.model} · "
          f"{len(spec.corruptions)} corruptions x {len(spec.severities)} severities x {args.n:,} images, batch {args.batch}, rng {args.rng}")

    # Ceiling: the same number of forward passes on clean batches already on the device.
    batches = [x[i : i + args.batch].to(device) for i in range(0, args.n, args.batch)]
    with torch.no_grad():
        handle.predict_logits(batches[0])
        sync(device)
        tick = time.perf_counter()
        for _ in range(cells):
            for batch in batches:
                handle.predict_logits(batch).float().softmax(dim=1).cpu()
        sync(device)
    bare = time.perf_counter() - tick

    ctx = EvalContext(device=device, batch_size=args.batch, progress=args.progress)
    ctx.begin("corruptions")
    tick = time.perf_counter()
    output = registry.get("evaluation", "corruptions")(handle, data, threat, spec, ctx)
    sync(device)
    total = time.perf_counter() - tick
    mean = next(r for r in output.records if r.name == "mean_corruption_accuracy")
    print("| what | seconds | images/s |")
    print("|---|---:|---:|")
    print(f"| bare forward passes, {cells} x {args.n:,} clean images (ceiling) | {bare:.1f} | {cells * args.n / bare:,.0f} |")
    print(f"| robench corruptions sweep (generate + forward + records + example grid) | {total:.1f} | {cells * args.n / total:,.0f} |")
    print(f"# sweep / bare = {total / bare:.2f}; mean corruption accuracy of the random-weight model vs its clean predictions: {mean.value:.3f} (n {mean.n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sweep", action="store_true", help="time the full 15 x 5 generated sweep through a model")
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--n", type=int, default=64, help="images per batch (generation) or in the sweep")
    parser.add_argument("--n-reference", type=int, default=16)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--table", default="imagenet")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=[m for m in MODELS if m != "small_cnn"], default="resnet18")
    parser.add_argument("--batch", type=int, default=1000, help="sweep batch size")
    parser.add_argument("--rng", choices=["cpu", "device"], default="cpu", help="sweep: where random draws are made")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.sweep:
        sweep(args, device)
    else:
        generation(args, device)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
