"""Dataset manifests: what a dataset's files are and how to check them.

A manifest (``data_manifests/<name>.yaml``) names the on-disk format (a registered ``dataset``
loader), the files with their checksums and sizes, the official archives' checksums, the input
shape, the number of classes and, per split, the number of examples and label counts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from robench._errors import ConfigError, DataError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileSpec(_Frozen):
    """A file of the dataset, relative to its root. ``*`` in ``path`` matches one folder level."""

    path: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)
    shape: tuple[int, ...] | None = Field(default=None, description="array shape, for .npy files")
    dtype: str | None = None


class ArchiveSpec(_Frozen):
    """An official archive the files come from (verified when present under the root)."""

    name: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)
    source: str = ""


class SplitSpec(_Frozen):
    """A split: its size and, when known, the number of examples per class."""

    n: int = Field(gt=0)
    label_counts: tuple[int, ...] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="format-specific selection")


class Manifest(_Frozen):
    """A dataset manifest (see the module docstring)."""

    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    source: str = Field(default="", description="where the data comes from (citation, archive)")
    format: str = Field(description="registered dataset loader")
    directory: str | None = Field(default=None, description="default folder name under the data home")
    num_classes: int = Field(gt=1)
    input_shape: tuple[int, int, int] | None = Field(default=None, description="C, H, W after loading")
    files: tuple[FileSpec, ...] = ()
    archives: tuple[ArchiveSpec, ...] = ()
    splits: dict[str, SplitSpec]
    options: dict[str, Any] = Field(default_factory=dict, description="format-specific settings")


def manifest_dir() -> Path:
    """Folder of the manifests shipped with robench."""
    return Path(__file__).resolve().parent.parent / "data_manifests"


def manifest_path(name_or_path: str | Path) -> Path:
    """Path of a manifest given by name (``cifar10``) or by path.

    Raises:
        ConfigError: no such manifest (with close names).
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"dataset manifest {path} does not exist")
        return path
    shipped = manifest_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    import difflib

    names = sorted(p.stem for p in manifest_dir().glob("*.yaml"))
    close = difflib.get_close_matches(str(name_or_path), names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown dataset manifest {str(name_or_path)!r}{hint} (known: {', '.join(names)})")


def load_manifest(name_or_path: str | Path) -> tuple[Manifest, str]:
    """Load a manifest; return it and the sha256 of its file.

    Raises:
        ConfigError: missing or invalid manifest, with the field path.
    """
    path = manifest_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
        manifest = Manifest.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    return manifest, hashlib.sha256(raw).hexdigest()


def _cache_path() -> Path:
    base = os.environ.get("ROBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "robench")
    return Path(base) / "checksums.json"


def file_digest(path: Path, algorithm: str) -> str:
    """Checksum of a file, cached by (path, size, mtime) so large sets are hashed once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{algorithm}"
    cache_file = _cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    value = digest.hexdigest()
    cache[key] = value
    try:
        from robench.results import atomic_write_text

        atomic_write_text(cache_file, json.dumps(cache))
    except OSError:
        pass  # a read-only cache only costs time
    return value


def _check_file(root: Path, spec: FileSpec, manifest_file: Path, checksums: bool) -> list[str]:
    path = root / spec.path
    if not path.is_file():
        expected = f" (expected md5 {spec.md5})" if spec.md5 else ""
        raise DataError(f"{path}: file missing; manifest {manifest_file} lists {spec.path}{expected}")
    done = ["exists"]
    if spec.size is not None:
        size = path.stat().st_size
        if size != spec.size:
            raise DataError(
                f"{path}: size {size} bytes, but manifest {manifest_file} expects {spec.size} (truncated or wrong file?)"
            )
        done.append("size")
    if spec.shape is not None and path.suffix == ".npy":
        import numpy as np

        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc}); manifest {manifest_file}") from None
        if tuple(array.shape) != tuple(spec.shape) or (spec.dtype and str(array.dtype) != spec.dtype):
            raise DataError(
                f"{path}: array {array.dtype}{list(array.shape)}, but manifest {manifest_file} expects "
                f"{spec.dtype or array.dtype}{list(spec.shape)}"
            )
        done.append("shape")
    if checksums:
        for algorithm in ("sha256", "md5"):
            expected = getattr(spec, algorithm)
            if expected is None:
                continue
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                raise DataError(
                    f"{path}: {algorithm} {actual} does not match manifest {manifest_file}, which expects {expected}"
                )
            done.append(algorithm)
    return done


def verify_files(manifest: Manifest, root: Path, checksums: bool = True) -> str:
    """Check every file (and any official archive present) under ``root`` against the manifest.

    Returns:
        A one-line summary of what was verified.

    Raises:
        DataError: a file is missing or does not match, naming the file, the manifest and what was expected.
    """
    manifest_file = manifest_path(manifest.name)
    if not root.is_dir():
        raise DataError(f"data root {root} for dataset {manifest.name!r} is not a folder (manifest {manifest_file})")
    counted: dict[str, int] = {}
    for spec in manifest.files:
        for check in _check_file(root, spec, manifest_file, checksums):
            counted[check] = counted.get(check, 0) + 1
    archives = 0
    for archive in manifest.archives:
        path = root / archive.name
        if path.is_file() and checksums:
            _check_file(root, FileSpec(path=archive.name, md5=archive.md5, sha256=archive.sha256, size=archive.size), manifest_file, True)
            archives += 1
    parts = [f"{len(manifest.files)} files"] + [f"{k} {v}" for k, v in counted.items() if k != "exists"]
    if archives:
        parts.append(f"{archives} archives")
    return ", ".join(parts)
