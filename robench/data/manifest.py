"""Dataset manifests: what a dataset's files are and how to check them.

A manifest (``data_manifests/<name>.yaml``) names the on-disk format (a registered ``dataset``
loader), the files with their checksums and sizes, the official archives' checksums, the input
shape, the number of classes and, per split, the number of examples and label counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tokenize
import zipfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator

from robench import _yaml as strict_yaml
from robench._errors import ConfigError, DataError
from robench._schema import StrictScalars, error_message


class _Frozen(StrictScalars):
    """A manifest's models: frozen, no extra keys, strict scalars (``num_classes: true`` is not 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _inside_root(path: str) -> str:
    """A manifest path must stay inside the data root: relative, no ``..``, no drive or ``~``."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "~")) or ".." in parts or ":" in parts[0]:
        raise ValueError(f"path {path!r} must be relative to the data root and stay inside it (no '..', no absolute path)")
    return path


SafePath = Annotated[str, AfterValidator(_inside_root)]


def data_path(root: Path, relative: object, manifest: Manifest, field: str, listed: bool = False) -> Path:
    """``root / relative`` for a path a loader reads from a manifest option.

    Args:
        root: The dataset's folder.
        relative: The path as the manifest gives it.
        manifest: The manifest (named in errors; its ``files`` for ``listed``).
        field: Where the path comes from, for the error (``splits.test.options.files``).
        listed: The file must be one of ``manifest.files`` (a folder: the prefix of one of them),
            so that it was verified.

    Raises:
        DataError: an absolute path, one that leaves the root, or an unlisted file.
    """
    text = str(relative)
    try:
        _inside_root(text)
    except ValueError as exc:
        raise DataError(f"manifest {manifest.name!r}, {field}: {exc}") from None
    if listed and not any(f.path == text or f.path.startswith(text.rstrip("/") + "/") for f in manifest.files):
        raise DataError(
            f"manifest {manifest.name!r}, {field}: {text!r} is not among the manifest's files, so it would be read unverified"
        )
    return root / text


ARRAY_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, zipfile.BadZipFile, tokenize.TokenError, MemoryError)
"""What ``np.load`` and reading an array of a ``.npz`` raise on a damaged file: an empty file is an
EOFError, a broken zip a BadZipFile, a ``.npy`` header cut short inside its shape a TokenError
(numpy's Python-2 header filter lets it out), a header claiming terabytes a MemoryError; object
arrays need pickle, which is refused (ValueError)."""

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def is_hidden(name: str) -> bool:
    """Whether a folder entry is hidden (``.DS_Store``, macOS ``._x`` resource forks, ``.ipynb_checkpoints``)."""
    return name.startswith(".")


def is_image_file(name: str) -> bool:
    """Whether the image-folder loaders read a file of this name: an image suffix, not hidden."""
    return not is_hidden(name) and name.lower().endswith(IMAGE_SUFFIXES)


class FileSpec(_Frozen):
    """A file of the dataset, relative to its root.

    A ``path`` with ``*`` (one folder level per ``*``) is a pattern for a tree of files (image
    folders): it is checked by the number of entries it matches (``count``) and, in a frozen
    manifest (``robench data freeze``), by ``listing_sha256``, a digest of the matches' relative
    names and sizes (:func:`pattern_listing`): an image added, removed, renamed, or changed in
    size is found, an image rewritten at the same size is not (the images' contents are never
    hashed: ImageNet-C's millions would take hours). Only what the loaders read counts:
    sub-folders (classes) and image files (:func:`is_image_file`), never hidden entries.
    """

    path: SafePath
    md5: str | None = None
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)
    shape: tuple[int, ...] | None = Field(default=None, description="array shape, for .npy files")
    dtype: str | None = None
    count: int | None = Field(default=None, ge=1, description="entries a `*` pattern must match")
    listing_sha256: str | None = Field(default=None, description="digest of a `*` pattern's matches: names and sizes")

    @model_validator(mode="after")
    def _check(self) -> FileSpec:
        if not PurePosixPath(self.path.replace("\\", "/")).parts:  # "." or "./": verifying it read parts[0] of ()
            raise ValueError(f"path {self.path!r} is the data root itself; a listed file or pattern names something inside it")
        if "*" in self.path:
            if any(v is not None for v in (self.md5, self.sha256, self.size, self.shape, self.dtype)):
                raise ValueError(f"pattern {self.path!r} takes only `count` and `listing_sha256`, not checksums, size, shape or dtype")
        elif self.count is not None or self.listing_sha256 is not None:
            raise ValueError(f"`count` and `listing_sha256` apply to `*` patterns only, not to the file {self.path!r}")
        return self


class ArchiveSpec(_Frozen):
    """An official archive the files come from (verified when present under the root)."""

    name: SafePath
    md5: str | None = None
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)
    source: str = ""


# Sanity caps on declared sizes: a manifest declaring more is a typo or a hostile file, not data
# (LAION-5B, the largest image set released, holds 5.85e9 images; ImageNet-21k has 21,841 classes).
MAX_EXAMPLES = 10**12
MAX_CLASSES = 10**7
MAX_INPUT_SIDE = 2**16


class SplitSpec(_Frozen):
    """A split: its size and, when known, the number of examples per class."""

    n: int = Field(gt=0, le=MAX_EXAMPLES)
    label_counts: tuple[int, ...] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="format-specific selection")


class CorruptionSetSpec(_Frozen):
    """A released corruption set: one cell of ``split``'s size per corruption and severity.

    ``cell`` locates a cell relative to the root, with ``{corruption}`` and ``{severity}``
    placeholders: the ``.npy`` stack of a corruption (all severities) or a cell's class folder.
    """

    corruptions: tuple[str, ...] = Field(min_length=1)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    split: str = Field(default="test", description="the split describing every cell")
    cell: SafePath = Field(description="path of a cell: '{corruption}.npy' or '{corruption}/{severity}'")
    labels: SafePath | None = Field(default=None, description="labels file shared by every corruption (.npy sets)")

    def parse_cell(self, dataset: str, split: str) -> tuple[str, int]:
        """``"<corruption>/<severity>"`` -> (corruption, severity).

        Raises:
            DataError: malformed split, unknown corruption or severity.
        """
        corruption, _, severity_text = split.rpartition("/")
        if not corruption or not severity_text.isdigit():
            raise DataError(
                f"dataset {dataset!r} is a corruption set: choose the split '<corruption>/<severity>' "
                f"(e.g. '{self.corruptions[0]}/{self.severities[-1]}'), got {split!r}"
            )
        return self.check(dataset, corruption, int(severity_text))

    def check(self, dataset: str, corruption: str, severity: int) -> tuple[str, int]:
        """Return ``(corruption, severity)`` when the set has them.

        Raises:
            DataError: unknown corruption or severity.
        """
        if corruption not in self.corruptions:
            import difflib

            close = difflib.get_close_matches(corruption, self.corruptions, n=2, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise DataError(f"dataset {dataset!r} has no corruption {corruption!r}{hint} (it has {', '.join(self.corruptions)})")
        if severity not in self.severities:
            raise DataError(f"dataset {dataset!r} has no severity {severity} (it has {list(self.severities)})")
        return corruption, severity

    def cell_path(self, corruption: str, severity: int) -> str:
        """Path of one cell relative to the root."""
        return self.cell.format(corruption=corruption, severity=severity)


class Manifest(_Frozen):
    """A dataset manifest (see the module docstring)."""

    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    source: str = Field(default="", description="where the data comes from (citation, archive)")
    format: str = Field(description="registered dataset loader")
    directory: str | None = Field(default=None, description="default folder name under the data home")
    num_classes: int = Field(gt=1, le=MAX_CLASSES)
    input_shape: tuple[int, int, int] | None = Field(default=None, description="C, H, W after loading")
    files: tuple[FileSpec, ...] = ()
    archives: tuple[ArchiveSpec, ...] = ()
    splits: dict[str, SplitSpec]
    options: dict[str, Any] = Field(default_factory=dict, description="format-specific settings")
    corruption_set: CorruptionSetSpec | None = Field(
        default=None, description="set for released corruption data (CIFAR-10-C, ImageNet-C...)"
    )

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        if self.corruption_set is not None and self.corruption_set.split not in self.splits:
            raise ValueError(
                f"corruption_set.split {self.corruption_set.split!r} is not one of the splits {sorted(self.splits)}"
            )
        if self.input_shape is not None and not all(1 <= side <= MAX_INPUT_SIDE for side in self.input_shape):
            raise ValueError(f"input_shape {list(self.input_shape)}: every dimension (C, H, W) must be between 1 and {MAX_INPUT_SIDE}")
        paths = [spec.path for spec in self.files]
        repeated = sorted({path for path in paths if paths.count(path) > 1})
        if repeated:
            raise ValueError(f"files lists {', '.join(map(repr, repeated))} more than once")
        for name, split in self.splits.items():
            if split.label_counts is not None and len(split.label_counts) != self.num_classes:
                raise ValueError(f"splits.{name}.label_counts has {len(split.label_counts)} entries, expected num_classes={self.num_classes}")
            if split.label_counts is not None and sum(split.label_counts) != split.n:
                raise ValueError(f"splits.{name}.label_counts sum to {sum(split.label_counts)}, expected n={split.n}")
        return self

    def split_spec(self, split: str) -> SplitSpec:
        """The split ``split``; for a corruption set, ``"<corruption>/<severity>"`` names a cell.

        Raises:
            DataError: unknown split, corruption or severity.
        """
        if self.corruption_set is not None:
            self.corruption_set.parse_cell(self.name, split)
            return self.splits[self.corruption_set.split]
        if split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]


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
            what = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(f"dataset manifest {path} {what}")
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
        data = strict_yaml.load(raw, "dataset manifests")
        manifest = Manifest.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a dataset manifest") from None
    except yaml.YAMLError as exc:
        where, problem = strict_yaml.where_and_problem(exc)
        raise ConfigError(f"{path}: {where}malformed YAML ({problem})") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "<root>"  # a whole-manifest check, or no mapping at all: it read "path: : ..."
        raise ConfigError(f"{path}: {where}: {error_message(error)}") from None
    return manifest, hashlib.sha256(raw).hexdigest()


def _cache_path() -> Path:
    base = os.environ.get("ROBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "robench")
    return Path(base) / "checksums.json"


def file_digest(path: Path, algorithm: str) -> str:
    """Checksum of a file, cached by (path, size, mtime, inode, ctime) so large sets are hashed once.

    The change time cannot be set back from user space (``os.utime`` sets only the access and
    modification times), so a file edited in place and given its old mtime is hashed again."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}|{algorithm}"
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


@dataclass(frozen=True)
class FileCheck:
    """What was checked for one manifest entry (a file, a pattern or an official archive)."""

    path: str
    checks: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True)
class VerificationReport:
    """Per-entry verification of a dataset; ``str()`` gives one line per entry and a summary."""

    dataset: str
    manifest_file: str
    root: str
    entries: tuple[FileCheck, ...]

    @property
    def summary(self) -> str:
        """One line: what was checked, e.g. ``7 files, each checked for size and md5`` (results' ``verified``).

        Files matched by a pattern count as one entry checked for its number of matches; archives are
        the official downloads found next to the files.
        """
        files = [e for e in self.entries if "archive" not in e.checks]
        archives = len(self.entries) - len(files)
        counted: dict[str, int] = {}
        for entry in files:
            for check in entry.checks:
                if check != "exists":
                    counted[check] = counted.get(check, 0) + 1
        names = {"count": "number of entries"}
        noun = f"{len(files)} {'file' if len(files) == 1 else 'files'}"
        if not counted:
            text = f"{noun}, checked for presence only"
        elif all(v == len(files) for v in counted.values()):
            text = f"{noun}, {'each ' if len(files) > 1 else ''}checked for {_and(names.get(k, k) for k in counted)}"
        else:
            text = f"{noun}; checked for " + ", ".join(f"{names.get(k, k)} ({v} of {len(files)})" for k, v in counted.items())
        if archives:
            text += f"; {archives} official {'archive' if archives == 1 else 'archives'} checked"
        return text

    def __str__(self) -> str:
        width = max((len(e.path) for e in self.entries), default=0)
        lines = [f"dataset {self.dataset} (manifest {self.manifest_file}) under {self.root}"]
        for entry in self.entries:
            detail = f"  ({entry.detail})" if entry.detail else ""
            lines.append(f"  ok  {entry.path.ljust(width)}  {' '.join(entry.checks)}{detail}")
        lines.append(f"verified: {self.summary}")
        return "\n".join(lines)


def _and(words: Iterable[str]) -> str:
    items = list(words)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pattern_entries(root: Path, pattern: str) -> Iterator[Path]:
    """Entries under ``root`` matching a manifest pattern that the image-folder loaders read:
    folders and image files, none hidden (a stray ``.DS_Store`` or ``._x.JPEG`` is not an image)."""
    pieces = [part for part in pattern.split("/") if part]
    wild = [index - len(pieces) for index, part in enumerate(pieces) if "*" in part]  # from the end of a match
    for match in root.glob(pattern):
        if "**" in pieces:  # any depth: every part below the root is a wildcard's
            hidden = any(is_hidden(part) for part in match.relative_to(root).parts)
        else:
            hidden = any(is_hidden(match.parts[index]) for index in wild)
        if not hidden and (is_image_file(match.name) or match.is_dir()):  # the name test first: no stat for image files
            yield match


def pattern_matches(root: Path, pattern: str) -> int:
    """The number of entries under ``root`` a manifest pattern matches (see :func:`_pattern_entries`)."""
    return sum(1 for _ in _pattern_entries(root, pattern))


def pattern_listing(root: Path, pattern: str, manifest_file: Path | str | None = None) -> tuple[int, str]:
    """The number of entries a manifest pattern matches under ``root`` and the sha256 of their
    listing: one ``relative/path<TAB>size`` line per image file (``relative/path/<TAB>dir`` per
    folder), sorted, POSIX separators, so that it does not depend on the root or the OS's path
    separator. (A ``**`` pattern's matches differ between Python versions, 3.13's glob also
    matching files; the count of one had the same dependence.)

    Raises:
        DataError: a match cannot be read (a dangling symlink), naming it and ``manifest_file``.
    """
    lines = []
    for match in _pattern_entries(root, pattern):
        relative = match.relative_to(root).as_posix()
        if match.is_dir():
            lines.append(f"{relative}/\tdir")
            continue
        try:
            size = match.stat().st_size
        except OSError as exc:
            raise DataError(f"{match}: cannot be read ({exc.strerror}); manifest {manifest_file or '?'} lists {pattern}") from None
        lines.append(f"{relative}\t{size}")
    lines.sort()
    digest = hashlib.sha256("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")).hexdigest()
    return len(lines), digest


def _check_pattern(root: Path, spec: FileSpec, manifest_file: Path | str) -> FileCheck:
    if spec.listing_sha256 is None:
        matches = pattern_matches(root, spec.path)
    else:
        matches, listing = pattern_listing(root, spec.path, manifest_file)
    if matches == 0:
        raise DataError(f"{root / spec.path}: nothing matches (no folder or image file); manifest {manifest_file} lists {spec.path}"
                        + (f" ({spec.count} entries expected)" if spec.count else ""))
    if spec.count is not None and matches != spec.count:
        raise DataError(
            f"{root / spec.path}: {matches} entries match, but manifest {manifest_file} expects {spec.count} "
            "(incomplete extraction? folders and image files count, hidden entries do not)"
        )
    done: tuple[str, ...] = ("exists", "count") if spec.count is not None else ("exists",)
    if spec.listing_sha256 is not None:
        if listing != spec.listing_sha256:
            raise DataError(
                f"{root / spec.path}: the names or sizes of its {matches} entries differ from those frozen in manifest "
                f"{manifest_file} (listing sha256 {listing}, expected {spec.listing_sha256}): an image was replaced, "
                "renamed, added or removed"
            )
        done += ("listing",)
    return FileCheck(spec.path, done, f"{matches} entries")


def file_expectation(spec: FileSpec) -> str:
    """What a manifest entry expects of its file, in words: checksums, size, array shape."""
    parts = [f"{algorithm} {getattr(spec, algorithm)}" for algorithm in ("md5", "sha256") if getattr(spec, algorithm)]
    if spec.size is not None:
        parts.append(f"{spec.size} bytes")
    if spec.shape is not None:
        parts.append(f"array {spec.dtype or ''}{list(spec.shape)}")
    return ", ".join(parts) or "a file"


def _check_file(root: Path, spec: FileSpec, manifest_file: Path | str, checksums: bool) -> list[str]:
    path = root / spec.path
    if not path.is_file():
        expected = f" (expected: {file_expectation(spec)})"
        hint = ""
        first = Path(spec.path).parts[0]
        if len(Path(spec.path).parts) > 1 and root.name == first:
            hint = f"; give as root the folder that contains {first}/, i.e. {root.parent}"
        raise DataError(f"{path}: file missing; manifest {manifest_file} lists {spec.path}{expected}{hint}")
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
        except ARRAY_READ_ERRORS as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc}); manifest {manifest_file} expects {file_expectation(spec)}") from None
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


def _manifest_label(manifest: Manifest, manifest_file: str | Path | None) -> Path | str:
    if manifest_file is not None:
        return manifest_file
    try:
        return manifest_path(manifest.name)
    except ConfigError:  # a manifest given by path, named otherwise
        return f"{manifest.name!r}"


def verify_report(
    manifest: Manifest,
    root: Path,
    checksums: bool = True,
    *,
    paths: Collection[str] | None = None,
    manifest_file: str | Path | None = None,
) -> VerificationReport:
    """Check the manifest's files (and any official archive present) under ``root``, one by one.

    Sizes and shapes are cheap; checksums are computed once per file version (see :func:`file_digest`).

    Args:
        manifest: The dataset manifest.
        root: Folder the manifest's paths are relative to.
        checksums: Also compare md5/sha256 (otherwise sizes, shapes and counts only).
        paths: Check only these manifest entries (e.g. one cell of a corruption set); archives are
            then skipped.
        manifest_file: How to name the manifest in messages (default: its shipped path).

    Returns:
        What was checked per entry.

    Raises:
        DataError: a file is missing or does not match, naming the file, the manifest and what was expected.
    """
    label = _manifest_label(manifest, manifest_file)
    if not root.is_dir():
        raise DataError(f"data root {root} for dataset {manifest.name!r} is not a folder (manifest {label})")
    wanted = None if paths is None else set(paths)
    entries: list[FileCheck] = []
    for spec in manifest.files:
        if wanted is not None and spec.path not in wanted:
            continue
        if "*" in spec.path:
            entries.append(_check_pattern(root, spec, label))
        else:
            entries.append(FileCheck(spec.path, tuple(_check_file(root, spec, label, checksums))))
    if wanted is None:
        for archive in manifest.archives:
            path = root / archive.name
            if path.is_file():
                spec = FileSpec(path=archive.name, md5=archive.md5, sha256=archive.sha256, size=archive.size)
                entries.append(FileCheck(archive.name, ("archive", *_check_file(root, spec, label, checksums)[1:])))
    return VerificationReport(manifest.name, str(label), str(root), tuple(entries))


def frozen_files(manifest: Manifest, root: Path) -> list[dict[str, Any]]:
    """The manifest's ``files`` entries completed with what is under ``root``: the size and sha256 of
    every file; for a pattern, its count (the number found, where the manifest gives none) and the
    digest of its matches' names and sizes (:func:`pattern_listing`).

    Call it on files that passed :func:`verify_report`: it records what is there, right or wrong.
    """
    entries = []
    for spec in manifest.files:
        entry = spec.model_dump(mode="json", exclude_none=True)
        if "*" in spec.path:
            count, entry["listing_sha256"] = pattern_listing(root, spec.path, _manifest_label(manifest, None))
            entry.setdefault("count", count)
        else:
            entry["size"] = (root / spec.path).stat().st_size
            entry["sha256"] = file_digest(root / spec.path, "sha256")
        entries.append(entry)
    return entries


def verify_files(manifest: Manifest, root: Path, checksums: bool = True) -> str:
    """Check every file (and any official archive present) under ``root`` against the manifest.

    Returns:
        A one-line summary of what was verified (see :func:`verify_report` for the per-file report).

    Raises:
        DataError: a file is missing or does not match, naming the file, the manifest and what was expected.
    """
    return verify_report(manifest, root, checksums).summary
