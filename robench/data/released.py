"""Released corruption sets (CIFAR-10-C, CIFAR-100-C, ImageNet-C, Tiny-ImageNet-C), one cell at a time.

A cell is one corruption at one severity. Each cell is verified against the manifest (only the
files it reads: the corruption's ``.npy`` stack and the labels, or the cell's class folders) and
streamed: ``.npy`` stacks are memory-mapped, image folders decoded per batch, so a sweep never
holds a whole set in memory.

:func:`load_matching_cell` gives a cell's rows for the examples a run evaluates (after the clean
dataset's ``stride`` and ``n_examples``), checked against the clean data's label set, image shape,
labels and, for image-folder trees, file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from robench._errors import ConfigError, DataError
from robench.data.base import Dataset, SubsetDataset
from robench.data.manifest import CorruptionSetSpec, Manifest, load_manifest, manifest_path, verify_report
from robench.threat_model import DatasetSpec

__all__ = ["available_corruptions", "cell_files", "load_corruption_set", "load_matching_cell"]


def _corruption_manifest(name: str | Path) -> tuple[Manifest, CorruptionSetSpec, Path]:
    manifest, _ = load_manifest(name)
    if manifest.corruption_set is None:
        raise DataError(
            f"dataset {manifest.name!r} (manifest {manifest_path(name)}) is not a released corruption set "
            "(no corruption_set section); use e.g. cifar10c or imagenetc"
        )
    return manifest, manifest.corruption_set, manifest_path(name)


def cell_files(manifest: Manifest, corruption: str, severity: int) -> list[str]:
    """The manifest entries one cell depends on: its ``.npy`` stack or folder patterns, and the labels."""
    corruption_set = manifest.corruption_set
    if corruption_set is None:
        return [spec.path for spec in manifest.files]
    cell = corruption_set.cell_path(corruption, severity)
    wanted = [spec.path for spec in manifest.files if spec.path == cell or spec.path.startswith(cell.rstrip("/") + "/")]
    if corruption_set.labels is not None:
        wanted += [spec.path for spec in manifest.files if spec.path == corruption_set.labels]
    return wanted


def load_corruption_set(
    manifest: str | Path,
    corruption: str,
    severity: int,
    *,
    root: str | Path | None = None,
    data_home: str | Path | None = None,
    n_examples: int | None = None,
    resize: int | Literal["none"] | None = None,
    center_crop: int | Literal["none"] | None = None,
) -> Dataset:
    """One (corruption, severity) cell of a released corruption set, verified and streamed.

    Args:
        manifest: Manifest name (``cifar10c``, ``cifar100c``, ``imagenetc``, ``tinyimagenetc``) or path.
        corruption: Corruption name, e.g. ``gaussian_noise``.
        severity: Severity level (1..5).
        root: Folder holding the set (default: ``<data_home>/<manifest directory>``).
        data_home: Data home (default ``$ROBENCH_DATA`` or ``~/.robench/data``).
        n_examples: Keep the first ``n_examples`` of the cell (image folders are class-interleaved,
            so a prefix is class-balanced).
        resize: Resize the shorter side (image-folder sets only; ``"none"``: not even the manifest's).
        center_crop: Center crop size (image-folder sets only; ``"none"``: not even the manifest's).

    Returns:
        A lazy dataset of the cell in [0,1], NCHW, with int64 labels.

    Raises:
        ConfigError: unknown manifest, or resize/crop for a ``.npy`` set.
        DataError: unknown corruption or severity; a missing or mismatching file (naming the file, the
            manifest and what was expected); a cell of the wrong size or label counts.
    """
    from robench.data import data_root, read_split

    manifest_obj, corruption_set, manifest_file = _corruption_manifest(manifest)
    corruption, severity = corruption_set.check(manifest_obj.name, corruption, int(severity))
    location = data_root(manifest_obj, root, data_home)
    verify_report(manifest_obj, location, paths=cell_files(manifest_obj, corruption, severity), manifest_file=manifest_file)
    spec = DatasetSpec(
        manifest=str(manifest), split=f"{corruption}/{severity}", n_examples=n_examples, resize=resize, center_crop=center_crop
    )
    return read_split(manifest_obj, location, spec.split, spec, manifest_file)


def released_provenance(manifest: str | Path, root: str | Path | None = None, data_home: str | Path | None = None) -> dict[str, str]:
    """What a run records of the released set it read: the manifest (name, file, sha256) and the
    folder; every cell's files were verified against that manifest before they were read."""
    from robench.data import data_root

    manifest_obj, sha256 = load_manifest(manifest)
    return {
        "manifest": manifest_obj.name,
        "manifest_file": str(manifest_path(manifest)),
        "manifest_sha256": sha256,
        "root": str(data_root(manifest_obj, root, data_home)),
        "verified": "each cell's files against the manifest (sizes, shapes, checksums) before reading it",
    }


def _origin(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The loaded split behind ``dataset`` (a view after ``stride`` and ``n_examples``) and the
    positions in it of ``dataset``'s examples, in order."""
    rows = list(range(len(dataset)))
    while isinstance(dataset, SubsetDataset):
        indices = dataset.indices
        rows = [indices[row] for row in rows]
        dataset = dataset.parent
    return dataset, rows


def _label(name: str | Path) -> str:
    try:
        return str(manifest_path(name))
    except ConfigError:  # a data set built in memory names no manifest file
        return str(name)


def load_matching_cell(
    manifest: str | Path,
    corruption: str,
    severity: int,
    clean: Dataset,
    *,
    clean_manifest: str | Path,
    root: str | Path | None = None,
    data_home: str | Path | None = None,
) -> Dataset:
    """The rows of one cell that hold the examples of ``clean``, in ``clean``'s order.

    ``clean`` is the evaluation data, a view of a loaded split (``stride``, ``n_examples``). Its
    examples are found in the cell by their position in that split or, when both are image-folder
    trees, by relative file name (``<class folder>/<file>``), then the labels are compared.

    Args:
        manifest: The released set's manifest name or path.
        corruption: Corruption name.
        severity: Severity level.
        clean: The examples the run evaluates.
        clean_manifest: The clean data's manifest (named in errors).
        root: Folder holding the set (default: ``<data_home>/<manifest directory>``).
        data_home: Data home (default ``$ROBENCH_DATA`` or ``~/.robench/data``).

    Returns:
        A lazy dataset of ``len(clean)`` cell examples.

    Raises:
        DataError: as :func:`load_corruption_set`; another number of classes or image shape than
            ``clean``'s; a clean example the cell lacks; labels that differ. Each names both manifests.
    """
    from robench.data.formats.folders import ImageFolderDataset

    released, _, released_file = _corruption_manifest(manifest)
    cell_name = f"released cell {corruption}/{severity} (manifest {released_file})"
    data_name = f"the evaluation data (manifest {_label(clean_manifest)})"
    if released.num_classes != clean.num_classes:
        raise DataError(
            f"released set {released.name!r} (manifest {released_file}) has {released.num_classes} classes, "
            f"{data_name} has {clean.num_classes}: a released set must share the data's label set"
        )
    cell, _ = _origin(load_corruption_set(manifest, corruption, severity, root=root, data_home=data_home))
    if tuple(cell.input_shape) != tuple(clean.input_shape):
        raise DataError(f"{cell_name}: images have shape {list(cell.input_shape)}, {data_name} has {list(clean.input_shape)}")
    source, rows = _origin(clean)
    if isinstance(source, ImageFolderDataset) and isinstance(cell, ImageFolderDataset):
        position = {f"{path.parent.name}/{path.name}": row for row, path in enumerate(cell.files)}
        names = [f"{path.parent.name}/{path.name}" for path in source.files]
        missing = [names[row] for row in rows if names[row] not in position]
        if missing:
            raise DataError(f"{cell_name} lacks {len(missing)} of the {len(rows)} images of {data_name}, e.g. {missing[0]}")
        picked = [position[names[row]] for row in rows]
    else:
        if rows and max(rows) >= len(cell):
            raise DataError(
                f"{cell_name} has {len(cell)} examples, {data_name} takes example {max(rows)} of its split"
            )
        picked = rows
    selected = SubsetDataset(cell, picked)
    differ = (selected.labels != clean.labels).nonzero().flatten().tolist()
    if differ:
        first = differ[0]
        raise DataError(
            f"{cell_name} does not hold the examples of {data_name}: {len(differ)} of {len(rows)} labels differ, "
            f"the first at example {first} ({int(clean.labels[first])} in the data, {int(selected.labels[first])} in the cell); "
            "the cell must come from the same split, in the same order"
        )
    return selected


def available_corruptions(
    manifest: str | Path, root: str | Path | None = None, *, data_home: str | Path | None = None
) -> list[str]:
    """Corruptions of the set whose files are present under the root, in the manifest's order.

    A corruption counts as present when its cell for every severity exists (the ``.npy`` stack, or
    each ``<corruption>/<severity>`` folder); nothing is hashed.

    Raises:
        ConfigError: unknown manifest.
        DataError: the manifest is not a corruption set.
    """
    from robench.data import data_root

    manifest_obj, corruption_set, _ = _corruption_manifest(manifest)
    location = data_root(manifest_obj, root, data_home)
    if corruption_set.labels is not None and not (location / corruption_set.labels).is_file():
        return []
    return [
        name
        for name in corruption_set.corruptions
        if all((location / corruption_set.cell_path(name, severity)).exists() for severity in corruption_set.severities)
    ]
