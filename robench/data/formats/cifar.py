"""CIFAR formats: the official python batches (CIFAR-10/100) and the CIFAR-10-C/100-C ``.npy`` stacks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from robench._errors import DataError
from robench.data.base import ArrayDataset, Dataset
from robench.data.formats._pickle import load_restricted_pickle
from robench.data.manifest import ARRAY_READ_ERRORS, Manifest, data_path, file_expectation
from robench.registry import register
from robench.threat_model import DatasetSpec

_SIDE = 32
_PIXELS = 3 * _SIDE * _SIDE


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of one official CIFAR python batch.

    A batch is a pickled dict with ``data``: uint8 (N, 3072), each row the red, green then blue
    32x32 planes in row-major order, and the labels under ``labels`` (CIFAR-10) or
    ``fine_labels``/``coarse_labels`` (CIFAR-100) as a list of ints.

    Raises:
        DataError: unreadable or unsafe pickle, missing keys, wrong shapes.
    """
    batch = load_restricted_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict (official CIFAR batch), got {type(batch).__name__}")
    missing = [key for key in ("data", label_key) if key not in batch]
    if missing:
        raise DataError(f"{path}: keys {missing} missing from the CIFAR batch; it has {sorted(map(str, batch))}")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        shape = list(data.shape) if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array (N, {_PIXELS}), got {getattr(data, 'dtype', '')}{shape}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {label_key!r} must hold {data.shape[0]} integer labels, got {labels.dtype}{list(labels.shape)}")
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


@register("dataset", "cifar_python")
def load_cifar_python(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """CIFAR-10/100 python batches (``cifar-10-batches-py/data_batch_1..5, test_batch``; ``cifar-100-python/train, test``).

    ``splits.<split>.options.files`` lists the batches in order; ``options.label_key`` picks the
    labels (``labels`` for CIFAR-10, ``fine_labels`` for CIFAR-100). Pickles are read with a
    restricted unpickler (only builtins and numpy arrays).
    """
    options = manifest.split_spec(split).options
    files = options.get("files")
    if not files:
        raise DataError(f"manifest {manifest.name!r}: split {split!r} needs options.files (the batch files)")
    label_key = str(manifest.options.get("label_key", "labels"))
    field = f"splits.{split}.options.files"
    parts = [read_cifar_batch(data_path(root, name, manifest, field, listed=True), label_key) for name in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return ArrayDataset(images, labels, manifest.num_classes)


class NpyStackDataset(Dataset):
    """Rows ``[start, stop)`` of a memory-mapped uint8 ``(N, H, W, C)`` stack; read per batch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, start: int, stop: int, num_classes: int) -> None:
        self._images = images
        self._start, self._stop = start, stop
        self._labels = torch.from_numpy(np.asarray(labels[start:stop], dtype=np.int64))
        self.num_classes = num_classes
        self.input_shape = (int(images.shape[3]), int(images.shape[1]), int(images.shape[2]))

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def load(self, indices: Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(indices, slice):
            first, last, step = indices.indices(len(self))
            rows = np.array(self._images[self._start + first : self._start + last : step])  # copy: reads the rows
        else:
            chosen = np.asarray(list(indices), dtype=np.int64)
            if chosen.size and (chosen.min() < 0 or chosen.max() >= len(self)):
                raise IndexError(f"indices out of range for a dataset of {len(self)} examples")
            rows = np.array(self._images[self._start + chosen]) if chosen.size else np.zeros((0, *self._images.shape[1:]), np.uint8)
        index = indices if isinstance(indices, slice) else torch.as_tensor(list(indices), dtype=torch.long)
        images = torch.from_numpy(rows).permute(0, 3, 1, 2).float().div_(255.0)
        return images.contiguous(), self._labels[index]


def open_npy(path: Path, manifest: Manifest) -> np.ndarray:
    """Memory-map a ``.npy`` file without pickles.

    Raises:
        DataError: missing or unreadable file.
    """
    if not path.is_file():
        raise DataError(f"{path}: file missing (dataset {manifest.name!r})")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ARRAY_READ_ERRORS as exc:
        listed = next((f for f in manifest.files if (path.as_posix()).endswith("/" + f.path)), None)
        expected = f" expects {file_expectation(listed)}" if listed is not None else ""
        raise DataError(f"{path}: not a readable .npy file ({exc}); dataset {manifest.name!r}{expected}") from None


@register("dataset", "cifar_c_npy")
def load_cifar_c_npy(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """CIFAR-10-C/100-C: ``<corruption>.npy`` uint8 (5 x n, 32, 32, 3), severities stacked, and ``labels.npy``.

    The split names a cell, ``"<corruption>/<severity>"``; rows ``[(severity-1) n, severity n)``
    of the stack are that severity in test-set order (Hendrycks & Dietterich 2019). Files are
    memory-mapped, so only the rows of each batch are read.
    """
    corruption_set = manifest.corruption_set
    if corruption_set is None or corruption_set.labels is None:
        raise DataError(f"manifest {manifest.name!r}: format cifar_c_npy needs corruption_set with cell and labels")
    corruption, severity = corruption_set.parse_cell(manifest.name, split)
    n = manifest.split_spec(split).n
    path = data_path(root, corruption_set.cell_path(corruption, severity), manifest, "corruption_set.cell", listed=True)
    images = open_npy(path, manifest)
    labels = open_npy(data_path(root, corruption_set.labels, manifest, "corruption_set.labels", listed=True), manifest)
    stacked = n * len(corruption_set.severities)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[0] != stacked or images.shape[3] not in (1, 3):
        raise DataError(f"{path}: expected uint8 ({stacked}, H, W, C), got {images.dtype}{list(images.shape)} (manifest {manifest.name!r})")
    if labels.shape != (stacked,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{root / corruption_set.labels}: expected ({stacked},) integer labels, got {labels.dtype}{list(labels.shape)}")
    start = corruption_set.severities.index(severity) * n
    return NpyStackDataset(images, labels, start, start + n, manifest.num_classes)
