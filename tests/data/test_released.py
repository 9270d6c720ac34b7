"""Released corruption sets: CIFAR-10-C ``.npy`` stacks cell by cell, streaming, verification errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robench._errors import ConfigError, DataError
from robench.data import load_dataset
from robench.data.released import available_corruptions, load_corruption_set, load_matching_cell
from robench.threat_model import DatasetSpec
from tests.data.fixtures import (
    CORRUPTIONS,
    WNIDS,
    cifar_c_pixel,
    write_cifar_c,
    write_class_tree,
    write_corruption_tree,
    write_manifest,
)


@pytest.fixture
def cifar_c(tmp_path: Path) -> dict:
    return write_cifar_c(tmp_path)


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_cell_rows_and_labels(cifar_c: dict, tmp_path: Path, corruption: str, severity: int) -> None:
    dataset = load_corruption_set(str(cifar_c["manifest"]), corruption, severity, root=tmp_path)
    n = len(cifar_c["labels"])
    assert len(dataset) == n and dataset.input_shape == (3, 32, 32) and dataset.num_classes == 10
    x, y = dataset.load(slice(0, n))
    assert x.shape == (n, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == cifar_c["labels"].tolist()  # every severity block is the test set in order
    index = CORRUPTIONS.index(corruption)
    for row in (0, n // 2, n - 1):
        assert x[row, 2, 5, 5] * 255 == cifar_c_pixel(index, severity, row)
        assert x[row, 0, 0, 0] * 255 == ((severity - 1) * n + row) % 256
    # Any selection gives the same rows as the slice.
    picked, picked_y = dataset.load([n - 1, 0, 3])
    assert torch.equal(picked, x[[n - 1, 0, 3]]) and picked_y.tolist() == y[[n - 1, 0, 3]].tolist()


def test_split_cell_through_load_dataset(cifar_c: dict, tmp_path: Path) -> None:
    dataset, info = load_dataset(DatasetSpec(manifest=str(cifar_c["manifest"]), split="fog/2", n_examples=7), root=tmp_path)
    assert len(dataset) == 7 and info.split == "fog/2"
    assert "2 files" in info.verified  # the cell's stack and the labels, not the other corruption
    with pytest.raises(DataError, match="'<corruption>/<severity>'"):
        load_dataset(DatasetSpec(manifest=str(cifar_c["manifest"]), split="test"), root=tmp_path)


def test_streams_from_a_memory_map(cifar_c: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real_load = np.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    dataset = load_corruption_set(str(cifar_c["manifest"]), "fog", 4, root=tmp_path, n_examples=5)
    assert calls and all(c.get("mmap_mode") == "r" and c.get("allow_pickle") is False for c in calls)
    assert len(dataset) == 5 and dataset.load(slice(0, 5))[0].shape[0] == 5


def test_unknown_corruption_or_severity(cifar_c: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="did you mean 'fog'"):
        load_corruption_set(str(cifar_c["manifest"]), "fgo", 1, root=tmp_path)
    with pytest.raises(DataError, match="no severity 6"):
        load_corruption_set(str(cifar_c["manifest"]), "fog", 6, root=tmp_path)
    with pytest.raises(ConfigError, match="fixed image size"):
        load_corruption_set(str(cifar_c["manifest"]), "fog", 1, root=tmp_path, resize=64)


def test_mismatch_and_missing_name_file_manifest_expected(cifar_c: dict, tmp_path: Path) -> None:
    folder = cifar_c["folder"]
    stack = np.load(folder / "fog.npy")
    stack[3, 3, 3, 0] ^= 1
    np.save(folder / "fog.npy", stack)
    with pytest.raises(DataError) as caught:
        load_corruption_set(str(cifar_c["manifest"]), "fog", 1, root=tmp_path)
    message = str(caught.value)
    assert "fog.npy" in message and "md5" in message and str(cifar_c["manifest"]) in message and "expects" in message
    # The other corruption's cell does not depend on fog.npy.
    assert len(load_corruption_set(str(cifar_c["manifest"]), "gaussian_noise", 1, root=tmp_path)) == 20
    (folder / "labels.npy").unlink()
    with pytest.raises(DataError) as caught:
        load_corruption_set(str(cifar_c["manifest"]), "gaussian_noise", 1, root=tmp_path)
    message = str(caught.value)
    assert "labels.npy" in message and "file missing" in message and str(cifar_c["manifest"]) in message
    assert "expected: sha256" in message


def test_wrong_shape_is_reported_before_hashing(cifar_c: dict, tmp_path: Path) -> None:
    np.save(cifar_c["folder"] / "fog.npy", np.zeros((100, 32, 32, 1), np.uint8))
    with pytest.raises(DataError, match=r"expects uint8\[100, 32, 32, 3\]"):
        load_corruption_set(str(cifar_c["manifest"]), "fog", 1, root=tmp_path)


def test_available_corruptions(cifar_c: dict, tmp_path: Path) -> None:
    assert available_corruptions(str(cifar_c["manifest"]), tmp_path) == list(CORRUPTIONS)
    (cifar_c["folder"] / "fog.npy").unlink()
    assert available_corruptions(str(cifar_c["manifest"]), tmp_path) == ["gaussian_noise"]
    assert available_corruptions(str(cifar_c["manifest"]), tmp_path / "elsewhere") == []


def test_folder_sets_report_partial_cells(tmp_path: Path) -> None:
    manifest = write_corruption_tree(tmp_path, tiny=False)
    assert available_corruptions(str(manifest), tmp_path) == list(CORRUPTIONS)
    import shutil

    shutil.rmtree(tmp_path / "fog" / "5")
    assert available_corruptions(str(manifest), tmp_path) == ["gaussian_noise"]


def test_not_a_corruption_set(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a released corruption set"):
        load_corruption_set("cifar10", "fog", 1, root=tmp_path)


def _clean_npz(folder: Path, labels: np.ndarray, *, classes: int = 10, side: int = 32) -> Path:
    """A clean ``npz`` set with these labels (blank images); return its manifest."""
    folder.mkdir(parents=True)
    np.savez(folder / "clean.npz", x=np.zeros((len(labels), side, side, 3), np.uint8), y=labels.astype(np.int64))
    return write_manifest(folder / "clean.yaml", {
        "schema_version": 1, "name": "clean", "format": "npz", "num_classes": classes, "input_shape": [3, side, side],
        "files": [{"path": "clean.npz"}], "splits": {"test": {"n": int(len(labels))}},
    })  # fmt: skip


def test_matching_cell_follows_the_stride_and_checks_labels(cifar_c: dict, tmp_path: Path) -> None:
    """Stride 2 evaluates test examples 0, 2, 4...: the cell gives those rows, in that order."""
    clean_manifest = _clean_npz(tmp_path / "clean", cifar_c["labels"])
    clean, _ = load_dataset(DatasetSpec(manifest=str(clean_manifest), stride=2, n_examples=7), root=tmp_path / "clean")
    for severity in (1, 3):
        cell = load_matching_cell(str(cifar_c["manifest"]), "fog", severity, clean, clean_manifest=str(clean_manifest), root=tmp_path)
        x, y = cell.load(slice(0, len(cell)))
        assert len(cell) == 7 and y.tolist() == clean.labels.tolist()
        assert (x[:, 0, 0, 0] * 255).round().long().tolist() == [(severity - 1) * 20 + row for row in range(0, 14, 2)]
    # Clean data from another order of the test set: refused, naming both manifests.
    shuffled = _clean_npz(tmp_path / "shuffled", np.roll(cifar_c["labels"], 1))
    other, _ = load_dataset(DatasetSpec(manifest=str(shuffled)), root=tmp_path / "shuffled")
    with pytest.raises(DataError) as caught:
        load_matching_cell(str(cifar_c["manifest"]), "fog", 1, other, clean_manifest=str(shuffled), root=tmp_path)
    message = str(caught.value)
    assert "labels differ" in message and str(cifar_c["manifest"]) in message and str(shuffled) in message


def test_matching_cell_needs_the_data_label_set_and_image_shape(cifar_c: dict, tmp_path: Path) -> None:
    hundred = _clean_npz(tmp_path / "hundred", cifar_c["labels"], classes=100)
    clean, _ = load_dataset(DatasetSpec(manifest=str(hundred)), root=tmp_path / "hundred")
    with pytest.raises(DataError, match="has 10 classes, the evaluation data .* has 100") as caught:
        load_matching_cell(str(cifar_c["manifest"]), "fog", 1, clean, clean_manifest=str(hundred), root=tmp_path)
    assert str(cifar_c["manifest"]) in str(caught.value) and str(hundred) in str(caught.value)
    small = _clean_npz(tmp_path / "small", cifar_c["labels"], side=16)
    clean, _ = load_dataset(DatasetSpec(manifest=str(small)), root=tmp_path / "small")
    with pytest.raises(DataError, match=r"shape \[3, 32, 32\], the evaluation data .* has \[3, 16, 16\]") as caught:
        load_matching_cell(str(cifar_c["manifest"]), "fog", 1, clean, clean_manifest=str(small), root=tmp_path)
    assert str(cifar_c["manifest"]) in str(caught.value) and str(small) in str(caught.value)


def test_matching_cell_in_folder_trees_goes_by_file_name(tmp_path: Path) -> None:
    """A clean folder in sorted order, every 2nd image; the cell tree is interleaved: matched by <class>/<file>."""
    released = write_corruption_tree(tmp_path / "c", tiny=False)
    write_class_tree(tmp_path / "v" / "val", WNIDS, 2, [(16, 16)], np.random.default_rng(1))  # the cells' file names
    clean_manifest = write_manifest(tmp_path / "v" / "val.yaml", {
        "schema_version": 1, "name": "val", "format": "imagenet_folder", "num_classes": 3, "input_shape": [3, 16, 16],
        "options": {"order": "sorted"}, "files": [{"path": "val/*", "count": 3}, {"path": "val/*/*", "count": 6}],
        "splits": {"val": {"n": 6, "options": {"folder": "val"}}},
    })  # fmt: skip
    clean, _ = load_dataset(DatasetSpec(manifest=str(clean_manifest), split="val", stride=2), root=tmp_path / "v")
    names = [f"{p.parent.name}/{p.name}" for p in load_dataset(DatasetSpec(manifest=str(clean_manifest), split="val"), root=tmp_path / "v")[0].files]  # type: ignore[attr-defined]
    whole = load_corruption_set(str(released), "fog", 2, root=tmp_path / "c")
    cell_names = [f"{p.parent.name}/{p.name}" for p in whole.files]  # type: ignore[attr-defined]
    assert cell_names != names  # interleaved vs sorted
    cell = load_matching_cell(str(released), "fog", 2, clean, clean_manifest=str(clean_manifest), root=tmp_path / "c")
    expected = [cell_names.index(name) for name in names[::2]]
    assert torch.equal(cell.load(slice(0, 3))[0], whole.load(expected)[0])
    assert cell.labels.tolist() == clean.labels.tolist()
    # An image of the clean selection missing from the cell (the count still right): refused.
    selected = tmp_path / "c" / "fog" / "2" / names[2]
    selected.rename(selected.with_name("ILSVRC2012_val_00000099.JPEG"))
    with pytest.raises(DataError, match=f"lacks 1 of the 3 images .*e.g. {names[2]}") as caught:
        load_matching_cell(str(released), "fog", 2, clean, clean_manifest=str(clean_manifest), root=tmp_path / "c")
    assert str(released) in str(caught.value) and str(clean_manifest) in str(caught.value)


def test_an_empty_npy_is_a_data_error_naming_the_file(cifar_c: dict, tmp_path: Path) -> None:
    # numpy raises EOFError for a 0-byte file: it escaped as "internal error: EOFError"
    (cifar_c["folder"] / "fog.npy").write_bytes(b"")
    with pytest.raises(DataError, match=r"fog.npy: not a readable .npy file.*expects"):
        load_corruption_set(str(cifar_c["manifest"]), "fog", 1, root=tmp_path)


def test_a_cell_the_manifest_does_not_list_is_not_read_unverified(cifar_c: dict, tmp_path: Path) -> None:
    # with fog.npy dropped from the manifest and replaced by zeros, the run read it and reported it
    import yaml

    raw = yaml.safe_load(cifar_c["manifest"].read_text())
    raw["files"] = [f for f in raw["files"] if not f["path"].endswith("fog.npy")]
    cifar_c["manifest"].write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match="not among the manifest's files, so it would be read unverified"):
        load_corruption_set(str(cifar_c["manifest"]), "fog", 1, root=tmp_path)
    tree = write_corruption_tree(tmp_path / "tree", tiny=False)
    raw = yaml.safe_load(tree.read_text())
    raw["files"] = [f for f in raw["files"] if not f["path"].startswith("fog/3")]
    tree.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match="fog/3.*read unverified"):
        load_corruption_set(str(tree), "fog", 3, root=tmp_path / "tree")


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_an_image_that_is_a_broken_symlink_is_named(tmp_path: Path, link: str) -> None:
    import os

    tree = write_corruption_tree(tmp_path, tiny=False)
    image = next((tmp_path / "fog" / "2" / WNIDS[0]).iterdir())
    image.unlink()
    os.symlink("nowhere.JPEG" if link == "dangling" else image.name, image)
    with pytest.raises(DataError, match=f"{image.name}: image listed by its name but unreadable") as caught:
        load_corruption_set(str(tree), "fog", 2, root=tmp_path)
    assert "manifest 'tiny-imagenetc'" in str(caught.value)


def test_an_undecodable_image_names_its_manifest(tmp_path: Path) -> None:
    tree = write_corruption_tree(tmp_path, tiny=False)
    images = sorted((tmp_path / "fog" / "2" / WNIDS[1]).iterdir())
    images[0].write_bytes(images[0].read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError, match=f"{images[0].name}: cannot decode image .*manifest 'tiny-imagenetc' expects a decodable image"):
        cell = load_corruption_set(str(tree), "fog", 2, root=tmp_path)
        cell.load(slice(0, len(cell)))
