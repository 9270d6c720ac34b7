"""``robench demo``: train two small CNNs on the embedded MNIST digits and audit both.

A standard model and a PGD-adversarially-trained one (Madry et al. 2018, eps 0.3, with an eps
warm-up) are trained on mnist5k's train split (4,000 digits), cached as safetensors, then
evaluated under ``threat_models/mnist-linf-0.3.yaml`` through the same path as any user
checkpoint. Everything runs on the CPU in a few minutes and needs no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robench.attacks import PGD
from robench.data import load_dataset
from robench.data.manifest import load_manifest
from robench.models.archs import SmallCNN
from robench.results import Results
from robench.threat_model import DatasetSpec

TRAINING = {
    "standard": {"epochs": 6, "eps": 0.0, "steps": 0},
    "adversarial": {"epochs": 10, "eps": 0.3, "steps": 5, "warmup_epochs": 3},
}
_TRAINING_VERSION = 2  # bump when the recipe changes, to invalidate caches
THREAT_MODEL = "mnist-linf-0.3"
TRAIN_DATA = DatasetSpec(manifest="mnist5k", split="train")
"""What the demo models are trained on (the first ``n_train`` of it where a recipe says so)."""


def cache_dir() -> Path:
    """Where trained demo checkpoints are kept (``$ROBENCH_CACHE/demo``)."""
    base = os.environ.get("ROBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "robench")
    return Path(base) / "demo"


def _train(variant: str, seed: int, log: Callable[[str], None]) -> SmallCNN:
    recipe = TRAINING[variant]
    data, _ = load_dataset(TRAIN_DATA)
    x_all, y_all = data.load(slice(0, int(recipe.get("n_train", len(data)))))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = int(recipe["epochs"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * ((len(x_all) + 63) // 64))
    for epoch in range(epochs):
        tick = time.perf_counter()
        order = torch.randperm(len(x_all), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), 64):
            index = order[start : start + 64]
            x, y = x_all[index], y_all[index]
            if recipe["eps"] > 0:
                eps = recipe["eps"] * min(1.0, (epoch + 1) / recipe["warmup_epochs"])
                attack = PGD(steps=int(recipe["steps"]), rel_step_size=2.5 / recipe["steps"])
                model.eval()
                x = attack(model, x, y, norm="Linf", eps=eps, generator=generator).x_adv
                model.train()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
        log(f"  {variant} epoch {epoch + 1}/{epochs}: loss {total_loss / len(order):.3f} ({time.perf_counter() - tick:.1f} s)")
    model.eval()
    return model


def trained_checkpoint(variant: str, seed: int = 0, log: Callable[[str], None] = print) -> Path:
    """Path of the cached safetensors checkpoint of ``variant``, training it if needed."""
    return demo_checkpoint(variant, seed, log)[0]


_TORCH_KEY = "robench.trained_with_torch"
"""The safetensors metadata key of the torch version that trained a demo checkpoint."""


def demo_checkpoint(variant: str, seed: int = 0, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    """:func:`trained_checkpoint` and where the checkpoint came from, for ``ModelInfo.provenance``
    (:func:`robench.runner.evaluate`'s ``model_provenance``): the recipe (``TRAINING[variant]``,
    the seed, the training data, the cache tag the recipe hashes to), whether the cached file was
    reused or trained in this run, and the torch version that trained it (``None`` for a file cached
    before robench wrote it into the checkpoint's metadata)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    recipe = TRAINING[variant]
    key = json.dumps({"v": _TRAINING_VERSION, "variant": variant, "seed": seed, **recipe}, sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_dir() / f"mnist-small_cnn-{variant}-{tag}.safetensors"
    n_train = int(recipe.get("n_train", load_manifest(TRAIN_DATA.manifest)[0].split_spec(TRAIN_DATA.split).n))
    provenance: dict[str, Any] = {
        "trained_by": f"robench demo, {variant} recipe v{_TRAINING_VERSION}",
        **{k: v for k, v in recipe.items() if k != "n_train"},
        "seed": seed,
        "train_data": f"{TRAIN_DATA.manifest} split {TRAIN_DATA.split}, {n_train:,} examples",
        "cache_tag": tag,
    }
    if path.is_file():
        log(f"Reusing the cached {variant} model {path}")
        with safe_open(str(path), "pt") as handle:
            trained_with = (handle.metadata() or {}).get(_TORCH_KEY)
        return path, {**provenance, "checkpoint": "reused from the cache", "trained_with_torch": trained_with}
    log(f"Training the {variant} model on mnist5k (4,000 digits, CPU)...")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # training only; the caller's setting is restored
    try:
        model = _train(variant, seed, log)
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={_TORCH_KEY: torch.__version__})
    os.replace(tmp, path)
    return path, {**provenance, "checkpoint": "trained in this run", "trained_with_torch": torch.__version__}


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    n_examples: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Results]:
    """Train (or reuse) both models, evaluate them, write results.json, report.html, metrics.csv and summary.md for each.

    Args:
        out: Output folder; one sub-folder per model.
        seed: Training and evaluation seed.
        device: Evaluation device (default: CUDA when available).
        progress: Show progress bars.
        n_examples: Evaluate fewer test digits than the threat model's 1,000 (for tests).
        log: Where progress lines go.

    Raises:
        ConfigError: an unknown or unavailable ``device``, or an ``out`` that cannot be a folder, found
            before any training (they were found by the first evaluation, after a model had trained).
    """
    from robench.report import render_report
    from robench.report.exports import write_exports
    from robench.runner import check_out_dir, evaluate, resolve_device

    resolve_device(device)
    for variant in TRAINING:
        check_out_dir(out / variant)
    outcomes: dict[str, Results] = {}
    for variant in TRAINING:
        checkpoint, provenance = demo_checkpoint(variant, seed, log)
        target = out / variant
        log(f"Evaluating the {variant} model under {THREAT_MODEL} ...")
        results = evaluate(
            checkpoint, THREAT_MODEL, arch="small_cnn", out_dir=target, seed=seed, device=device, progress=progress,
            n_examples=n_examples, model_provenance=provenance,
        )
        render_report(results, target / "report.html")
        write_exports(results, target)  # metrics.csv and summary.md, as `robench evaluate` writes
        outcomes[variant] = results
    return outcomes


def demo_table(outcomes: dict[str, Results]) -> str:
    """Side-by-side summary of the demo models: one row per headline metric, one column per model."""
    from robench.cli import format_record, format_table
    from robench.report.render import record_label, summary_records

    variants = list(outcomes)
    cells: dict[str, dict[str, str]] = {}
    for variant, results in outcomes.items():
        for record in summary_records(results):
            cells.setdefault(record_label(record), {})[variant] = " ".join(format_record(record)).strip()
    n = {v: r.dataset.n_examples for v, r in outcomes.items()}
    header = ("metric (95% CI)", *[f"{v} (n={n[v]})" for v in variants])
    rows = [(label, *[row.get(v, "–") for v in variants]) for label, row in cells.items()]
    return format_table(header, rows)
