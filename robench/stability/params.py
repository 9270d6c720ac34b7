"""Published parameters of the ImageNet-P and CIFAR-10-P perturbation sequences.

Source: ``hendrycks/robustness``, ``ImageNet-P/create_p/make_cifar_p.py`` and ``make_imagenet_p.py``
(Hendrycks & Dietterich, ICLR 2019); restated in ``shared/REFERENCE.md``. Frame ``i`` runs over
``0..frames-1``. Noise perturbations have three strengths (released as ``<name>``, ``<name>_2``,
``<name>_3``), chosen by the difficulty 1, 2, 3.

The official CIFAR-10-P example evaluation (``cifar-p-eval.py``) lists ``spatter`` among the test
perturbations and ``snow`` among the validation ones; the paper and ImageNet-P ``test.py`` do the
opposite. robench follows the paper (``robench.threat_model.TEST_PERTURBATIONS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from robench._errors import ConfigError

Table = Literal["cifar10", "imagenet"]
NOISE_LEVELS = 3


@dataclass(frozen=True)
class SequenceParams:
    """Parameters of one perturbation for one table.

    Attributes:
        frames: Sequence length ``T``.
        noise: Frames are independent draws compared with the clean frame 0.
        values: Perturbation-specific constants (see :mod:`robench.stability.sequences`).
    """

    frames: int
    noise: bool = False
    values: dict[str, Any] = field(default_factory=dict)


_CIFAR: dict[str, SequenceParams] = {
    "gaussian_noise": SequenceParams(31, True, {"sigma": (0.02, 0.04, 0.06)}),
    "shot_noise": SequenceParams(31, True, {"lam": (700.0, 400.0, 200.0)}),
    "speckle_noise": SequenceParams(31, True, {"scale": (0.05, 0.07, 0.10)}),
    "motion_blur": SequenceParams(21, False, {"radius": 6, "sigma": 1.8, "angle0": -20 * 9, "angle_step": 9}),
    "zoom_blur": SequenceParams(31, False, {"zoom_step": 0.004}),
    "snow": SequenceParams(31, False, {"zoom": 2, "radius": 10, "sigma": 2.0, "angle0": -150, "angle_step": 4}),
    "brightness": SequenceParams(31, False, {"step": 0.015}),
    "translate": SequenceParams(16, False, {"shift0": -7}),
    "rotate": SequenceParams(31, False, {"angle0": -15.0, "angle_step": 1.0}),
    "tilt": SequenceParams(31, False, {"angle0": -15 * 0.75, "angle_step": 0.75}),
    "scale": SequenceParams(31, False, {"scale0": 0.70, "scale_step": 0.02}),
    "gaussian_blur": SequenceParams(31, False, {"sigma0": 0.3, "sigma_step": 0.015, "truncate": 7.0}),
    "spatter": SequenceParams(
        31, False, {"loc": 0.6, "scale": 0.265, "sigma": 1.75, "threshold": 0.7, "drift": (0.2, 0.8)}
    ),
    "shear": SequenceParams(31, False, {"angle0": -15.0, "angle_step": 1.0}),
}

_IMAGENET: dict[str, SequenceParams] = {
    "gaussian_noise": SequenceParams(31, True, {"sigma": (0.03, 0.05, 0.08)}),
    "shot_noise": SequenceParams(31, True, {"lam": (300.0, 120.0, 60.0)}),
    "speckle_noise": SequenceParams(31, True, {"scale": (0.05, 0.10, 0.15)}),
    "motion_blur": SequenceParams(31, False, {"radius": 10, "sigma": 3.0, "angle0": -30 * 4, "angle_step": 4}),
    "zoom_blur": SequenceParams(31, False, {"zoom_step": 0.004}),
    "snow": SequenceParams(31, False, {"zoom": 3, "radius": 14, "sigma": 4.0, "angle0": -150, "angle_step": 4}),
    "brightness": SequenceParams(31, False, {"step": 0.02}),
    "translate": SequenceParams(41, False, {"shift0": -20}),
    "rotate": SequenceParams(31, False, {"angle0": -15.0, "angle_step": 1.0}),
    "tilt": SequenceParams(31, False, {"angle0": -15.0, "angle_step": 1.0}),
    "scale": SequenceParams(31, False, {"scale0": 0.40, "scale_step": 0.025}),
    "gaussian_blur": SequenceParams(31, False, {"sigma0": 0.25, "sigma_step": 0.035, "truncate": 6.0}),
    "spatter": SequenceParams(
        31, False, {"loc": 0.65, "scale": 0.27, "sigma": 3.7, "threshold": 0.69, "drift": (0.05, 0.1, 0.15, 0.7)}
    ),
    "shear": SequenceParams(31, False, {"angle0": -15.0, "angle_step": 1.0}),
}

TABLES: dict[str, dict[str, SequenceParams]] = {"cifar10": _CIFAR, "imagenet": _IMAGENET}


def resolve_table(table: str, image_size: int) -> Table:
    """``cifar10`` or ``imagenet``; ``auto`` picks by image size (<= 64 px: CIFAR-10-P parameters)."""
    if table == "auto":
        return "cifar10" if image_size <= 64 else "imagenet"
    if table not in TABLES:
        raise ConfigError(f"Expected `table` to be one of auto, cifar10, imagenet, but got {table!r}.")
    return table  # type: ignore[return-value]


def sequence_params(name: str, table: str) -> SequenceParams:
    """Parameters of perturbation ``name`` in ``table``.

    Raises:
        ConfigError: unknown perturbation or table.
    """
    if table not in TABLES:
        raise ConfigError(f"Expected `table` to be cifar10 or imagenet, but got {table!r}.")
    if name not in TABLES[table]:
        raise ConfigError(f"unknown perturbation {name!r} (known: {', '.join(sorted(TABLES[table]))})")
    return TABLES[table][name]


def noise_level(difficulty: int) -> int:
    """Noise strength index 1..3 for a difficulty (strengths above 3 do not exist: capped at 3)."""
    return max(1, min(int(difficulty), NOISE_LEVELS))


def first_frame(name: str, table: str) -> str | None:
    """What frame 0 of perturbation ``name`` is, in words, when it is not the clean image; ``None``
    when it is (noise sequences and zoom blur start from the clean frame).

    A sequential perturbation's flips compare consecutive frames, so with a perturbed frame 0 no
    comparison involves the clean image: frame 0 of translate is already shifted by ``shift0`` px.

    Raises:
        ConfigError: unknown perturbation or table.
    """
    params = sequence_params(name, table)
    v = params.values
    if params.noise or name == "zoom_blur":
        return None
    described = {
        "motion_blur": lambda: f"motion-blurred at {v['angle0']:g}°, radius {v['radius']}",
        "snow": lambda: "under its snow layer",
        "brightness": lambda: f"brightness shifted by {-((params.frames - 1) // 2) * v['step']:+g}",
        "translate": lambda: f"shifted by {v['shift0']:+d} px",
        "rotate": lambda: f"rotated by {v['angle0']:+g}°",
        "tilt": lambda: f"tilted by {v['angle0']:+g}°",
        "scale": lambda: f"scaled by {v['scale0']:g}",
        "gaussian_blur": lambda: f"blurred (sigma {v['sigma0']:g})",
        "spatter": lambda: "under its water drops",
        "shear": lambda: f"sheared by {v['angle0']:+g}°",
    }
    return described[name]()


def translation_range(table: str) -> tuple[int, int]:
    """The smallest and largest horizontal shift, in pixels, of the translate sequence of ``table``."""
    params = sequence_params("translate", table)
    return params.values["shift0"], params.values["shift0"] + params.frames - 1
