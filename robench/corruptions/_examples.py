"""A small PNG grid of one image under every corruption and severity, for the report."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import torch
import torch.nn.functional as F

TILE = 64
"""Side of a tile in the grid (images are resized to it), keeping results.json small."""


def example_grid(
    image: torch.Tensor, corruptions: list[str], severities: list[int], corrupted: Mapping[tuple[str, int], torch.Tensor]
) -> dict[str, object]:
    """A base64 PNG grid of ``image`` (1, C, H, W) and its corrupted versions ``corrupted[(name, severity)]``.

    Rows are corruptions, the first column the clean image, then one column per severity. The
    sweep hands in the images it scored (example 0 of each cell), so the grid shows what was evaluated.

    Returns:
        ``{"png_base64", "rows", "columns", "tile"}``.
    """
    image = image[:1].float().cpu()
    tiles = []
    for name in corruptions:
        row = [image] + [corrupted[(name, severity)][:1].float().cpu() for severity in severities]
        tiles.append(torch.cat(row))
    grid = torch.stack(tiles)  # (rows, cols, C, H, W)
    rows, cols, channels, height, width = grid.shape
    flat = grid.reshape(rows * cols, channels, height, width)
    if channels == 1:
        flat = flat.expand(-1, 3, -1, -1)
    size = (TILE, max(1, round(TILE * width / height)))
    flat = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False) if (height, width) != size else flat
    flat = F.pad(flat, (1, 1, 1, 1), value=1.0)
    th, tw = flat.shape[-2:]
    canvas = flat.reshape(rows, cols, 3, th, tw).permute(2, 0, 3, 1, 4).reshape(3, rows * th, cols * tw)
    from torchvision.io import encode_png

    png = encode_png((canvas.clamp(0, 1) * 255).round().to(torch.uint8))
    return {
        "png_base64": base64.b64encode(bytes(png.numpy())).decode("ascii"),
        "rows": corruptions,
        "columns": ["clean", *[f"s{s}" for s in severities]],
        "tile": TILE,
    }
