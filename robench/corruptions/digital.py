"""Digital corruptions: brightness, contrast, saturate, elastic transform, pixelate, JPEG.

Formulas of make_cifar_c.py / make_imagenet_c.py (hendrycks/robustness). Gray batches follow
the imagecorruptions package: brightness adds to the intensity, saturate leaves them unchanged
(a gray pixel has no saturation), JPEG compresses a one-channel image.
"""

from __future__ import annotations

import torch

from robench.corruptions import _ops
from robench.corruptions._base import corruption
from robench.corruptions.params import CorruptionTable


@corruption("brightness", "weather")
def brightness(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Add ``c`` to the HSV value channel (to the intensity of gray images)."""
    shift = table("brightness", severity)
    if x.shape[1] == 1:
        return x + shift
    hsv = _ops.rgb_to_hsv(x)
    hsv = torch.cat((hsv[:, :2], (hsv[:, 2:] + shift).clamp(0, 1)), dim=1)
    return _ops.hsv_to_rgb(hsv)


@corruption("contrast", "digital")
def contrast(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Shrink every channel towards its image mean: ``(x - mean) * c + mean``."""
    factor = table("contrast", severity)
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


@corruption("saturate", "digital", extra=True)
def saturate(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation ``clip(s * a + b)``; gray images come back unchanged, as in the reference."""
    factor, offset = table("saturate", severity)
    rgb, gray = _ops.as_rgb(x)
    hsv = _ops.rgb_to_hsv(rgb)
    hsv = torch.stack((hsv[:, 0], (hsv[:, 1] * factor + offset).clamp(0, 1), hsv[:, 2]), dim=1)
    out = _ops.hsv_to_rgb(hsv)
    return out[:, :1] if gray else out


@corruption("elastic_transform", "digital")
def elastic_transform(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Random affine warp, then a smooth random displacement field (make_imagenet_c.py's version).

    The affine step moves three points at +-side/3 around the centre by ``U(-c2, c2)`` each and
    warps with bilinear interpolation (OpenCV's reflect-101 border); then every pixel moves by
    ``c0 * gaussian_filter(U(-1, 1), c1)`` along each axis (truncate 3, bilinear, symmetric border).
    The constants are lengths relative to the table's image size and are rescaled to the batch.
    """
    n, _, height, width = x.shape
    scale = min(height, width) / table.base_size
    alpha, sigma, affine = (float(v) * scale for v in table("elastic_transform", severity))
    device = x.device
    # Affine: pts1 as the reference writes them, (x, y) points built from (H, W).
    center = torch.tensor([height // 2, width // 2], dtype=torch.float64)
    square = min(height, width) // 3
    pts1 = torch.stack((center + square, torch.stack((center[0] + square, center[1] - square)), center - square))
    pts2 = pts1 + _ops.uniform((n, 3, 2), -affine, affine, generator, torch.device("cpu")).to(torch.float64)
    ones = torch.ones(3, 1, dtype=torch.float64)
    src = torch.cat((pts1, ones), dim=1)  # (3, 3)
    # dst point = M @ [src, 1]; the warp samples the source at M^-1 @ [dst, 1].
    matrix = torch.linalg.solve(src.expand(n, 3, 3), pts2).transpose(1, 2)  # (n, 2, 3)
    full = torch.cat((matrix, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 1, 3)), dim=1)
    inverse = torch.linalg.inv(full)[:, :2].to(device)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device), torch.arange(width, dtype=torch.float64, device=device), indexing="ij"
    )
    src_x = inverse[:, 0, 0, None, None] * xs + inverse[:, 0, 1, None, None] * ys + inverse[:, 0, 2, None, None]
    src_y = inverse[:, 1, 0, None, None] * xs + inverse[:, 1, 1, None, None] * ys + inverse[:, 1, 2, None, None]
    warped = _ops.bilinear_sample(x, src_y, src_x, "reflect101")
    # Elastic displacement (one field per image, shared by the channels).
    noise = _ops.uniform((n, 2, height, width), -1.0, 1.0, generator, device).to(x.dtype)
    field = _ops.gaussian_filter(noise, sigma, mode="symmetric", truncate=3.0) * alpha
    return _ops.bilinear_sample(warped, ys + field[:, 1].double(), xs + field[:, 0].double(), "symmetric")


@corruption("pixelate", "digital")
def pixelate(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """PIL BOX down-sampling to ``int(side * c)``, then back up (BOX in make_*_c.py, NEAREST in imagecorruptions)."""
    fraction, up_filter = table("pixelate", severity)
    height, width = x.shape[-2:]
    small_h, small_w = max(1, int(height * fraction)), max(1, int(width * fraction))
    down = _ops.apply_axes(x, _ops.pil_resample_matrix(height, small_h, "box"), _ops.pil_resample_matrix(width, small_w, "box"))
    return _ops.apply_axes(down, _ops.pil_resample_matrix(small_h, height, up_filter), _ops.pil_resample_matrix(small_w, width, up_filter))


@corruption("jpeg_compression", "digital")
def jpeg_compression(x: torch.Tensor, severity: int, table: CorruptionTable, generator: torch.Generator) -> torch.Tensor:
    """Encode and decode as baseline JPEG at quality ``q`` (:func:`robench.corruptions._ops.libjpeg_roundtrip`)."""
    quality = int(table("jpeg_compression", severity))
    images = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return _ops.libjpeg_roundtrip(images, quality).to(x.device).to(x.dtype) / 255.0
