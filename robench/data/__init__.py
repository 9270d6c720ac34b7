"""Datasets: manifests, verification, loaders by on-disk format.

``load_dataset`` resolves the manifest, verifies the files (checksums are cached), calls the
registered loader for the manifest's format and checks split size, shape and labels.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from robench._errors import DataError
from robench.data import formats as _formats  # noqa: F401  (registers the loaders)
from robench.data.base import ArrayDataset, Dataset, SubsetDataset
from robench.data.manifest import Manifest, load_manifest, manifest_path, verify_files
from robench.registry import registry
from robench.results import DatasetInfo
from robench.threat_model import DatasetSpec

__all__ = [
    "ArrayDataset",
    "Dataset",
    "Manifest",
    "SubsetDataset",
    "data_root",
    "load_dataset",
    "load_manifest",
    "verify_dataset",
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
        return Path(list(spec.submodule_search_locations)[0]) / sub
    home = Path(data_home or os.environ.get("ROBENCH_DATA") or Path.home() / ".robench" / "data")
    return home / (manifest.directory or manifest.name)


def verify_dataset(name: str | Path, root: str | Path | None = None, checksums: bool = True) -> str:
    """Verify a dataset's files against its manifest; return what was checked.

    Raises:
        ConfigError: unknown manifest.
        DataError: missing or mismatching file (naming file, manifest and expectation).
    """
    manifest, _ = load_manifest(name)
    return verify_files(manifest, data_root(manifest, root), checksums)


def load_dataset(
    spec: DatasetSpec | str,
    *,
    root: str | Path | None = None,
    data_home: str | Path | None = None,
    checksums: bool = True,
) -> tuple[Dataset, DatasetInfo]:
    """Load the split a threat model declares, verified against its manifest.

    Returns:
        The dataset (first ``spec.n_examples`` examples) and its provenance for results.

    Raises:
        ConfigError: unknown manifest or format.
        DataError: missing/mismatching files, wrong split size, shapes or labels.
    """
    spec = DatasetSpec(manifest=spec) if isinstance(spec, str) else spec
    manifest, manifest_sha = load_manifest(spec.manifest)
    location = data_root(manifest, root, data_home)
    verified = verify_files(manifest, location, checksums)
    loader = registry.get("dataset", manifest.format)
    dataset: Dataset = loader(manifest, location, spec.split, spec)
    split = manifest.splits[spec.split]
    where = f"dataset {manifest.name!r} split {spec.split!r} (manifest {manifest_path(spec.manifest)})"
    if len(dataset) != split.n:
        raise DataError(f"{where}: found {len(dataset)} examples, manifest expects {split.n}")
    if manifest.input_shape is not None and tuple(dataset.input_shape) != tuple(manifest.input_shape):
        raise DataError(f"{where}: images have shape {list(dataset.input_shape)}, manifest expects {list(manifest.input_shape)}")
    dataset.validate(manifest.name)
    if split.label_counts is not None:
        import torch

        counts = torch.bincount(dataset.labels, minlength=manifest.num_classes).tolist()
        if tuple(counts) != tuple(split.label_counts):
            raise DataError(f"{where}: label counts {counts} differ from the manifest's {list(split.label_counts)}")
    if spec.n_examples is not None and spec.n_examples > len(dataset):
        raise DataError(f"{where}: n_examples {spec.n_examples} exceeds the split size {len(dataset)}")
    dataset = dataset.subset(spec.n_examples)
    info = DatasetInfo(
        manifest=manifest.name,
        manifest_sha256=manifest_sha,
        format=manifest.format,
        root=str(location),
        split=spec.split,
        n_examples=len(dataset),
        num_classes=manifest.num_classes,
        input_shape=list(dataset.input_shape),
        verified=verified,
    )
    return dataset, info
