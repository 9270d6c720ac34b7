"""Datasets: manifests, verification, loaders by on-disk format.

``load_dataset`` resolves the manifest, verifies the files (checksums are cached), calls the
registered loader for the manifest's format and checks split size, shape and labels.
Released corruption sets (CIFAR-10-C, ImageNet-C...) are read cell by cell through
:func:`robench.data.released.load_corruption_set`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from robench._errors import ConfigError, DataError
from robench.data import formats as _formats  # noqa: F401  (registers the loaders)
from robench.data.base import ArrayDataset, Dataset, SubsetDataset
from robench.data.manifest import (
    Manifest,
    VerificationReport,
    frozen_files,
    load_manifest,
    manifest_path,
    verify_files,
    verify_report,
)
from robench.registry import registry
from robench.results import DatasetInfo
from robench.threat_model import DatasetSpec

__all__ = [
    "ArrayDataset",
    "Dataset",
    "Manifest",
    "SubsetDataset",
    "VerificationReport",
    "data_root",
    "freeze_dataset",
    "load_dataset",
    "load_manifest",
    "verify_dataset",
    "verify_files",
    "verify_report",
]


def data_root(manifest: Manifest, root: str | Path | None = None, data_home: str | Path | None = None) -> Path:
    """Where a dataset's files are.

    Order: ``root`` as given; a package's data folder (``options.package_data: pkg/sub/dir``);
    ``<data_home>/<manifest.directory>`` with ``data_home`` from the argument, ``$ROBENCH_DATA`` or
    ``~/.robench/data``.
    """
    if root is not None:
        return Path(root)
    package_data = manifest.options.get("package_data")
    if package_data:
        package, _, sub = str(package_data).partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"dataset {manifest.name!r} ships in the {package!r} package, which is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / sub
    home = Path(data_home or os.environ.get("ROBENCH_DATA") or Path.home() / ".robench" / "data")
    return home / (manifest.directory or manifest.name)


def verify_dataset(name: str | Path, root: str | Path | None = None, checksums: bool = True) -> VerificationReport:
    """Verify a dataset's files against its manifest.

    Returns:
        A per-file report; ``str(report)`` prints one line per file and a summary line.

    Raises:
        ConfigError: unknown manifest.
        DataError: missing or mismatching file (naming file, manifest and expectation).
    """
    manifest, _ = load_manifest(name)
    manifest_file = manifest_path(name)
    check_format(manifest, manifest_file)
    return verify_report(manifest, data_root(manifest, root), checksums, manifest_file=manifest_file)


def check_format(manifest: Manifest, manifest_file: str | Path) -> None:
    """Refuse a manifest whose ``format`` is no registered dataset loader (``robench data verify``
    passed ``format: npzz``, which only a run refused).

    Raises:
        ConfigError: unknown format, naming the manifest, with close matches.
    """
    try:
        registry.entry("dataset", manifest.format)
    except ConfigError as error:
        raise ConfigError(f"{manifest_file}: format: {error}") from None


def freeze_dataset(name: str | Path, out: str | Path, root: str | Path | None = None) -> VerificationReport:
    """Write a copy of a dataset's manifest that records the size and sha256 of every listed file of
    this copy of the data, so that verifying against it checks contents (:func:`verify_dataset`).

    The files must first pass the manifest's own checks (presence, sizes, shapes, dtypes, counts and
    any checksums it gives); patterns (image folders) get their count and a digest of their
    entries' names and sizes (``listing_sha256``; the images' contents are not hashed). The copy is
    written only when it verifies.

    Args:
        name: Manifest name (``cifar10``) or path.
        out: The YAML file to write.
        root: Folder holding the dataset's files (default as :func:`data_root`).

    Returns:
        The verification of the data against the written copy.

    Raises:
        ConfigError: unknown manifest.
        DataError: a file fails the manifest's checks (nothing is written).
    """
    import yaml

    from robench.results import atomic_write_text

    manifest, _ = load_manifest(name)
    manifest_file = manifest_path(name)
    check_format(manifest, manifest_file)
    location = data_root(manifest, root)
    _refuse_a_data_file(manifest, location, Path(out))
    verify_report(manifest, location, manifest_file=manifest_file)
    raw = yaml.safe_load(manifest_file.read_text())
    raw["files"] = frozen_files(manifest, location)
    report = verify_report(Manifest.model_validate(raw), location, manifest_file=out)
    atomic_write_text(Path(out), yaml.safe_dump(raw, sort_keys=False))
    return report


def _refuse_a_data_file(manifest: Manifest, location: Path, out: Path) -> None:
    """Raises :class:`ConfigError` when ``out`` is one of the files the manifest lists under
    ``location``, or a match of one of its patterns (``val/*/*``): writing the frozen manifest
    there replaced the data it records."""
    target, base = out.resolve(), location.resolve()
    relative = target.relative_to(base) if target.is_relative_to(base) else None
    for spec in manifest.files:
        pattern = Path(spec.path)
        if "*" in spec.path:
            listed = relative is not None and len(relative.parts) == len(pattern.parts) and relative.match(spec.path)
        else:
            listed = target == (location / pattern).resolve()
        if listed:
            raise ConfigError(f"--out {out} is {spec.path!r} of dataset {manifest.name!r}: writing the frozen manifest "
                              "there would replace the data it records; give another file")


def finish_dataset(dataset: Dataset, manifest: Manifest, split: str, spec: DatasetSpec, manifest_file: str | Path) -> Dataset:
    """Check a freshly loaded split against the manifest, then apply ``stride`` and ``n_examples``.

    Raises:
        DataError: wrong split size, shapes or label counts, or more examples asked than there are.
    """
    expected = manifest.split_spec(split)
    where = f"dataset {manifest.name!r} split {split!r} (manifest {manifest_file})"
    if len(dataset) != expected.n:
        raise DataError(f"{where}: found {len(dataset)} examples, manifest expects {expected.n}")
    resized = spec.resize is not None or spec.center_crop is not None
    if manifest.input_shape is not None and not resized and tuple(dataset.input_shape) != tuple(manifest.input_shape):
        raise DataError(f"{where}: images have shape {list(dataset.input_shape)}, manifest expects {list(manifest.input_shape)}")
    dataset.validate(manifest.name)
    if expected.label_counts is not None:
        import torch

        counts = torch.bincount(dataset.labels, minlength=manifest.num_classes).tolist()
        if tuple(counts) != tuple(expected.label_counts):
            raise DataError(f"{where}: label counts {counts} differ from the manifest's {list(expected.label_counts)}")
    if spec.stride > 1:
        dataset = SubsetDataset(dataset, range(0, len(dataset), spec.stride))
    if spec.n_examples is not None and spec.n_examples > len(dataset):
        stride = f" with stride {spec.stride}" if spec.stride > 1 else ""
        raise DataError(f"{where}: n_examples {spec.n_examples} exceeds the split size {len(dataset)}{stride}")
    return dataset.subset(spec.n_examples)


def read_split(manifest: Manifest, location: Path, split: str, spec: DatasetSpec, manifest_file: str | Path) -> Dataset:
    """Call the manifest format's loader on verified files and check the result (:func:`finish_dataset`).

    Raises:
        ConfigError: unknown format, or resize/crop asked of a format that does not resize.
        DataError: as the loader and :func:`finish_dataset`.
    """
    entry = registry.entry("dataset", manifest.format)
    if (spec.resize is not None or spec.center_crop is not None) and "resizable" not in entry.tags:
        resizable = ", ".join(registry.names("dataset", tag="resizable"))
        raise ConfigError(
            f"dataset {manifest.name!r} (format {manifest.format}) has a fixed image size: resize/center_crop "
            f"apply only to image-folder formats ({resizable})"
        )
    manifest.split_spec(split)  # unknown split -> DataError before any file is read
    dataset: Dataset = entry.obj(manifest, location, split, spec)
    return finish_dataset(dataset, manifest, split, spec, manifest_file)


def load_dataset(
    spec: DatasetSpec | str,
    *,
    root: str | Path | None = None,
    data_home: str | Path | None = None,
    checksums: bool = True,
) -> tuple[Dataset, DatasetInfo]:
    """Load the split a threat model declares, verified against its manifest.

    For a corruption set the split is a cell, ``"<corruption>/<severity>"``, and only that
    cell's files are verified.

    Returns:
        The dataset (every ``spec.stride``-th example, then the first ``spec.n_examples``) and its
        provenance for results.

    Raises:
        ConfigError: unknown manifest or format.
        DataError: missing/mismatching files, wrong split size, shapes or labels.
    """
    spec = DatasetSpec(manifest=spec) if isinstance(spec, str) else spec
    manifest, manifest_sha = load_manifest(spec.manifest)
    manifest_file = manifest_path(spec.manifest)
    manifest.split_spec(spec.split)
    location = data_root(manifest, root, data_home)
    paths = None
    if manifest.corruption_set is not None:
        from robench.data.released import cell_files

        paths = cell_files(manifest, *manifest.corruption_set.parse_cell(manifest.name, spec.split))
    report = verify_report(manifest, location, checksums, paths=paths, manifest_file=manifest_file)
    try:
        dataset = read_split(manifest, location, spec.split, spec, manifest_file)
    except DataError as exc:
        message = str(exc)
        if str(location) not in message and manifest.name not in message:  # say which data it is about
            raise DataError(f"{location} (manifest {manifest.name!r}, split {spec.split!r}): {message}") from None
        raise
    info = DatasetInfo(
        manifest=manifest.name,
        manifest_sha256=manifest_sha,
        format=manifest.format,
        root=str(location),
        split=spec.split,
        n_examples=len(dataset),
        num_classes=manifest.num_classes,
        input_shape=list(dataset.input_shape),
        verified=report.summary,
        files_sha256=_verified_sha256(manifest, report),
        source=manifest.source,
        selection=_selection(manifest, spec, len(dataset)),
    )
    return dataset, info


def _verified_sha256(manifest: Manifest, report: VerificationReport) -> dict[str, str]:
    """``{path: sha256}`` of the data files the manifest gives a sha256 for and that were checked
    against it (not official archives, not ``*`` patterns, nothing under ``checksums=False``)."""
    given = {spec.path: spec.sha256.lower() for spec in manifest.files if spec.sha256 is not None}
    return {e.path: given[e.path] for e in report.entries if "sha256" in e.checks and "archive" not in e.checks and e.path in given}


def _selection(manifest: Manifest, spec: DatasetSpec, n: int) -> str:
    """In words, which examples were taken: the manifest's description, then stride and first n."""
    split = manifest.splits.get(spec.split)
    of = f"split {spec.split!r}" + (f" ({split.n:,} examples)" if split is not None else "")
    of += f" at stride {spec.stride}" if spec.stride > 1 else ""
    subset = f"the first {n:,} of {of}" if spec.n_examples is not None else f"all of {of}"
    description = " ".join(manifest.description.split()).rstrip(".")
    return subset + (f"; {description}" if description else "")
