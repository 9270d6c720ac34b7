"""Severity tables of the common corruptions (Hendrycks & Dietterich, ICLR 2019).

Three tables, transcribed from the code that generated the released data sets:

- ``cifar10``: ``ImageNet-C/create_c/make_cifar_c.py`` (CIFAR-10-C, 32 px images);
- ``tinyimagenet``: ``ImageNet-C/create_c/make_tinyimagenet_c.py`` (Tiny-ImageNet-C, 64 px images);
- ``imagenet``: ``ImageNet-C/create_c/make_imagenet_c.py`` (ImageNet-C, 224 px images),

all in the repository hendrycks/robustness. ``severity`` s (1..5) selects entry ``s - 1`` of
each row. The values are in the units of the original code: pixel intensities in [0, 1] and
lengths in pixels of the original image size (:attr:`CorruptionTable.base_size`). Lengths are
not rescaled for other image sizes (as in the imagecorruptions package), except for
``elastic_transform``, whose constants the original writes as multiples of the image size, and
the frost texture scale (``frost_scale * side / base_size``, so a 28 px digit sees about the same
share of the texture as a 32 px CIFAR image).

``table: auto`` picks ``cifar10`` up to 32 px a side (CIFAR, MNIST), ``tinyimagenet`` up to 64 px
(so a generated sweep of Tiny-ImageNet uses the parameters of the released Tiny-ImageNet-C) and
``imagenet`` above, where the ImageNet-C blur radii and fractal sizes make sense.

The imagecorruptions package (bethgelab/imagecorruptions, ``imagecorruptions/corruptions.py``)
uses the ImageNet-C values for every image size; where it departs from ``make_imagenet_c.py``
(elastic_transform, pixelate's up-sampling filter) the table follows ``make_imagenet_c.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robench._errors import ConfigError

TABLE_NAMES: tuple[str, ...] = ("cifar10", "tinyimagenet", "imagenet")
AUTO_SIZES: tuple[tuple[int, str], ...] = ((32, "cifar10"), (64, "tinyimagenet"))
"""``table: auto`` picks the first table whose size bound (pixels a side) the image meets, else ``imagenet``."""


@dataclass(frozen=True)
class CorruptionTable:
    """Severity parameters of every corruption for one data set.

    Attributes:
        name: ``cifar10``, ``tinyimagenet`` or ``imagenet``.
        base_size: Side of the images the parameters were made for (32, 64 or 224).
        rows: ``corruption -> (params at severity 1, ..., params at severity 5)``.
        frost_scale: Factor the frost textures are resized by before cropping.
    """

    name: str
    base_size: int
    rows: dict[str, tuple[Any, ...]] = field(repr=False)
    frost_scale: float = 1.0

    def __call__(self, corruption: str, severity: int) -> Any:
        """Parameters of ``corruption`` at ``severity`` (1..5).

        Raises:
            ConfigError: unknown corruption or severity outside 1..5.
        """
        if corruption not in self.rows:
            raise ConfigError(f"the {self.name} table has no corruption {corruption!r}; known: {sorted(self.rows)}")
        if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
            raise ConfigError(f"Expected `severity` to be an integer in 1..5, but got {severity!r}")
        return self.rows[corruption][severity - 1]


# make_cifar_c.py (hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py).
_CIFAR_IMSIZE = 32
CIFAR10_TABLE = CorruptionTable(
    name="cifar10",
    base_size=32,
    frost_scale=0.2,  # cv2.resize(frost, fx=0.2, fy=0.2) before the random crop
    rows={
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # sigma
        "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # s&p amount
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # sigma of the multiplicative noise
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma
        # (sigma, max_delta, iterations)
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        # (radius, alias_blur)
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        # (radius, sigma); angle ~ U(-45, 45)
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        # zoom factors np.arange(1, stop, step) as (stop, step)
        "zoom_blur": ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
        # (mean, std, zoom, threshold, blur radius, blur sigma, image weight); angle ~ U(-135, -45)
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        # (image weight, frost weight)
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        # (amount, wibble decay of the plasma fractal)
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor around the per-channel mean
        # (alpha, sigma, affine) in pixels: IMSIZE * (0, 0, .08) ...
        "elastic_transform": tuple(
            (_CIFAR_IMSIZE * a, _CIFAR_IMSIZE * s, _CIFAR_IMSIZE * f)
            for a, s, f in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
        ),
        # (fraction of the side after BOX down-sampling, up-sampling filter)
        "pixelate": ((0.95, "box"), (0.9, "box"), (0.85, "box"), (0.75, "box"), (0.65, "box")),
        "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
        # (mean, std, sigma, threshold, intensity, mud?) -- mud (1) or water (0)
        "spatter": (
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        # (saturation factor, saturation offset)
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    },
)

# make_tinyimagenet_c.py (hendrycks/robustness, ImageNet-C/create_c/make_tinyimagenet_c.py): the
# generator of the released Tiny-ImageNet-C (64 px; same functions as make_cifar_c.py).
_TINY_IMSIZE = 64
TINYIMAGENET_TABLE = CorruptionTable(
    name="tinyimagenet",
    base_size=64,
    frost_scale=0.3,  # cv2.resize(frost, fx=0.3, fy=0.3) before the random 64 px crop
    rows={
        "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
        "shot_noise": (250, 100, 50, 30, 15),
        "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
        "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
        "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
        "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
        "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
        "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        "zoom_blur": ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
        ),
        "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
        "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": tuple(
            (_TINY_IMSIZE * a, _TINY_IMSIZE * s, _TINY_IMSIZE * f)
            for a, s, f in ((0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02))
        ),
        "pixelate": ((0.9, "box"), (0.8, "box"), (0.7, "box"), (0.6, "box"), (0.5, "box")),
        "jpeg_compression": (65, 58, 50, 40, 25),
        "spatter": (
            (0.62, 0.1, 0.7, 0.7, 0.6, 0),
            (0.65, 0.1, 0.8, 0.7, 0.6, 0),
            (0.65, 0.3, 1, 0.69, 0.6, 0),
            (0.65, 0.1, 0.7, 0.68, 0.6, 1),
            (0.65, 0.1, 0.5, 0.67, 0.6, 1),
        ),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    },
)

# make_imagenet_c.py (hendrycks/robustness, ImageNet-C/create_c/make_imagenet_c.py).
# Its elastic constants use 244 where 224 was meant ("ultimately nothing is incorrect").
_IMAGENET_ELASTIC = 244
IMAGENET_TABLE = CorruptionTable(
    name="imagenet",
    base_size=224,
    frost_scale=1.0,
    rows={
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        # np.arange(1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)
        "zoom_blur": ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),
        "snow": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": tuple(
            (_IMAGENET_ELASTIC * a, _IMAGENET_ELASTIC * s, _IMAGENET_ELASTIC * f)
            for a, s, f in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
        ),
        "pixelate": ((0.6, "box"), (0.5, "box"), (0.4, "box"), (0.3, "box"), (0.25, "box")),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "spatter": (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    },
)

TABLES: dict[str, CorruptionTable] = {"cifar10": CIFAR10_TABLE, "tinyimagenet": TINYIMAGENET_TABLE, "imagenet": IMAGENET_TABLE}

# AlexNet top-1 error per ImageNet-C corruption, averaged over the five severities; the mCE
# denominators. Values as in ../shared/REFERENCE.md, the same as AugMix's ALEXNET_ERR ("raw AlexNet
# errors taken from hendrycks/robustness"); ImageNet-C/test.py itself prints unnormalised errors.
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERROR = 0.4345
"""AlexNet clean top-1 error used for relative mCE (a third-party constant, see REFERENCE.md)."""


def resolve_table(table: str | CorruptionTable, image_size: int) -> CorruptionTable:
    """The table named by a threat model (``auto``: ``cifar10`` up to 32 px, ``tinyimagenet`` up to
    64 px, else ``imagenet``).

    Raises:
        ConfigError: unknown table name.
    """
    if isinstance(table, CorruptionTable):
        return table
    if table == "auto":
        return next((TABLES[name] for bound, name in AUTO_SIZES if image_size <= bound), IMAGENET_TABLE)
    if table not in TABLES:
        raise ConfigError(f"Expected a corruption table among {['auto', *TABLE_NAMES]}, but got {table!r}")
    return TABLES[table]
