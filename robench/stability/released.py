"""Released CIFAR-10-P style sequences: ``<perturbation>.npy`` arrays, verified by a manifest.

CIFAR-10-P (Hendrycks & Dietterich 2019) ships one file per perturbation, ``<name>.npy`` of uint8
``(10000, T, 32, 32, 3)``; the stronger noise sequences are ``<name>_2.npy`` and ``<name>_3.npy``.
The manifest (format ``cifar_p``) lists these files with their checksums; its ``num_classes`` and
``input_shape`` describe the frames. Files are read through a read-only memory map, so only the
requested sequences are paged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench._errors import ConfigError, DataError
from robench.data.base import Dataset
from robench.data.manifest import Manifest, load_manifest, manifest_path, verify_report
from robench.registry import register


def released_file(name: str, noise: bool, level: int) -> str:
    """File name of a perturbation's sequences (``gaussian_noise_2.npy`` for noise level 2)."""
    return f"{name}_{level}.npy" if noise and level > 1 else f"{name}.npy"


class ReleasedSequences(Dataset):
    """Sequences of one ``.npy`` file as a dataset whose examples are whole sequences.

    ``load`` returns frames ``(B, T, C, H, W)`` float in [0, 1] and placeholder labels (flip
    probabilities need none; all zeros).
    """

    def __init__(self, path: Path, num_classes: int, n: int | None = None) -> None:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # an empty file is an EOFError
            raise DataError(f"{path}: not a readable .npy file ({exc})") from None
        if array.dtype != np.uint8 or array.ndim != 5 or array.shape[-1] not in (1, 3) or array.shape[1] < 2:
            raise DataError(
                f"{path}: expected uint8 sequences (N, T, H, W, C) with T >= 2 and C in (1, 3), "
                f"got {array.dtype}{list(array.shape)}"
            )
        if n is not None and n > array.shape[0]:
            raise DataError(f"{path}: {n} sequences asked for, the file has {array.shape[0]}")
        self.path = path
        self._array = array
        self._n = array.shape[0] if n is None else n
        self.num_classes = num_classes
        self.frames = int(array.shape[1])
        self.input_shape = (int(array.shape[4]), int(array.shape[2]), int(array.shape[3]))

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> torch.Tensor:
        """Placeholder labels (zeros): released sequences carry none."""
        return torch.zeros(self._n, dtype=torch.long)

    def load(self, indices: Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(B, T, C, H, W)`` in [0, 1] and zero labels."""
        if isinstance(indices, slice):
            start, stop, step = indices.indices(self._n)
            chunk = np.asarray(self._array[start:stop:step])
        else:
            chunk = np.asarray(self._array[np.asarray(list(indices), dtype=np.int64)])
        frames = torch.from_numpy(np.array(chunk, copy=True)).permute(0, 1, 4, 2, 3).float().div_(255)
        return frames, torch.zeros(frames.shape[0], dtype=torch.long)


def open_released(
    manifest_name: str,
    root: Path | None,
    name: str,
    noise: bool,
    level: int,
    n: int | None,
    checksums: bool = True,
    *,
    data_home: str | Path | None = None,
) -> ReleasedSequences:
    """Verify one perturbation's file against the release's manifest and open its sequences.

    Only the file the perturbation reads is verified, so a partial release serves the
    perturbations it holds.

    Args:
        manifest_name: Manifest name or path (e.g. ``cifar10p``).
        root: Data folder (``None``: the manifest's folder under the data home).
        name: Perturbation.
        noise: Whether it is a noise perturbation (selects ``_<level>`` files).
        level: Noise strength 1..3.
        n: First ``n`` sequences (``None``: all).
        checksums: Verify checksums (cached) besides existence and sizes.
        data_home: Folder holding datasets by name (``None``: ``$ROBENCH_DATA``).

    Raises:
        ConfigError: unknown manifest.
        DataError: missing or mismatching files, a file the manifest does not list, bad arrays.
    """
    from robench.data import data_root

    manifest: Manifest = load_manifest(manifest_name)[0]
    location = data_root(manifest, root, data_home)
    file = released_file(name, noise, level)
    listed = {spec.path for spec in manifest.files}
    if file not in listed:
        raise DataError(
            f"manifest {manifest_path(manifest_name)} does not list {file}; it lists {', '.join(sorted(listed)) or 'no files'}"
        )
    verify_report(manifest, location, checksums, paths=[file], manifest_file=manifest_path(manifest_name))
    sequences = ReleasedSequences(location / file, manifest.num_classes, n)
    if manifest.input_shape is not None and tuple(manifest.input_shape) != sequences.input_shape:
        raise DataError(f"{location / file}: frames have shape {list(sequences.input_shape)}, manifest expects {list(manifest.input_shape)}")
    return sequences


@register("dataset", "cifar_p")
def load_cifar_p(manifest: Manifest, root: Path, split: str, spec: Any) -> Dataset:
    """CIFAR-10-P perturbation sequences: used by the stability section (``released_manifest``), not as a dataset."""
    raise ConfigError(
        f"dataset {manifest.name!r} holds perturbation sequences; declare it as "
        "evaluations.stability.released_manifest (with source: released), not as dataset.manifest"
    )
