"""Image-folder formats: ImageNet validation (class subfolders), ImageNet-C and Tiny-ImageNet-C trees.

Images are decoded lazily, per batch, with PIL: converted to RGB, the shorter side resized
(bilinear, as torchvision's ``Resize(int)`` on PIL images) and center-cropped (torchvision's
``CenterCrop`` offsets), so a prefix of a 50,000-image folder costs only what it reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from robench._errors import DataError
from robench._io import read_json_capped
from robench.data.base import Dataset
from robench.data.manifest import IMAGE_SUFFIXES, Manifest, data_path, is_hidden, is_image_file  # noqa: F401  (IMAGE_SUFFIXES: its old home)
from robench.registry import register
from robench.threat_model import DatasetSpec

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


def resize_shorter_side(image: PILImage, size: int) -> PILImage:
    """Resize a PIL image so that its shorter side is ``size`` (bilinear; the longer side is truncated)."""
    from PIL import Image

    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(new_size, Image.BILINEAR)  # type: ignore[attr-defined]  # Image.Resampling is Pillow >= 9.1


def center_crop(image: PILImage, size: int, path: Path) -> PILImage:
    """Crop the central ``size`` x ``size`` square (offsets rounded as torchvision's CenterCrop).

    Raises:
        DataError: the image is smaller than the crop.
    """
    width, height = image.size
    if width < size or height < size:
        raise DataError(f"{path}: image {width}x{height} is smaller than the center crop {size}; set a resize >= {size}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def decode_image(path: Path, resize: int | None, crop: int | None, source: str | None = None) -> np.ndarray:
    """Decode one image file to uint8 (H, W, 3) after the optional resize and crop.

    Raises:
        DataError: the file cannot be decoded (naming ``source``, the manifest, when given).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            image = handle.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        where = f"; manifest {source} expects a decodable image (JPEG/PNG) there" if source else ""
        raise DataError(f"{path}: cannot decode image ({exc}){where}") from None
    if resize is not None:
        image = resize_shorter_side(image, resize)
    if crop is not None:
        image = center_crop(image, crop, path)
    return np.asarray(image, dtype=np.uint8)


class ImageFolderDataset(Dataset):
    """Image files with labels, decoded per batch (a thread pool decodes the files of a batch)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], num_classes: int,
                 resize: int | None = None, crop: int | None = None, source: str | None = None) -> None:
        if not files:
            raise DataError("no image files to load")
        self._files = list(files)
        self._labels = torch.as_tensor(list(labels), dtype=torch.long)
        self._resize, self._crop, self._source = resize, crop, source
        self.num_classes = num_classes
        first = decode_image(self._files[0], resize, crop, source)
        self.input_shape = (3, int(first.shape[0]), int(first.shape[1]))

    def __len__(self) -> int:
        return len(self._files)

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    @property
    def files(self) -> list[Path]:
        """The image files, in dataset order."""
        return list(self._files)

    def _decode(self, path: Path) -> np.ndarray:
        array = decode_image(path, self._resize, self._crop, self._source)
        if (3, array.shape[0], array.shape[1]) != self.input_shape:
            raise DataError(
                f"{path}: decoded to {array.shape[1]}x{array.shape[0]} but the dataset's images are "
                f"{self.input_shape[2]}x{self.input_shape[1]}; set center_crop to give every image one size"
            )
        return array

    def load(self, indices: Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = list(range(len(self))[indices]) if isinstance(indices, slice) else [int(i) for i in indices]
        paths = [self._files[i] for i in chosen]
        if len(paths) >= 8:
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                arrays = list(pool.map(self._decode, paths))
        else:
            arrays = [self._decode(p) for p in paths]
        if arrays:
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        else:
            images = torch.zeros((0, *self.input_shape))
        return images, self._labels[torch.as_tensor(chosen, dtype=torch.long)]


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the subfolders of ``folder`` (the class ids, e.g. WordNet ids); hidden ones are skipped.

    Raises:
        DataError: ``folder`` is missing.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder missing")
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not is_hidden(entry.name))


MAX_CLASS_INDEX_BYTES = 1 << 24
"""Largest class-index JSON read (ImageNet's is about 40 kB)."""


def read_class_index(path: Path) -> dict[str, int]:
    """A class-index JSON as ``{wnid: index}``.

    Accepted layouts: ``{"0": ["n01440764", "tench"], ...}`` (the common ``imagenet_class_index.json``),
    ``{"n01440764": 0, ...}`` or ``["n01440764", ...]`` (index = position).

    Raises:
        DataError: missing or malformed file, or indices that are not 0..K-1.
    """
    raw = read_json_capped(path, MAX_CLASS_INDEX_BYTES, "class-index JSON file", DataError)
    if isinstance(raw, list) and all(isinstance(w, str) for w in raw):
        mapping = {wnid: index for index, wnid in enumerate(raw)}
    elif isinstance(raw, dict) and all(isinstance(v, int) for v in raw.values()):
        mapping = {str(k): int(v) for k, v in raw.items()}
    elif isinstance(raw, dict) and all(isinstance(v, list) and v and isinstance(v[0], str) for v in raw.values()):
        try:
            mapping = {v[0]: int(k) for k, v in raw.items()}
        except ValueError:
            raise DataError(f"{path}: class-index keys must be integers") from None
    else:
        raise DataError(f"{path}: expected {{'0': [wnid, name]}}, {{wnid: index}} or [wnid, ...]")
    if sorted(mapping.values()) != list(range(len(mapping))):
        raise DataError(f"{path}: class indices must be 0..{len(mapping) - 1}, each once")
    return mapping


def _class_mapping(manifest: Manifest, root: Path, folder: Path) -> dict[str, int]:
    wnids = class_folders(folder)
    index_file = manifest.options.get("class_index")
    mapping = read_class_index(data_path(root, index_file, manifest, "options.class_index")) if index_file else {w: i for i, w in enumerate(wnids)}
    unknown = [w for w in wnids if w not in mapping]
    if unknown:
        raise DataError(f"{folder}: class folders {unknown[:3]} are not in the class index ({len(unknown)} unknown)")
    if len(mapping) != manifest.num_classes or len(wnids) != manifest.num_classes:
        raise DataError(
            f"{folder}: {len(wnids)} class folders (index of {len(mapping)}), manifest {manifest.name!r} "
            f"expects {manifest.num_classes} classes"
        )
    return mapping


def _image_names(folder: Path, manifest: Manifest) -> list[str]:
    """The image files of a class folder; an image name that is not a readable file (a dangling or
    looping symlink) is an error naming it, not a silently missing example."""
    names = []
    for entry in os.scandir(folder):
        if not is_image_file(entry.name):
            continue
        reason = "not a file"
        try:
            # a plain file's type comes with the directory listing; only a symlink is followed (a stat;
            # a dangling or looping one raises)
            regular = entry.is_file(follow_symlinks=False) or (entry.is_symlink() and os.path.isfile(os.path.realpath(entry.path, strict=True)))
        except OSError as exc:
            regular, reason = False, exc.strerror or str(exc)
        if not regular:
            raise DataError(f"{entry.path}: image listed by its name but unreadable ({reason}); manifest {manifest.name!r} expects an image file")
        names.append(entry.name)
    return names


def scan_folder(manifest: Manifest, root: Path, folder: Path, order: str) -> tuple[list[Path], list[int]]:
    """Image files and labels of a class-subfolder tree ``folder/<class>/*.JPEG``.

    ``order`` is ``sorted`` (by class, then file name: torchvision's ImageFolder order) or
    ``interleaved`` (round-robin over the classes, file names sorted within a class), so that any
    prefix is class-balanced: the first 5,000 of ImageNet's 50,000 are 5 per class.

    Raises:
        DataError: missing folder, unknown classes, wrong number of classes or empty folders.
    """
    mapping = _class_mapping(manifest, root, folder)
    per_class: list[tuple[int, list[Path]]] = []
    for wnid in class_folders(folder):
        names = sorted(_image_names(folder / wnid, manifest))
        if not names:
            raise DataError(f"{folder / wnid}: no images (.JPEG/.jpg/.png)")
        per_class.append((mapping[wnid], [folder / wnid / name for name in names]))
    per_class.sort(key=lambda item: item[0])
    files: list[Path] = []
    labels: list[int] = []
    if order == "sorted":
        for label, paths in per_class:
            files.extend(paths)
            labels.extend([label] * len(paths))
    elif order == "interleaved":
        for rank in range(max(len(paths) for _, paths in per_class)):
            for label, paths in per_class:
                if rank < len(paths):
                    files.append(paths[rank])
                    labels.append(label)
    else:
        raise DataError(f"manifest {manifest.name!r}: options.order must be 'sorted' or 'interleaved', got {order!r}")
    return files, labels


@register("dataset", "imagenet_folder", tags=("resizable",))
def load_imagenet_folder(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """ImageNet validation images in class subfolders (``val/n01440764/*.JPEG``), decoded lazily.

    ``splits.<split>.options.folder`` is the split's folder (default: the split name). Labels are
    the positions of the sorted class folders (the standard ImageNet order), or come from the
    class-index JSON named by ``options.class_index``. ``resize``/``center_crop`` come from the
    threat model's dataset, else from the manifest's options (256 / 224).
    """
    options = manifest.split_spec(split).options
    folder = data_path(root, options.get("folder", split), manifest, f"splits.{split}.options.folder")
    files, labels = scan_folder(manifest, root, folder, str(manifest.options.get("order", "interleaved")))
    resize, crop = spec.transform(manifest.options, manifest.name)
    return ImageFolderDataset(files, labels, manifest.num_classes, resize, crop, repr(manifest.name))


def _load_corruption_folder(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    corruption_set = manifest.corruption_set
    if corruption_set is None:
        raise DataError(f"manifest {manifest.name!r}: format {manifest.format} needs a corruption_set")
    corruption, severity = corruption_set.parse_cell(manifest.name, split)
    folder = data_path(root, corruption_set.cell_path(corruption, severity), manifest, "corruption_set.cell", listed=True)
    files, labels = scan_folder(manifest, root, folder, str(manifest.options.get("order", "interleaved")))
    resize, crop = spec.transform(manifest.options, manifest.name)
    return ImageFolderDataset(files, labels, manifest.num_classes, resize, crop, repr(manifest.name))


@register("dataset", "imagenet_c_folder", tags=("resizable",))
def load_imagenet_c_folder(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """ImageNet-C: ``<corruption>/<severity>/<wnid>/*.JPEG`` (224 px), one cell per split ``"<corruption>/<severity>"``."""
    return _load_corruption_folder(manifest, root, split, spec)


@register("dataset", "tiny_imagenet_c_folder", tags=("resizable",))
def load_tiny_imagenet_c_folder(manifest: Manifest, root: Path, split: str, spec: DatasetSpec) -> Dataset:
    """Tiny-ImageNet-C: ``<corruption>/<severity>/<wnid>/*.JPEG``, 200 classes, 64 px, split ``"<corruption>/<severity>"``."""
    return _load_corruption_folder(manifest, root, split, spec)
