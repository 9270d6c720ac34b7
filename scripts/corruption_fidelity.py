"""Fidelity of robench's corruptions to the reference (imagecorruptions 1.1.2, ImageNet-C table).

    python scripts/corruption_fidelity.py [--n 64] [--replicates 20] [--out docs/corruption_fidelity.md]

The reference is imagecorruptions' code run on one uint8 image at a time (tests/corruptions/_reference.py,
which patches its numpy-2 / scikit-image incompatibilities), with the released-data generator's
formula (make_imagenet_c.py) where the package departs from it: snow's trimmed zoom, elastic_transform,
and glass_blur / frost on gray images run as RGB then reduced to luma. Parameters: the ImageNet-C table
(what the package implements), pixelate up-sampled with NEAREST as the package does.

1. Pixel fidelity on 28 px MNIST digits (gray) and 32 px smooth synthetic RGB scenes:
   - deterministic corruptions: max and mean |robench - reference| (0..255 scale);
   - random corruptions whose draws line up with the reference's (``SHARED_DRAWS``): the reference is
     fed robench's own random numbers, so the same error is measured;
   - the others (shot and impulse noise, frost; the noises on RGB): |difference| of the mean and std of
     the corrupted pixels, and the L1 distance of their 32-bin histograms (0 identical, 2 disjoint).
2. Accuracy of the mnist5k demo CNN (robench.demo) on the 1,000 held-out digits (its test split),
   corrupted by each implementation, as a paired difference with a 95% interval over digits: on the same
   inputs or draws where section 1 compares them so, else averaged over ``--replicates`` independent
   draws per digit and implementation.
3. The package as it ships, for the corruptions where robench follows the released-data generator
   instead: how far apart the two are in accuracy.
Writes a Markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robench.corruptions import CorruptionTable  # noqa: E402
from robench.registry import registry  # noqa: E402
from tests.corruptions._images import smooth_rgb  # noqa: E402
from tests.corruptions._reference import (  # noqa: E402
    NAMES,
    SHARED_DRAWS,
    imagecorruptions,
    on_shared_draws,
    package_table,
    reference_batch,
)

DETERMINISTIC = {"defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "saturate", "pixelate", "jpeg_compression"}
# Where robench follows make_imagenet_c.py and the package does something else (see the notes).
PACKAGE_DEPARTURES = ("elastic_transform", "glass_blur", "snow", "frost")

NOTES = """
## Reading the tables

- Deterministic corruptions are exact (0.00 grey levels) except pixelate, within PIL's uint8 rounding (1 level).
- On the same random draws robench and the reference agree to hundredths of a grey level: float32 (robench's working
  precision) against float64. This includes spatter, whose OpenCV steps robench reproduces exactly (Canny's
  fixed-point sector test and non-maximum suppression, the 5 x 5 chamfer distance transform, `cv2.blur` then
  truncation, `equalizeHist` with its float32 rounding; and the liquid layer's `astype(np.uint8)`, which on x86
  wraps values above 1 modulo 256). Where the reference quantises to 8 bits midway (glass_blur's blurred image,
  snow's flake layer), a value within rounding of a step can land on either side in the two float computations, so
  a few values (tens in 200,000) differ by up to one level.
- NaN: on a 28 px digit the package's water spatter (severities 1-3) sometimes finds no liquid above the threshold
  and divides 0 by 0 (`m /= np.max(m)`), returning NaN pixels (the released-data generator would have stored
  them as 0 after its uint8 cast). robench adds no spatter there. Such digits are counted and left out of both
  sides of the comparison.
- shot_noise, impulse_noise and frost draw their numbers in another layout (one tensor per batch, a uniform crop
  offset) and are compared by statistics and by accuracy over independent draws; the noises on RGB likewise. The
  intervals of those cells hold the draw noise of both implementations.
- frost textures: robench resizes them with the image (`frost_scale * side / base_size`: a 28 px digit sees the
  pattern as a 224 px ImageNet image does, a 32 px CIFAR image as make_cifar_c.py's 0.2 resize gives it), bilinearly
  as make_cifar_c.py does; the package crops the texture resized by 1.1, bicubically, at any image size. The frost
  row compares the formula and this choice together; the row "frost on the package's textures" hands robench the
  package's resized textures and so compares the formula alone. (At the package's scale but with robench's bilinear
  resize, whose textures have 1-7% lower contrast, robench was 1.1 points [+0.5, +1.8] more accurate at severity 3:
  the interpolation, not the formula.)
- Departures of the package from the released-data generator, which robench follows (section 3):
  - elastic_transform: the package uses a different, affine-free formula with other constants;
  - snow: the package motion-blurs the untrimmed zoomed flake layer and then crops its top-left corner,
    which puts brighter flakes along the borders of small images;
  - glass_blur on gray: the package's 2-D branch really swaps pixels (numpy scalars), while on RGB (the only
    layout make_imagenet_c.py knew) the "swap" copies whole pixels; robench copies;
  - frost on gray: the package takes the luma of the texture's crop in blue-green-red order with red-green-blue
    weights; robench the luma of the crop in RGB order.
- Both sides are compared in floating point. The released sets were also quantised when they were stored
  (CIFAR-10-C truncated to 8 bits, ImageNet-C saved as JPEG at quality 85); what that changes in accuracy, and
  the threat-model setting that reproduces it (`corruptions.quantize`), are in docs/corruption_quantisation.md.
"""


@dataclasses.dataclass(frozen=True)
class Paired:
    """Accuracy of robench and of the reference on the same digits; difference with a 95% interval."""

    ours: float
    ref: float
    delta: float
    low: float
    high: float
    n: int
    excluded: int

    @classmethod
    def of(cls, ours: np.ndarray, ref: np.ndarray) -> Paired:
        """``ours`` and ``ref``: per-digit correctness (0/1, or a mean over draws); NaN where the
        reference returned NaN pixels, and such digits are left out of both."""
        keep = ~(np.isnan(ours) | np.isnan(ref))
        a, b = ours[keep], ref[keep]
        d = a - b
        half = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.inf
        return cls(float(a.mean()), float(b.mean()), float(d.mean()), float(d.mean() - half), float(d.mean() + half), len(d), int((~keep).sum()))

    def cell(self) -> str:
        dropped = f"; {self.excluded} NaN" if self.excluded else ""
        return f"{100 * self.ours:.1f} / {100 * self.ref:.1f} ({100 * self.delta:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]{dropped})"


@contextlib.contextmanager
def cached_frost_textures() -> Iterator[None]:
    """Read each frost texture file once and resize it once per size (the package does both on every
    call, which would dominate the run). Cached arrays are read-only; other calls pass through."""
    cv2 = imagecorruptions.corruptions.cv2
    imread, resize = cv2.imread, cv2.resize
    textures: dict[str, np.ndarray] = {}
    resized: dict[tuple[int, tuple[int, ...], Any], np.ndarray] = {}

    def read(filename: str) -> np.ndarray:
        if filename not in textures:
            textures[filename] = imread(filename)
            textures[filename].setflags(write=False)
        return textures[filename]

    def resize_cached(src: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        if args or not any(src is texture for texture in textures.values()):
            return resize(src, *args, **kwargs)
        key = (id(src), tuple(kwargs["dsize"]), kwargs.get("interpolation"))
        if key not in resized:
            resized[key] = resize(src, **kwargs)
            resized[key].setflags(write=False)
        return resized[key]

    with mock.patch.object(cv2, "imread", read), mock.patch.object(cv2, "resize", resize_cached):
        yield


FROST_ON_PACKAGE_TEXTURES = "frost on the package's textures"


@contextlib.contextmanager
def package_frost_textures() -> Iterator[None]:
    """robench's frost on the textures the package crops from at this size: each resized by 1.1 with
    bicubic interpolation (cv2.INTER_CUBIC, sizes rounded up), where robench resizes by
    ``frost_scale * side / base_size`` with bilinear interpolation as make_cifar_c.py does."""
    from robench.corruptions import weather
    from robench.corruptions._textures import FROST_FILES, N_USED, frost_dir

    cv2 = imagecorruptions.corruptions.cv2
    textures = []
    for name in FROST_FILES[:N_USED]:
        image = cv2.imread(str(frost_dir() / name))
        height, width = image.shape[:2]
        image = cv2.resize(image, dsize=(math.ceil(width * 1.1), math.ceil(height * 1.1)), interpolation=cv2.INTER_CUBIC)
        textures.append(torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float() / 255.0)
    with mock.patch.object(weather, "frost_textures", lambda *args: tuple(textures)):
        yield


def ours(x: torch.Tensor, name: str, severity: int, table: CorruptionTable, seed: int) -> torch.Tensor:
    return registry.get("corruption", name)(x, severity, table, torch.Generator().manual_seed(seed))


def reference_independent(x: torch.Tensor, name: str, severity: int, seed: int, original: bool = True) -> torch.Tensor:
    return torch.from_numpy(reference_batch(x, name, severity, seed=seed, original=original)).float()


INDEPENDENT = "independent draws"


def matching(name: str, x: torch.Tensor) -> str:
    """How robench's and the reference's images of ``x`` line up: ``"same input"`` (deterministic),
    ``"same draws"`` (the reference is fed robench's random numbers) or :data:`INDEPENDENT`."""
    if name in DETERMINISTIC:
        return "same input"
    return "same draws" if ("gray" if x.shape[1] == 1 else "rgb") in SHARED_DRAWS.get(name, ()) else INDEPENDENT


def both(x: torch.Tensor, name: str, severity: int, table: CorruptionTable, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """robench's and the reference's images of ``x``, on the same draws where :func:`matching` says so."""
    if matching(name, x) == "same draws":
        a, b = on_shared_draws(x, name, severity, table, torch.Generator().manual_seed(seed))
        return a, torch.from_numpy(b).float()
    return ours(x, name, severity, table, seed), reference_independent(x, name, severity, seed)


def pixel_cell(a: torch.Tensor, b: torch.Tensor, exact: bool) -> str:
    finite = ~b.isnan().flatten(1).any(1)
    dropped = f"; {int((~finite).sum())} NaN" if not finite.all() else ""
    a, b = a[finite], b[finite]
    if exact:
        diff = (a - b).abs() * 255
        return f"max {diff.max():.2f}, mean {diff.mean():.3f}{dropped}"
    h1 = torch.histc(a, 32, 0, 1) / a.numel()
    h2 = torch.histc(b, 32, 0, 1) / b.numel()
    return f"Δmean {abs(a.mean() - b.mean()) * 255:.2f}, Δstd {abs(a.std() - b.std()) * 255:.2f}, hist {float((h1 - h2).abs().sum()):.3f}{dropped}"


def pixel_section(sets: dict[str, torch.Tensor], table: CorruptionTable) -> list[str]:
    lines = ["## 1. Pixel fidelity", ""]
    for set_name, x in sets.items():
        lines += [f"### {set_name}, n={len(x)}", "", "| corruption | compared | " + " | ".join(f"s{s}" for s in range(1, 6)) + " |", "|---|---|" + "---|" * 5]
        for name in NAMES:
            cells = []
            how = matching(name, x)
            for severity in range(1, 6):
                cells.append(pixel_cell(*both(x, name, severity, table, severity), exact=how != INDEPENDENT))
            lines.append(f"| {name} | {'statistics' if how == INDEPENDENT else how} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def correct(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-image correctness; NaN for an image with NaN pixels."""
    with torch.no_grad():
        hits = (model(x.float().nan_to_num()).argmax(1) == labels).double()
    return torch.where(x.isnan().flatten(1).any(1), torch.nan, hits).numpy()


def replicated(model: torch.nn.Module, labels: torch.Tensor, replicates: int, corrupt: Callable[[int], torch.Tensor]) -> np.ndarray:
    """Per-digit correctness averaged over ``replicates`` independent corruptions."""
    return np.mean([correct(model, corrupt(r), labels) for r in range(replicates)], axis=0)


def accuracy_section(model: torch.nn.Module, digits: torch.Tensor, labels: torch.Tensor, table: CorruptionTable, replicates: int) -> tuple[list[str], list[tuple[str, int, Paired]]]:
    clean = correct(model, digits, labels).mean()
    lines = [
        f"## 2. Demo-model accuracy on the {len(digits)} held-out digits (clean {100 * clean:.1f}%)",
        "",
        f"Cells: robench / reference accuracy (Δ in points [paired 95% interval over digits]). Random corruptions without "
        f"shared draws: each accuracy is the mean over {replicates} independent draws per digit.",
        "",
        "| corruption | compared | " + " | ".join(f"s{s}" for s in range(1, 6)) + " |",
        "|---|---|" + "---|" * 5,
    ]
    results: list[tuple[str, int, Paired]] = []
    rows = [(name, name, contextlib.nullcontext) for name in NAMES] + [(FROST_ON_PACKAGE_TEXTURES, "frost", package_frost_textures)]
    for label, name, textures in rows:
        cells = []
        how = matching(name, digits)
        for severity in range(1, 6):
            if how != INDEPENDENT:
                x_ours, x_ref = both(digits, name, severity, table, severity)
                a, b = correct(model, x_ours, labels), correct(model, x_ref, labels)
            else:
                with textures():
                    a = replicated(model, labels, replicates, lambda r: ours(digits, name, severity, table, 100 * r + severity))
                b = replicated(model, labels, replicates, lambda r: reference_independent(digits, name, severity, 100 * r + severity))
            paired = Paired.of(a, b)
            results.append((label, severity, paired))
            cells.append(paired.cell())
        lines.append(f"| {label} | {f'{replicates} draws each' if how == INDEPENDENT else how} | " + " | ".join(cells) + " |")
    worst = max(results, key=lambda item: abs(item[2].delta))
    over = [f"{n} s{s} ({100 * p.delta:+.1f})" for n, s, p in results if abs(p.delta) > 0.01]
    excluded = [f"{n} s{s}" for n, s, p in results if p.low > 0 or p.high < 0]
    lines += [
        "",
        f"Largest |Δ|: {100 * abs(worst[2].delta):.1f} points ({worst[0]} s{worst[1]}). "
        f"Cells over the 1-point target: {', '.join(over) or 'none'}. "
        f"Cells whose interval excludes 0: {', '.join(excluded) or 'none'}.",
        "",
    ]
    return lines, results


def package_section(model: torch.nn.Module, digits: torch.Tensor, labels: torch.Tensor, table: CorruptionTable, replicates: int) -> list[str]:
    lines = [
        "## 3. The package as it ships, where it departs from the released-data generator",
        "",
        f"robench (independent draws) against imagecorruptions' own code on gray digits, {replicates} draws each; same cells as section 2.",
        "",
        "| corruption | " + " | ".join(f"s{s}" for s in range(1, 6)) + " |",
        "|---|" + "---|" * 5,
    ]
    variants = [(name, name, contextlib.nullcontext) for name in PACKAGE_DEPARTURES]
    variants.append((FROST_ON_PACKAGE_TEXTURES, "frost", package_frost_textures))
    for label, name, textures in variants:
        cells = []
        for severity in range(1, 6):
            with textures():
                a = replicated(model, labels, replicates, lambda r: ours(digits, name, severity, table, 100 * r + severity))
            b = replicated(model, labels, replicates, lambda r: reference_independent(digits, name, severity, 100 * r + severity, original=False))
            cells.append(Paired.of(a, b).cell())
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def demo_model() -> torch.nn.Module:
    from safetensors.torch import load_file

    from robench.demo import trained_checkpoint
    from robench.models.archs import SmallCNN

    model = SmallCNN()
    model.load_state_dict(load_file(str(trained_checkpoint("standard"))))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="images per set for the pixel comparison")
    parser.add_argument("--replicates", type=int, default=20, help="independent draws per digit where draws are not shared")
    parser.add_argument("--package-replicates", type=int, default=2, help="the same for section 3")
    parser.add_argument("--out", default="docs/corruption_fidelity.md")
    args = parser.parse_args()
    from robench.data import DatasetSpec, load_dataset

    started = time.perf_counter()
    table = package_table()
    data, _ = load_dataset(DatasetSpec(manifest="mnist5k", split="test"))
    digits, labels = data.load(slice(0, len(data)))
    step = max(1, len(digits) // args.n)
    sets = {"gray 28 px (MNIST digits)": digits[::step][: args.n], "RGB 32 px (synthetic)": smooth_rgb(args.n)}
    model = demo_model()
    with cached_frost_textures():
        lines = pixel_section(sets, table)
        accuracy, _ = accuracy_section(model, digits, labels, table, args.replicates)
        lines += accuracy + package_section(model, digits, labels, table, args.package_replicates)
    header = [
        "# Corruption fidelity: robench vs imagecorruptions 1.1.2",
        "",
        f"Produced by `python scripts/corruption_fidelity.py --n {args.n} --replicates {args.replicates} "
        f"--package-replicates {args.package_replicates}` on {datetime.date.today().isoformat()} (CPU, "
        f"{time.perf_counter() - started:.0f} s). The reference is the package's code with the released-data generator's "
        "formula where the two differ (see section 3 and the notes); parameters from the ImageNet-C table, which is what "
        "the package implements (pixelate up-sampled with NEAREST like the package; robench's own table uses BOX like "
        "make_imagenet_c.py). Pixel errors on the 0..255 scale.",
        "",
    ]
    text = "\n".join(header + lines + [NOTES.strip(), ""])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
