"""Tiny datasets written in the exact official on-disk formats, with manifests carrying their own hashes."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

# ----------------------------------------------------------------------------- Python 2 pickles
# The official CIFAR python batches were written by Python 2's cPickle (protocol 2): byte strings
# as BINSTRING/SHORT_BINSTRING, numpy arrays as numpy.core.multiarray._reconstruct + BUILD. Python 3
# cannot emit that form for bytes, so these few opcodes are written by hand.


def _py2_str(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<I", len(data)) + data


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _py2_array(array: np.ndarray) -> bytes:
    if array.dtype != np.uint8:
        raise ValueError("only uint8 arrays are written")
    shape = b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + b"tb"
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"(" + _py2_int(0) + b"t" + _py2_str(b"b")
        + b"\x87R" + b"(" + _py2_int(1) + shape + dtype + b"\x89" + _py2_str(array.tobytes()) + b"tb"
    )


def _py2_value(value: Any) -> bytes:
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, bool):
        raise TypeError("bool not needed")
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"}(" + b"".join(_py2_value(k) + _py2_value(v) for k, v in value.items()) + b"u"
    if isinstance(value, np.ndarray):
        return _py2_array(value)
    raise TypeError(f"cannot write {type(value).__name__}")


def py2_pickle(obj: dict) -> bytes:
    """``obj`` pickled as Python 2's cPickle.dump(obj, f, 2) writes it."""
    return b"\x80\x02" + _py2_value(obj) + b"."


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(path: Path, manifest: dict) -> Path:
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def balanced_labels(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """A shuffled label vector with n // classes examples of every class."""
    return rng.permutation(np.arange(n) % classes)


# ----------------------------------------------------------------------------- CIFAR python
def write_cifar_python(root: Path, *, hundred: bool = False, per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict:
    """CIFAR-10 (5 train batches + test_batch + batches.meta) or CIFAR-100 (train, test, meta).

    Returns the arrays written (``train``/``test`` -> (data uint8 (N, 3072), labels)) and the manifest path.
    """
    rng = np.random.default_rng(seed)
    classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = b"fine_labels" if hundred else b"labels"
    written: dict[str, Any] = {}

    def batch(name: str, n: int, tag: bytes) -> tuple[np.ndarray, np.ndarray]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = balanced_labels(n, classes, rng)
        content: dict[bytes, Any] = {b"batch_label": tag, label_key: [int(v) for v in labels], b"data": data,
                                     b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        if hundred:
            content[b"coarse_labels"] = [int(v) // 5 for v in labels]
        (folder / name).write_bytes(py2_pickle(content))
        return data, labels

    if hundred:
        train_files = ["train"]
        written["train"] = batch("train", per_batch * 5, b"training batch 1 of 1")
        written["test"] = batch("test", n_test, b"testing batch 1 of 1")
        meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}
        (folder / "meta").write_bytes(py2_pickle(meta))
    else:
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        parts = [batch(name, per_batch, f"training batch {i} of 5".encode()) for i, name in enumerate(train_files, 1)]
        written["train"] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        written["test"] = batch("test_batch", n_test, b"testing batch 1 of 1")
        meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": per_batch, b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(py2_pickle(meta))
    test_files = ["test"] if hundred else ["test_batch"]
    files = sorted(p.name for p in folder.iterdir())
    n_train = per_batch * 5
    manifest = {
        "schema_version": 1,
        "name": "tiny-cifar100" if hundred else "tiny-cifar10",
        "format": "cifar_python",
        "num_classes": classes,
        "input_shape": [3, 32, 32],
        "options": {"label_key": "fine_labels" if hundred else "labels"},
        "files": [{"path": f"{folder.name}/{f}", "md5": md5(folder / f), "size": (folder / f).stat().st_size} for f in files],
        "splits": {
            "train": {"n": n_train, "label_counts": np.bincount(written["train"][1], minlength=classes).tolist(),
                      "options": {"files": [f"{folder.name}/{f}" for f in train_files]}},
            "test": {"n": n_test, "label_counts": np.bincount(written["test"][1], minlength=classes).tolist(),
                     "options": {"files": [f"{folder.name}/{f}" for f in test_files]}},
        },
    }
    written["manifest"] = write_manifest(root / "manifest.yaml", manifest)
    written["folder"] = folder
    return written


# ----------------------------------------------------------------------------- CIFAR-10-C .npy
CORRUPTIONS = ("gaussian_noise", "fog")


def cifar_c_pixel(corruption: int, severity: int, row: int) -> int:
    """The constant pixel value of one fixture image: encodes corruption, severity and row."""
    return (corruption * 100 + severity * 16 + row) % 256


def write_cifar_c(root: Path, *, n: int = 20, classes: int = 10, seed: int = 0) -> dict:
    """A CIFAR-10-C tree: ``CIFAR-10-C/<corruption>.npy`` (5n, 32, 32, 3) uint8 and ``labels.npy`` uint8 (5n,)."""
    rng = np.random.default_rng(seed)
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    labels = balanced_labels(n, classes, rng).astype(np.uint8)
    np.save(folder / "labels.npy", np.tile(labels, 5))
    for c, name in enumerate(CORRUPTIONS):
        stack = np.zeros((5 * n, 32, 32, 3), dtype=np.uint8)
        for severity in range(1, 6):
            for row in range(n):
                stack[(severity - 1) * n + row] = cifar_c_pixel(c, severity, row)
        stack[:, 0, 0, 0] = np.arange(5 * n) % 256  # a pixel that tells rows apart
        np.save(folder / f"{name}.npy", stack)
    files = [{"path": f"CIFAR-10-C/{name}.npy", "shape": [5 * n, 32, 32, 3], "dtype": "uint8",
              "md5": md5(folder / f"{name}.npy")} for name in CORRUPTIONS]
    files.append({"path": "CIFAR-10-C/labels.npy", "shape": [5 * n], "dtype": "uint8",
                  "sha256": sha256(folder / "labels.npy")})
    manifest = {
        "schema_version": 1,
        "name": "tiny-cifar10c",
        "format": "cifar_c_npy",
        "num_classes": classes,
        "input_shape": [3, 32, 32],
        "corruption_set": {"corruptions": list(CORRUPTIONS), "severities": [1, 2, 3, 4, 5], "split": "test",
                           "cell": "CIFAR-10-C/{corruption}.npy", "labels": "CIFAR-10-C/labels.npy"},
        "files": files,
        "splits": {"test": {"n": n, "label_counts": np.bincount(labels, minlength=classes).tolist()}},
    }
    return {"manifest": write_manifest(root / "manifest.yaml", manifest), "labels": labels, "folder": folder}


# ----------------------------------------------------------------------------- JPEG folder trees
WNIDS = ("n01440764", "n01443537", "n02085620")


def write_jpeg(path: Path, width: int, height: int, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Smooth content so that JPEG artefacts stay small and resizing is meaningful.
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 200, size=3)
    image = np.stack([(base[k] + 40 * np.sin(xx / (3 + k) + yy / 5)) for k in range(3)], axis=-1)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_class_tree(folder: Path, wnids: tuple[str, ...], per_class: int, sizes: list[tuple[int, int]], rng: np.random.Generator) -> None:
    """``folder/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` images of the given sizes (cycled)."""
    counter = 0
    for wnid in wnids:
        for _ in range(per_class):
            counter += 1
            width, height = sizes[counter % len(sizes)]
            write_jpeg(folder / wnid / f"ILSVRC2012_val_{counter:08d}.JPEG", width, height, rng)


def write_imagenet_val(root: Path, *, per_class: int = 3, class_index: bool = False, seed: int = 0) -> Path:
    """``val/<wnid>/*.JPEG`` with images of mixed sizes and orientations; return the manifest."""
    rng = np.random.default_rng(seed)
    write_class_tree(root / "val", WNIDS, per_class, [(40, 30), (30, 44), (36, 36), (50, 27)], rng)
    options: dict[str, Any] = {"resize": 24, "center_crop": 20, "order": "interleaved"}
    if class_index:
        # Keras layout, with the classes in an order other than sorted.
        order = [WNIDS[2], WNIDS[0], WNIDS[1]]
        (root / "class_index.json").write_text(json.dumps({str(i): [w, f"name{i}"] for i, w in enumerate(order)}))
        options["class_index"] = "class_index.json"
    n = per_class * len(WNIDS)
    manifest = {
        "schema_version": 1,
        "name": "tiny-imagenet-val",
        "format": "imagenet_folder",
        "num_classes": len(WNIDS),
        "input_shape": [3, 20, 20],
        "options": options,
        "files": [{"path": "val/*", "count": len(WNIDS)}, {"path": "val/*/*", "count": n}],
        "splits": {"val": {"n": n, "label_counts": [per_class] * len(WNIDS), "options": {"folder": "val"}}},
    }
    return write_manifest(root / "manifest.yaml", manifest)


def write_corruption_tree(root: Path, *, tiny: bool, per_class: int = 2, seed: int = 0) -> Path:
    """ImageNet-C (``<c>/<s>/<wnid>/*.JPEG``, 224 px... here 16 px) or Tiny-ImageNet-C (64 px) tree."""
    rng = np.random.default_rng(seed)
    side = 64 if tiny else 16
    prefix = "Tiny-ImageNet-C/" if tiny else ""
    files = []
    for corruption in CORRUPTIONS:
        for severity in range(1, 6):
            cell = f"{prefix}{corruption}/{severity}"
            write_class_tree(root / cell, WNIDS, per_class, [(side, side)], rng)
            files += [{"path": f"{cell}/*", "count": len(WNIDS)}, {"path": f"{cell}/*/*", "count": per_class * len(WNIDS)}]
    manifest = {
        "schema_version": 1,
        "name": "tiny-tinyimagenetc" if tiny else "tiny-imagenetc",
        "format": "tiny_imagenet_c_folder" if tiny else "imagenet_c_folder",
        "num_classes": len(WNIDS),
        "input_shape": [3, side, side],
        "options": {"order": "interleaved"},
        "corruption_set": {"corruptions": list(CORRUPTIONS), "severities": [1, 2, 3, 4, 5], "split": "val",
                           "cell": prefix + "{corruption}/{severity}"},
        "files": files,
        "splits": {"val": {"n": per_class * len(WNIDS), "label_counts": [per_class] * len(WNIDS)}},
    }
    return write_manifest(root / "manifest.yaml", manifest)
