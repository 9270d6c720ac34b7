"""Released corruption sets: CIFAR-10-C ``.npy`` stacks cell by cell, streaming, verification errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robench._errors import ConfigError, DataError
from robench.data import load_dataset
from robench.data.released import available_corruptions, load_corruption_set
from robench.threat_model import DatasetSpec
from tests.data.fixtures import CORRUPTIONS, cifar_c_pixel, write_cifar_c, write_corruption_tree


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
