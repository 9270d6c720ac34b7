"""Image-folder formats: ImageNet val (+ class index), ImageNet-C and Tiny-ImageNet-C trees, decoded lazily."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms

from robench._errors import ConfigError, DataError
from robench.data import load_dataset
from robench.data.formats import folders
from robench.data.released import load_corruption_set
from robench.threat_model import DatasetSpec
from tests.data.fixtures import CORRUPTIONS, WNIDS, write_corruption_tree, write_imagenet_val


def _torchvision_reference(path: Path, resize: int, crop: int) -> torch.Tensor:
    pipeline = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor()])
    with Image.open(path) as image:
        return pipeline(image.convert("RGB"))


def test_imagenet_val_matches_torchvision_preprocessing(tmp_path: Path) -> None:
    manifest = write_imagenet_val(tmp_path)
    dataset, info = load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
    assert len(dataset) == 9 and dataset.input_shape == (3, 20, 20) and info.input_shape == [3, 20, 20]
    x, y = dataset.load(range(len(dataset)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and 0 <= float(x.min()) and float(x.max()) <= 1
    for i, path in enumerate(dataset.files):
        assert torch.equal(x[i], _torchvision_reference(path, 24, 20)), path.name
    # Interleaved order: image i of every class (sorted wnids) before image i + 1.
    assert y.tolist() == [0, 1, 2] * 3
    assert [p.parent.name for p in dataset.files[:3]] == list(WNIDS)
    assert "number of entries" in info.verified


def test_threat_model_resize_and_crop_override(tmp_path: Path) -> None:
    manifest = write_imagenet_val(tmp_path)
    dataset, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="val", resize=32, center_crop=28), root=tmp_path)
    x, _ = dataset.load([4])
    assert dataset.input_shape == (3, 28, 28)
    assert torch.equal(x[0], _torchvision_reference(dataset.files[4], 32, 28))


def test_none_turns_the_manifests_resize_and_crop_off(tmp_path: Path) -> None:
    """Images already at the model's size (here 20 px, as the manifest's crop): the manifest's default
    resize 24 + crop 20 would zoom them by 24/20; ``none`` keeps their pixels (a threat model could
    not turn the defaults off)."""
    import numpy as np

    from tests.data.fixtures import write_class_tree

    manifest = write_imagenet_val(tmp_path)
    for path in (tmp_path / "val").rglob("*.JPEG"):
        path.unlink()
    write_class_tree(tmp_path / "val", WNIDS, 3, [(20, 20)], np.random.default_rng(0))
    dataset, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="val", resize="none", center_crop="none"), root=tmp_path)
    x, _ = dataset.load(range(len(dataset)))
    for i, path in enumerate(dataset.files):
        with Image.open(path) as image:
            assert torch.equal(x[i], transforms.ToTensor()(image.convert("RGB"))), path.name
    zoomed, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
    assert not torch.equal(zoomed.load([0])[0], x[:1])
    # only the resize off: the crop of the raw image, as torchvision's CenterCrop alone
    write_imagenet_val(tmp_path / "mixed")
    cropped, _ = load_dataset(DatasetSpec(manifest=str(tmp_path / "mixed" / "manifest.yaml"), split="val", resize="none"), root=tmp_path / "mixed")
    x, _ = cropped.load(range(len(cropped)))
    for i, path in enumerate(cropped.files):
        with Image.open(path) as image:
            assert torch.equal(x[i], transforms.Compose([transforms.CenterCrop(20), transforms.ToTensor()])(image.convert("RGB")))
    # the crop off on images of several sizes: the one-size error names the option
    with pytest.raises(DataError, match="set center_crop"):
        load_dataset(DatasetSpec(manifest=str(tmp_path / "mixed" / "manifest.yaml"), split="val", center_crop="none"),
                     root=tmp_path / "mixed")[0].load(range(9))  # fmt: skip


@pytest.mark.parametrize("value", [0, -3, "off", "22", 22.5, 22.0, True])
def test_a_resize_or_crop_is_a_positive_whole_number_or_none(value) -> None:
    from pydantic import ValidationError

    for key in ("resize", "center_crop"):
        with pytest.raises(ValidationError, match="expected a whole number of pixels > 0, or none"):
            DatasetSpec.model_validate({"manifest": "imagenet", key: value})
        # YAML reads None as the string 'None': it turns the default off, as none does
        assert getattr(DatasetSpec.model_validate({"manifest": "imagenet", key: "None"}), key) == "none"


@pytest.mark.parametrize("value", [2.7, True, "abc", 0])
def test_a_manifests_resize_or_crop_is_checked_by_the_same_rule(tmp_path: Path, value) -> None:
    """A manifest's options.resize of 2.7 was read as 2 px (then a misleading "smaller than the center
    crop" error), true as 1 px, and "abc" ended in a bare int() ValueError (review of 2026-12-05)."""
    import yaml

    manifest = write_imagenet_val(tmp_path)
    for key in ("resize", "center_crop"):
        spec = yaml.safe_load(manifest.read_text())
        spec["options"][key] = value
        manifest.write_text(yaml.safe_dump(spec))
        with pytest.raises(DataError, match=rf"manifest 'tiny-imagenet-val': options.{key}: expected a whole number of pixels > 0"):
            load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
        # the threat model's own value is used instead of the manifest's, which is then not read
        load_dataset(DatasetSpec(manifest=str(manifest), split="val", **{key: 20}), root=tmp_path)
        spec["options"][key] = {"resize": 24, "center_crop": 20}[key]
        manifest.write_text(yaml.safe_dump(spec))


def test_sorted_order_and_class_index_json(tmp_path: Path) -> None:
    manifest = write_imagenet_val(tmp_path, class_index=True)
    dataset, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
    # class_index.json lists WNIDS[2], WNIDS[0], WNIDS[1] as classes 0, 1, 2.
    expected = {WNIDS[2]: 0, WNIDS[0]: 1, WNIDS[1]: 2}
    assert [expected[p.parent.name] for p in dataset.files] == dataset.labels.tolist()
    assert dataset.labels.tolist()[:3] == [0, 1, 2]


@pytest.mark.parametrize("layout", ["list", "mapping"])
def test_class_index_layouts(tmp_path: Path, layout: str) -> None:
    import json

    path = tmp_path / "index.json"
    path.write_text(json.dumps(list(WNIDS) if layout == "list" else {w: i for i, w in enumerate(WNIDS)}))
    assert folders.read_class_index(path) == {w: i for i, w in enumerate(WNIDS)}
    path.write_text(json.dumps({"n1": 0, "n2": 2}))
    with pytest.raises(DataError, match="0..1"):
        folders.read_class_index(path)


def test_decoding_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_imagenet_val(tmp_path)
    decoded: list[str] = []
    real = folders.decode_image

    def counting(path: Path, resize: int | None, crop: int | None, source: str | None = None) -> object:
        decoded.append(path.name)
        return real(path, resize, crop, source)

    monkeypatch.setattr(folders, "decode_image", counting)
    dataset, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="val", n_examples=4), root=tmp_path)
    assert len(decoded) == 1  # the first image, for the input shape
    dataset.load([2, 3])
    assert len(decoded) == 3


def test_missing_images_and_class_folders(tmp_path: Path) -> None:
    manifest = write_imagenet_val(tmp_path)
    next((tmp_path / "val" / WNIDS[1]).iterdir()).unlink()
    with pytest.raises(DataError) as caught:
        load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
    message = str(caught.value)
    assert "val/*/*" in message and "8 entries match" in message and "expects 9" in message and str(manifest) in message


@pytest.mark.parametrize("tree", ["imagenet-val", "imagenet-c"])
def test_stray_files_do_not_count(tmp_path: Path, tree: str) -> None:
    """Finder and archive leftovers (.DS_Store, macOS ._ resource forks, hidden folders, notes) are not
    images: neither the count check nor the loader sees them, so a complete tree still loads."""
    if tree == "imagenet-val":
        manifest, folder = write_imagenet_val(tmp_path), tmp_path / "val"
    else:
        manifest, folder = write_corruption_tree(tmp_path, tiny=False), tmp_path / "fog" / "3"
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "README.txt").write_text("notes")
    (folder / ".ipynb_checkpoints").mkdir()
    first = sorted((folder / WNIDS[0]).iterdir())[0]
    (first.parent / f"._{first.name}").write_bytes(b"\0\5\26\7 AppleDouble")
    (first.parent / ".DS_Store").write_bytes(b"\0")
    (folder / ".Trash" / "n0").mkdir(parents=True)
    (folder / ".Trash" / "n0" / "x.JPEG").write_bytes(b"\0")
    if tree == "imagenet-val":
        dataset, info = load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
        assert len(dataset) == 9 and "number of entries" in info.verified
    else:
        dataset = load_corruption_set(str(manifest), "fog", 3, root=tmp_path)
        assert len(dataset) == 6
    assert not any(p.name.startswith(".") for p in dataset.files)  # type: ignore[attr-defined]
    dataset.load(range(len(dataset)))  # every file it lists decodes


def test_undecodable_image_names_the_file(tmp_path: Path) -> None:
    manifest = write_imagenet_val(tmp_path)
    bad = sorted((tmp_path / "val" / WNIDS[0]).iterdir())[1]
    bad.write_bytes(b"not a jpeg")
    dataset, _ = load_dataset(DatasetSpec(manifest=str(manifest), split="val"), root=tmp_path)
    with pytest.raises(DataError, match=bad.name):
        dataset.load(range(len(dataset)))


def test_crop_larger_than_image(tmp_path: Path) -> None:
    manifest = write_imagenet_val(tmp_path)
    with pytest.raises(DataError, match="smaller than the center crop 40"):
        load_dataset(DatasetSpec(manifest=str(manifest), split="val", resize=24, center_crop=40), root=tmp_path)


@pytest.mark.parametrize("tiny", [False, True], ids=["imagenet-c", "tiny-imagenet-c"])
def test_corruption_trees(tmp_path: Path, tiny: bool) -> None:
    manifest = write_corruption_tree(tmp_path, tiny=tiny)
    side = 64 if tiny else 16
    dataset = load_corruption_set(str(manifest), "fog", 3, root=tmp_path)
    assert len(dataset) == 6 and dataset.input_shape == (3, side, side) and dataset.num_classes == 3
    x, y = dataset.load(slice(0, 6))
    assert x.shape == (6, 3, side, side) and y.tolist() == [0, 1, 2, 0, 1, 2]
    prefix = "Tiny-ImageNet-C/" if tiny else ""
    assert all(str(p.relative_to(tmp_path)).startswith(f"{prefix}fog/3/") for p in dataset.files)
    with Image.open(dataset.files[4]) as image:
        reference = transforms.ToTensor()(image.convert("RGB"))
    assert torch.equal(x[4], reference)
    # Resizing on request (e.g. to feed a 224 px model), and a class-balanced prefix.
    resized = load_corruption_set(str(manifest), CORRUPTIONS[0], 1, root=tmp_path, n_examples=3, resize=32)
    assert resized.input_shape == (3, 32, 32) and resized.labels.tolist() == [0, 1, 2]


def test_corruption_cell_count_mismatch(tmp_path: Path) -> None:
    manifest = write_corruption_tree(tmp_path, tiny=True)
    cell = tmp_path / "Tiny-ImageNet-C" / "fog" / "2" / WNIDS[0]
    next(cell.iterdir()).unlink()
    with pytest.raises(DataError, match="Tiny-ImageNet-C/fog/2/\\*/\\*: 5 entries match, but manifest .* expects 6"):
        load_corruption_set(str(manifest), "fog", 2, root=tmp_path)
    assert len(load_corruption_set(str(manifest), "fog", 1, root=tmp_path)) == 6


def test_resize_refused_for_fixed_size_formats(tmp_path: Path, tiny_manifest: Path) -> None:
    with pytest.raises(ConfigError, match="imagenet_folder"):
        load_dataset(DatasetSpec(manifest=str(tiny_manifest), split="test", center_crop=4), root=tiny_manifest.parent)
