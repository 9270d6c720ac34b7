"""CIFAR-10/100 python batches: layout, labels, the restricted unpickler, verification errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robench._errors import DataError
from robench.data import load_dataset
from robench.data.formats.cifar import read_cifar_batch
from robench.threat_model import DatasetSpec
from tests.data.fixtures import md5, py2_pickle, write_cifar_python, write_manifest


@pytest.mark.parametrize("hundred", [False, True], ids=["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_python_loads_official_layout(tmp_path: Path, hundred: bool, split: str) -> None:
    written = write_cifar_python(tmp_path, hundred=hundred)
    dataset, info = load_dataset(DatasetSpec(manifest=str(written["manifest"]), split=split), root=tmp_path)
    data, labels = written[split]
    assert len(dataset) == data.shape[0] and dataset.input_shape == (3, 32, 32)
    assert dataset.num_classes == (100 if hundred else 10)
    x, y = dataset.load(slice(0, len(dataset)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # Rows are the R, G, B 32x32 planes in row-major order; the batches keep their order.
    expected = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    assert torch.equal(x, expected)
    assert y.tolist() == labels.tolist() and dataset.labels.tolist() == labels.tolist()
    assert "md5" in info.verified and info.split == split


def test_cifar_pixel_layout_by_hand(tmp_path: Path) -> None:
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 1024 + 32 * 5 + 7] = 200  # green plane, row 5, column 7
    (tmp_path / "batch").write_bytes(py2_pickle({b"data": row, b"labels": [3]}))
    images, labels = read_cifar_batch(tmp_path / "batch", "labels")
    assert images.shape == (1, 32, 32, 3) and labels.tolist() == [3]
    assert images[0, 5, 7, 1] == 200 and int(images.sum()) == 200


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_pickles_load_too(tmp_path: Path, protocol: int) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    (tmp_path / "batch").write_bytes(pickle.dumps({b"data": data, b"labels": [1, 0]}, protocol=protocol))
    images, labels = read_cifar_batch(tmp_path / "batch", "labels")
    assert np.array_equal(images.transpose(0, 3, 1, 2).reshape(2, -1), data) and labels.tolist() == [1, 0]


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __reduce__(self) -> tuple:
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload", ["os.system", "eval"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, payload: str) -> None:
    written = write_cifar_python(tmp_path / "data")
    marker = tmp_path / "pwned"
    evil = _RunsShell(marker) if payload == "os.system" else _Evals()
    batch = written["folder"] / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": evil, b"labels": [0]}, protocol=2))
    # The manifest carries the tampered file's own hash: only the unpickler stands in the way.
    manifest = written["manifest"]
    text = manifest.read_text()
    import yaml

    content = yaml.safe_load(text)
    for entry in content["files"]:
        if entry["path"].endswith("test_batch"):
            entry["md5"], entry["size"] = md5(batch), batch.stat().st_size
    write_manifest(manifest, content)
    with pytest.raises(DataError) as caught:
        load_dataset(DatasetSpec(manifest=str(manifest), split="test"), root=tmp_path / "data")
    message = str(caught.value)
    assert "test_batch" in message and "refused" in message
    assert ("system" in message) if payload == "os.system" else ("eval" in message)
    assert not marker.exists()


def test_checksum_mismatch_names_file_manifest_and_expected(tmp_path: Path) -> None:
    written = write_cifar_python(tmp_path)
    batch = written["folder"] / "data_batch_3"
    expected = md5(batch)
    raw = bytearray(batch.read_bytes())
    raw[-10] ^= 0xFF  # same size, different content
    batch.write_bytes(bytes(raw))
    with pytest.raises(DataError) as caught:
        load_dataset(DatasetSpec(manifest=str(written["manifest"]), split="train"), root=tmp_path)
    message = str(caught.value)
    assert "data_batch_3" in message and str(written["manifest"]) in message
    assert expected in message and md5(batch) in message and "\n" not in message


def test_missing_batch_names_file_manifest_and_expected(tmp_path: Path) -> None:
    written = write_cifar_python(tmp_path)
    expected = md5(written["folder"] / "test_batch")
    (written["folder"] / "test_batch").unlink()
    with pytest.raises(DataError, match="file missing") as caught:
        load_dataset(DatasetSpec(manifest=str(written["manifest"]), split="test"), root=tmp_path)
    assert "test_batch" in str(caught.value) and str(written["manifest"]) in str(caught.value) and expected in str(caught.value)


def test_root_inside_the_extracted_folder_gets_a_hint(tmp_path: Path) -> None:
    written = write_cifar_python(tmp_path)
    with pytest.raises(DataError, match="give as root the folder that contains cifar-10-batches-py"):
        load_dataset(DatasetSpec(manifest=str(written["manifest"]), split="test"), root=written["folder"])


def test_wrong_keys_and_shapes_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}))
    with pytest.raises(DataError, match="'labels'"):
        read_cifar_batch(tmp_path / "a", "labels")
    (tmp_path / "b").write_bytes(py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="3072"):
        read_cifar_batch(tmp_path / "b", "labels")
    (tmp_path / "c").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        read_cifar_batch(tmp_path / "c", "labels")


def test_stride_and_n_examples(tmp_path: Path) -> None:
    written = write_cifar_python(tmp_path)
    dataset, _ = load_dataset(DatasetSpec(manifest=str(written["manifest"]), split="train", stride=3, n_examples=10), root=tmp_path)
    assert dataset.labels.tolist() == written["train"][1][::3][:10].tolist()
    with pytest.raises(DataError, match="exceeds"):
        load_dataset(DatasetSpec(manifest=str(written["manifest"]), split="train", stride=3, n_examples=40), root=tmp_path)


@pytest.mark.parametrize("batch", ["../outside/test_batch", "/tmp/test_batch", "cifar-10-batches-py/unlisted"])
def test_split_files_stay_inside_the_root_and_are_verified(tmp_path: Path, batch: str) -> None:
    """A split's options.files is read by the loader: it may neither leave the root nor name a file the
    manifest does not list (and so never verified)."""
    import yaml

    written = write_cifar_python(tmp_path / "root")
    outside = tmp_path / "root" / "cifar-10-batches-py" / "unlisted"
    outside.write_bytes((written["folder"] / "test_batch").read_bytes())
    manifest = yaml.safe_load(Path(written["manifest"]).read_text())
    manifest["splits"]["test"]["options"]["files"] = [batch]
    path = write_manifest(tmp_path / "bad.yaml", manifest)
    with pytest.raises(DataError, match="splits.test.options.files"):
        load_dataset(DatasetSpec(manifest=str(path), split="test"), root=tmp_path / "root")
