"""Generation throughput (images/s) of robench vs the imagecorruptions package, same run, CPU.

    python benchmarks/bench_corruptions.py [--side 32] [--n 64] [--table imagenet]

robench corrupts one batch of ``n`` images (all torch threads); imagecorruptions one image at a
time in one process (multiply by the number of cores for one-process-per-core throughput).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robench.corruptions import TABLES  # noqa: E402
from robench.registry import registry  # noqa: E402
from tests.corruptions._images import smooth_rgb  # noqa: E402
from tests.corruptions._reference import NAMES, reference_corrupt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--n-reference", type=int, default=16)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--table", default="imagenet")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x = smooth_rgb(args.n, side=args.side)
    images = (x[: args.n_reference] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    table = TABLES[args.table]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()}, {args.side} px, severity {args.severity}")
    print(f"| corruption | robench img/s | imagecorruptions img/s (1 process) | ratio |")
    print("|---|---|---|---|")
    for name in NAMES:
        corrupt = registry.get("corruption", name)
        corrupt(x[:2], args.severity, table, torch.Generator().manual_seed(0))  # warm-up (textures, caches)
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):  # best of several: the figures are for an otherwise idle machine
            tick = time.perf_counter()
            corrupt(x, args.severity, table, torch.Generator().manual_seed(0))
            ours_s.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            for i, image in enumerate(images):
                reference_corrupt(image, name, args.severity, seed=i)
            theirs_s.append(time.perf_counter() - tick)
        ours, theirs = args.n / min(ours_s), len(images) / min(theirs_s)
        print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
