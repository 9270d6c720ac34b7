"""PGD and AutoAttack throughput: robench vs a bare loop, torchattacks, foolbox, ART and pyautoattack.

Every contender runs in the same process on the same model, inputs and budget (PGD-10, Linf
eps 8/255 on CIFAR-sized or MNIST-sized inputs); the figure of merit is the time per image-step
relative to the bare forward + input-gradient loop (lower is better; 1.0 = no overhead). Peers
missing from the environment are skipped. Usage::

    python benchmarks/bench_attacks.py --device cpu --model small_cnn --batch 128
    python benchmarks/bench_attacks.py --device cuda --model wrn-28-10 --batch 256   # GPU figures
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robench.attacks import PGD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import MODELS, build, sync as _sync  # noqa: E402

STEPS = 10
EPS = 8 / 255
ALPHA = 2 / 255


def _time_all(contenders: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per contender; repeats are interleaved so that load drifts hit all alike."""
    for fn in contenders.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            _sync(device)
            tick = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - tick)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=MODELS, default="small_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, shape = build(args.model, device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch, *shape), generator=generator).to(device)
    with torch.no_grad():
        # Labels = the model's predictions: every example is clean-correct, so every attack works on all of them.
        y = model(x).argmax(dim=1)

    def bare() -> None:
        x_adv = x.clone()
        for _ in range(STEPS):
            x_adv.requires_grad_(True)
            grad = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)[0]
            x_adv = (x + (x_adv.detach() + ALPHA * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)

    # Random start off, restarts 1: the same work as the peers' PGD; robench also tracks the best iterate.
    contenders: dict[str, Callable[[], object]] = {
        "bare forward+input-gradient loop": bare,
        "robench PGD (exact)": lambda: PGD(steps=STEPS, rel_step_size=ALPHA / EPS)(model, x, y, norm="Linf", eps=EPS, generator=generator),
        "robench PGD (fast: bf16+channels_last)": lambda: PGD(steps=STEPS, rel_step_size=ALPHA / EPS, mode="fast")(
            model, x, y, norm="Linf", eps=EPS, generator=generator
        ),
    }
    if importlib.util.find_spec("torchattacks"):
        import torchattacks

        attack = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
        contenders["torchattacks PGD"] = lambda: attack(x, y)
    if importlib.util.find_spec("foolbox"):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
        fb_attack = fb.attacks.LinfPGD(steps=STEPS, abs_stepsize=ALPHA)
        contenders["foolbox LinfPGD"] = lambda: fb_attack(fmodel, x, y, epsilons=EPS)
    if importlib.util.find_spec("art"):
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=10, clip_values=(0.0, 1.0),
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
        art_attack = ProjectedGradientDescentPyTorch(
            classifier, norm=np.inf, eps=EPS, eps_step=ALPHA, max_iter=STEPS, num_random_init=0,
            batch_size=args.batch, verbose=False,
        )
        x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
        contenders["ART PGD"] = lambda: art_attack.generate(x_np, y_np)
    if importlib.util.find_spec("pyautoattack"):
        from pyautoattack.autopgd_base import APGDAttack

        from robench.attacks.autoattack import (
            AutoAttackParams,
            build_autoattack,
            perturb,
        )

        apgd = APGDAttack(model, n_restarts=1, n_iter=STEPS, eps=EPS, norm="Linf", seed=0, device=device)
        apgd.loss = "ce"
        contenders["pyautoattack APGD-CE"] = lambda: apgd.perturb(x, y)
        params = AutoAttackParams(version="custom", attacks=("apgd-ce",), n_iter=STEPS, n_restarts=1)
        wrapped = build_autoattack(model, params, norm="Linf", eps=EPS, num_classes=10, seed=0, device=device)
        contenders["robench AutoAttack wrapper APGD-CE"] = lambda: perturb(wrapped, "apgd-ce", x, y, ("apgd-ce",), 0)

    times = _time_all(contenders, device, args.repeats)
    base = times["bare forward+input-gradient loop"]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {datetime.date.today()} · torch {torch.__version__} · {device_name} · {args.model} batch {args.batch} · PGD-{STEPS} Linf 8/255")
    print("| attack | seconds | img-steps/s | time / bare loop |")
    print("|---|---:|---:|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.3f} | {args.batch * STEPS / seconds:,.0f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
