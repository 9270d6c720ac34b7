"""The ``corruptions`` evaluation on a tiny model and dataset; the mCE formulas by hand."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from robench.stats import clopper_pearson
import torch

from robench._errors import DataError
from robench.context import EvalContext
from robench.corruptions import TABLES
from robench.corruptions.metrics import corruption_error, mean_corruption_errors, relative_corruption_error
from robench.corruptions.params import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS
from robench.data.base import ArrayDataset
from robench.models.wrapper import ModelHandle, Normalize, PassCounter, PixelModel
from robench.registry import registry
from robench.results import ModelInfo
from robench.threat_model import CalibrationSpec, CorruptionsSpec, DatasetSpec, Evaluations, StabilitySpec, ThreatModel
from tests.conftest import QuadrantNet


def _handle(device: str = "cpu") -> ModelHandle:
    counter = PassCounter()
    module = PixelModel(QuadrantNet(), Normalize([0.0], [1.0]), counter).eval().to(device)
    return ModelHandle(module=module, info=ModelInfo(source="test", format="test", num_classes=4), device=torch.device(device), counter=counter)


def _data(n: int = 16) -> ArrayDataset:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = 0.2 * torch.rand(n, 1, 16, 16, generator=generator)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 0.7
    return ArrayDataset(x, y, 4)


THREAT = ThreatModel(name="t", dataset=DatasetSpec(manifest="unused"))
# Calibration under corruptions declared: the sweep hands its cells' probabilities on.
CALIBRATED = ThreatModel(name="t", dataset=DatasetSpec(manifest="unused"), evaluations=Evaluations(calibration=CalibrationSpec()))


def test_generated_sweep_records_and_hand_offs() -> None:
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "contrast"), severities=(1, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), CALIBRATED, spec, ctx)
    acc = {(r.condition["corruption"], r.condition["severity"]): r for r in out.records if r.name == "accuracy"}
    assert set(acc) == {("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)}
    for (name, severity), record in acc.items():
        hand = ctx.shared[f"corruptions/{name}/{severity}"]
        assert hand["probs"].shape == (16, 4) and torch.equal(hand["labels"], _data().labels)
        expected = float((hand["probs"].argmax(1) == hand["labels"]).float().mean())
        assert record.value == pytest.approx(expected) and record.n == 16 and record.ci_low <= record.value <= record.ci_high
    # Independent recomputation of a random cell: the 16 examples are one block of draws, whatever the batches.
    model = _handle()
    x, y = _data().load(slice(0, 16))
    xc = registry.get("corruption", "gaussian_noise")(x, 5, TABLES["cifar10"], ctx.generator("gaussian_noise/5", "block", 0))
    assert acc[("gaussian_noise", 5)].value == int((model.predict_logits(xc).argmax(1) == y).sum()) / 16
    mean = next(r for r in out.records if r.name == "mean_corruption_accuracy")
    assert mean.value == pytest.approx(sum(r.value for r in acc.values()) / 4)
    assert mean.n == 16  # the 16 images are the independent units; the 4 cells share them
    # wider than the (wrong) pooled interval over 64 predictions
    pooled = clopper_pearson(round(mean.value * 64), 64)
    assert mean.ci_high - mean.ci_low >= pooled[1] - pooled[0] - 1e-9
    assert out.resolved["table"] == "cifar10"
    assert out.artifacts["examples"]["png_base64"] and out.artifacts["examples"]["columns"] == ["clean", "s1", "s5"]
    assert not any(r.name == "mce" for r in out.records)  # not an ImageNet-C sweep: a note on the scope, not a warning
    assert out.artifacts["ce_not_computed"].startswith("CE/mCE are normalised by AlexNet") and not any("AlexNet" in w for w in out.warnings)


def test_mean_corruption_accuracy_leaves_the_extras_out_and_says_what_it_averaged() -> None:
    """CIFAR-10-C's headline is the mean over the 15 benchmark corruptions: a declared extra keeps
    its own rows (as in mCE) instead of moving the mean, and the record names what it averaged."""
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "contrast", "speckle_noise"), severities=(1, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    cells = {(r.condition["corruption"], r.condition["severity"]): r.value for r in out.records if r.name == "accuracy"}
    mean = next(r for r in out.records if r.name == "mean_corruption_accuracy")
    benchmark = [v for (name, _), v in cells.items() if name != "speckle_noise"]
    assert mean.value == pytest.approx(sum(benchmark) / 4) and mean.condition == {"benchmark_corruptions": 2, "severities": 2}
    extras = CorruptionsSpec(corruptions=("speckle_noise",), severities=(3,))
    ctx.begin("corruptions")
    only = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, extras, ctx)
    mean = next(r for r in only.records if r.name == "mean_corruption_accuracy")
    assert mean.condition == {"benchmark_corruptions": 0, "severities": 1, "extra_corruptions": 1}


def test_generated_cells_do_not_depend_on_the_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example's draws follow its fixed block, so batch size (CLI defaults differ by device), an
    out-of-memory back-off or sharding leave every corrupted image, and so every number, unchanged;
    and the report's grid shows example 0 exactly as it was scored."""
    from robench.corruptions import sweep

    monkeypatch.setattr(sweep, "RNG_BLOCK", 8)
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "glass_blur", "fog"), severities=(3, 5))
    data = _data(40)
    seen: dict[int, list] = {}
    for batch_size in (5, 8, 12, 40):
        ctx = EvalContext(device=torch.device("cpu"), batch_size=batch_size, progress=False, seed=3)
        ctx.begin("corruptions")
        out = registry.get("evaluation", "corruptions")(_handle(), data, THREAT, spec, ctx)
        seen[batch_size] = [(r.name, r.condition, r.value) for r in out.records] + [out.artifacts["examples"]["png_base64"]]
    assert seen[5] == seen[8] == seen[12] == seen[40]
    # the grid's fog s5 tile is example 0 corrupted with block 0's draws, as scored
    ctx = EvalContext(device=torch.device("cpu"), batch_size=40, progress=False, seed=3)
    ctx.begin("corruptions")
    x, _ = data.load(range(8))
    scored = registry.get("corruption", "fog")(x, 5, TABLES["cifar10"], ctx.generator("fog/5", "block", 0))[:1]
    from robench.corruptions._examples import example_grid

    cells = {(name, severity): scored if (name, severity) == ("fog", 5) else torch.zeros_like(scored)
             for name in spec.corruptions for severity in spec.severities}  # fmt: skip
    mine = example_grid(x[:1], list(spec.corruptions), list(spec.severities), cells)["png_base64"]
    assert mine != seen[40][-1]  # the other tiles differ; now check the fog s5 tile itself by decoding
    import base64

    from torchvision.io import decode_png

    def tile(png: str, row: int, col: int) -> torch.Tensor:
        image = decode_png(torch.frombuffer(bytearray(base64.b64decode(png)), dtype=torch.uint8))
        side = image.shape[1] // 3
        return image[:, row * side : (row + 1) * side, col * side : (col + 1) * side]

    assert torch.equal(tile(mine, 2, 2), tile(seen[40][-1], 2, 2))


class OnGridNet(torch.nn.Module):
    """Class 1 for an image on the 8-bit grid (every ``255 x`` an integer), else class 0: scores an
    image as quantised or not, so a cell's accuracy is the share of its images that were quantised."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = x * 255
        on_grid = ((levels - levels.round()).abs() < 1e-4).flatten(1).all(dim=1).float()
        return 10 * torch.stack((1 - on_grid, on_grid), dim=1)


@pytest.mark.parametrize(("quantize", "expected"), [("none", 0.0), ("uint8", 1.0), ("jpeg85", 1.0)])
def test_the_sweep_classifies_the_images_quantised_as_declared_and_records_it(quantize: str, expected: float) -> None:
    counter = PassCounter()
    module = PixelModel(OnGridNet(), Normalize([0.0], [1.0]), counter).eval()
    handle = ModelHandle(module=module, info=ModelInfo(source="test", format="test", num_classes=2), device=torch.device("cpu"), counter=counter)
    x, _ = _data().load(slice(0, 16))
    data = ArrayDataset((x * 255).floor() / 255, torch.ones(16, dtype=torch.long), 2)  # clean images on the grid
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "contrast"), severities=(3,), quantize=quantize)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(handle, data, THREAT, spec, ctx)
    assert [r.value for r in out.records if r.name == "accuracy"] == [expected, expected]
    assert out.resolved["quantize"] == quantize


def test_a_uint8_sweep_gives_the_accuracy_of_numpys_uint8_images() -> None:
    """The cell's accuracy recomputed by hand: the same draws, cast as make_cifar_c.py casts (np.uint8)."""
    spec = CorruptionsSpec(corruptions=("gaussian_noise",), severities=(5,), quantize="uint8")
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    model = _handle()
    x, y = _data().load(slice(0, 16))
    xc = registry.get("corruption", "gaussian_noise")(x, 5, TABLES["cifar10"], ctx.generator("gaussian_noise/5", "block", 0))
    stored = torch.from_numpy(np.uint8(255 * xc.numpy()).astype(np.float32) / 255)
    cell = next(r for r in out.records if r.name == "accuracy")
    assert cell.value == int((model.predict_logits(stored).argmax(1) == y).sum()) / 16
    assert out.resolved["quantize"] == "uint8"


@pytest.mark.parametrize("section", ["corruptions", "stability"])
@pytest.mark.parametrize("rng", ["cpu", "device"])
def test_rng_setting_chooses_the_generator_device(rng: str, section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    original = EvalContext.generator

    def spy(self: EvalContext, *tags: object, device: object = None) -> torch.Generator:
        asked.append((tags[0], device))
        return original(self, *tags, device=device)

    monkeypatch.setattr(EvalContext, "generator", spy)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin(section)
    if section == "corruptions":
        spec, stage = CorruptionsSpec(corruptions=("gaussian_noise",), severities=(2,), rng=rng), "gaussian_noise/2"
    else:
        spec, stage = StabilitySpec(perturbations=("gaussian_noise",), rng=rng), "gaussian_noise"
    out = registry.get("evaluation", section)(_handle(), _data(), THREAT, spec, ctx)
    batches = [device for tag, device in asked if tag == stage]
    assert batches and batches == [torch.device("cpu") if rng == "device" else None] * len(batches)
    assert out.resolved["random_draws_on"] == "cpu"


@pytest.mark.gpu
def test_rng_on_device_sweep_on_cuda() -> None:
    handle = _handle("cuda")
    results = {}
    for rng in ("cpu", "device"):
        ctx = EvalContext(device=torch.device("cuda"), batch_size=8, progress=False)
        ctx.begin("corruptions")
        spec = CorruptionsSpec(corruptions=("gaussian_noise", "glass_blur"), severities=(5,), rng=rng)
        out = registry.get("evaluation", "corruptions")(handle, _data(), THREAT, spec, ctx)
        assert out.resolved["random_draws_on"] == ("cuda" if rng == "device" else "cpu")
        results[rng] = {r.condition["corruption"]: r.value for r in out.records if r.name == "accuracy"}
    # another random stream, the same distribution: this easy task stays easy under either
    for name, value in results["cpu"].items():
        assert abs(results["device"][name] - value) <= 0.25, (name, results)


@pytest.mark.parametrize(
    ("calibration", "handed_off"),
    [(None, False), (CalibrationSpec(conditions=("clean", "attacks")), False), (CalibrationSpec(conditions=("corruptions",)), True)],
    ids=["no-calibration", "calibration-without-corruptions", "calibration-under-corruptions"],
)
def test_cells_are_handed_off_only_to_a_declared_calibration(calibration: CalibrationSpec | None, handed_off: bool) -> None:
    """Each cell's (N, K) probabilities stay in memory until the run ends: only when calibration reads them."""
    threat = ThreatModel(name="t", dataset=DatasetSpec(manifest="unused"), evaluations=Evaluations(calibration=calibration))
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "contrast"), severities=(1, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), threat, spec, ctx)
    assert len([r for r in out.records if r.name == "accuracy"]) == 4
    cells = sorted(k for k in ctx.shared if k.startswith("corruptions/"))
    assert cells == (["corruptions/contrast/1", "corruptions/contrast/5", "corruptions/gaussian_noise/1", "corruptions/gaussian_noise/5"] if handed_off else [])


def test_released_sweep_reads_the_cells_matching_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_matching_cell(manifest: str, corruption: str, severity: int, clean: ArrayDataset, *, clean_manifest: str,
                           root: object = None, data_home: object = None) -> ArrayDataset:
        calls.append((manifest, corruption, severity, len(clean), clean_manifest))
        return _data(8)

    fake = types.ModuleType("robench.data.released")
    fake.load_matching_cell = load_matching_cell  # type: ignore[attr-defined]
    fake.released_provenance = lambda manifest, root=None, data_home=None: {"manifest": manifest}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "robench.data.released", fake)
    spec = CorruptionsSpec(source="released", released_manifest="cifar10c", corruptions=("fog",), severities=(2, 3), n_examples=8)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    assert calls == [("cifar10c", "fog", 2, 8, "unused"), ("cifar10c", "fog", 3, 8, "unused")]
    assert [r.condition for r in out.records if r.name == "accuracy"] == [{"corruption": "fog", "severity": 2}, {"corruption": "fog", "severity": 3}]


class _RowCode(torch.nn.Module):
    """Class 0's logit is the fixture's row pixel (``x[:, 0, 0, 0] * 255``): which rows were read."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = x[:, 0, 0, 0:1] * 255
        return torch.cat([code, torch.zeros(x.shape[0], self.classes - 1)], dim=1)


def test_released_sweep_evaluates_the_strided_clean_examples(tmp_path: Path) -> None:
    """``dataset.stride: 2`` evaluates test examples 0, 2, 4...: each cell must give those rows, not its first ten."""
    from robench.data import load_dataset
    from tests.data.fixtures import write_cifar_c

    home = tmp_path / "home"
    released = write_cifar_c(home / "tiny-cifar10c", n=20)  # found under the data home by its manifest name
    clean_manifest = _clean_npz(tmp_path / "clean", np.zeros((20, 32, 32, 3), np.uint8), released["labels"])
    dataset = DatasetSpec(manifest=str(clean_manifest), stride=2)
    data, _ = load_dataset(dataset, root=tmp_path / "clean")
    threat = ThreatModel(name="t", dataset=dataset, evaluations=Evaluations(calibration=CalibrationSpec()))
    counter = PassCounter()
    module = PixelModel(_RowCode(), Normalize([0.0], [1.0]), counter).eval()
    handle = ModelHandle(module=module, info=ModelInfo(source="t", format="t", num_classes=10), device=torch.device("cpu"), counter=counter)
    spec = CorruptionsSpec(source="released", released_manifest=str(released["manifest"]), corruptions=("fog",), severities=(1, 3))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False, data_home=str(home))
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(handle, data, threat, spec, ctx)
    assert [r.n for r in out.records if r.name == "accuracy"] == [10, 10]
    for severity in (1, 3):
        cell = ctx.shared[f"corruptions/fog/{severity}"]
        assert torch.equal(cell["labels"], data.labels)
        rows = torch.log(cell["probs"][:, 0] / cell["probs"][:, 1]).round().long()  # the logit of class 0 back
        assert rows.tolist() == [(severity - 1) * 20 + row for row in range(0, 20, 2)]
    # which released set was read, and which version of its manifest, is on record
    import hashlib

    provenance = out.resolved["released"]
    assert provenance["manifest_sha256"] == hashlib.sha256(Path(released["manifest"]).read_bytes()).hexdigest()
    assert provenance["root"] == str(home / "tiny-cifar10c")


def test_mce_formulas_by_hand() -> None:
    errors = {s: e for s, e in zip(range(1, 6), (0.5, 0.6, 0.7, 0.8, 0.9))}
    assert corruption_error(errors, 0.8) == pytest.approx(3.5 / (5 * 0.8))
    assert relative_corruption_error(errors, 0.3, 0.8, 0.4345) == pytest.approx((3.5 - 5 * 0.3) / (5 * 0.8 - 5 * 0.4345))
    all_errors = {c: errors for c in ALEXNET_ERRORS}
    summary = mean_corruption_errors(all_errors, clean_error=0.3)
    expected = sum(0.7 / ALEXNET_ERRORS[c] for c in ALEXNET_ERRORS) / 15
    assert summary["mce"] == pytest.approx(expected)
    expected_rel = sum((0.7 - 0.3) / (ALEXNET_ERRORS[c] - ALEXNET_CLEAN_ERROR) for c in ALEXNET_ERRORS) / 15
    assert summary["relative_mce"] == pytest.approx(expected_rel)
    partial = mean_corruption_errors({"fog": errors}, clean_error=None)
    assert partial["mce"] is None and partial["relative_ce"] == {} and set(partial["ce"]) == {"fog"}
    # with a clean error, a partial sweep still has no relative mCE (a mean over the corruptions present is another number)
    partial = mean_corruption_errors({"fog": errors}, clean_error=0.3)
    assert partial["mce"] is None and partial["relative_mce"] is None
    assert partial["relative_ce"] == {"fog": pytest.approx((0.7 - 0.3) / (0.819324 - 0.4345))}


@pytest.mark.parametrize("severities", [(5,), (1,), (1, 2, 3, 4)])
def test_ce_refuses_fewer_than_five_severities(severities: tuple[int, ...]) -> None:
    """AlexNet's baseline is its mean over the five severities: severity 5 alone (or 1 alone) at
    error 0.9 gave the CE (1.015 for gaussian noise) and the mCE (1.164) of 0.9 at every severity."""
    errors = {s: 0.9 for s in severities}
    with pytest.raises(ValueError, match="severities 1..5"):
        corruption_error(errors, ALEXNET_ERRORS["gaussian_noise"])
    with pytest.raises(ValueError, match="severities 1..5"):
        relative_corruption_error(errors, 0.3, ALEXNET_ERRORS["gaussian_noise"], ALEXNET_CLEAN_ERROR)
    with pytest.raises(ValueError, match="severities 1..5"):
        mean_corruption_errors({c: errors for c in ALEXNET_ERRORS}, clean_error=None)


class _Padded1000(torch.nn.Module):
    """QuadrantNet's four logits followed by 996 hopeless ones: an ImageNet-sized label set."""

    def __init__(self) -> None:
        super().__init__()
        self.net = QuadrantNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return torch.cat([logits, torch.full((x.shape[0], 996), -1e4, dtype=logits.dtype, device=logits.device)], dim=1)


def _imagenet_handle() -> ModelHandle:
    counter = PassCounter()
    module = PixelModel(_Padded1000(), Normalize([0.0], [1.0]), counter).eval()
    return ModelHandle(module=module, info=ModelInfo(source="test", format="test", num_classes=1000), device=torch.device("cpu"), counter=counter)


def _imagenet_data() -> ArrayDataset:
    x, y = _data().load(slice(0, 16))
    return ArrayDataset(x, y, 1000)


def test_imagenet_sweep_reports_ce_and_uses_clean_hand_off() -> None:
    spec = CorruptionsSpec(table="imagenet", corruptions=("brightness",), severities=(1, 2, 3, 4, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=16, progress=False)
    data = _imagenet_data()
    ctx.shared["clean"] = {"probs": torch.nn.functional.one_hot(data.labels, 1000).float(), "labels": data.labels}
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_imagenet_handle(), data, THREAT, spec, ctx)
    accs = [r.value for r in out.records if r.name == "accuracy"]
    ce = next(r for r in out.records if r.name == "corruption_error")
    assert ce.value == pytest.approx((1 - sum(accs) / 5) / ALEXNET_ERRORS["brightness"])
    assert ce.n == 16  # examples, not the 80 predictions
    rce = next(r for r in out.records if r.name == "relative_corruption_error")
    assert rce.value == pytest.approx((1 - sum(accs) / 5 - 0.0) / (ALEXNET_ERRORS["brightness"] - ALEXNET_CLEAN_ERROR))
    assert rce.n == 16
    assert out.resolved["clean_error_source"] == "clean section"
    assert any("generated" in w for w in out.warnings)


def _clopper_pearson(k: float, n: int) -> tuple[float, float]:
    """Two-sided 95% Clopper-Pearson bounds of ``k`` (possibly fractional) successes in ``n``, by scipy's beta."""
    from scipy.stats import beta

    low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


# AlexNet's mean errors over the five severities on ImageNet-C (Hendrycks & Dietterich 2019; AugMix's
# ALEXNET_ERR, from hendrycks/robustness) and its clean error, restated from ../shared/REFERENCE.md:
# the denominators of CE and relative CE, typed in here rather than read from robench.
PAPER_ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}  # fmt: skip
PAPER_ALEXNET_CLEAN_ERROR = 0.4345


def test_alexnet_baselines_are_the_papers() -> None:
    """A typo in one denominator moved that CE, mCE and every relative CE, and every other test read it back."""
    assert ALEXNET_ERRORS == PAPER_ALEXNET_ERRORS
    assert ALEXNET_CLEAN_ERROR == PAPER_ALEXNET_CLEAN_ERROR


def test_mce_interval_over_examples() -> None:
    """mCE and CE intervals: the mean-score interval over examples, by an independent recomputation.
    CE_c, relative CE_c and relative mCE by the paper's formulas with the paper's AlexNet errors and a
    clean error measured here; a declared extra (speckle noise) stays out of CE and mCE."""
    spec = CorruptionsSpec(table="imagenet", corruptions=(*ALEXNET_ERRORS, "speckle_noise"), severities=(1, 2, 3, 4, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=16, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_imagenet_handle(), _imagenet_data(), CALIBRATED, spec, ctx)
    per_cell = {c: [ctx.shared[f"corruptions/{c}/{s}"] for s in range(1, 6)] for c in ALEXNET_ERRORS}
    errors = {c: torch.stack([(h["probs"].argmax(1) != h["labels"]).double() for h in cells]).mean(0) for c, cells in per_cell.items()}
    mce = next(r for r in out.records if r.name == "mce")
    expected = sum(float(e.mean()) / PAPER_ALEXNET_ERRORS[c] for c, e in errors.items()) / 15
    assert mce.value == pytest.approx(expected) and mce.n == 16
    # every example's score (1/15) sum_c e_c / A_c lies in [0, 1 / min A]: the interval of the scaled scores
    floor = min(PAPER_ALEXNET_ERRORS.values())
    scores = sum(e * floor / PAPER_ALEXNET_ERRORS[c] for c, e in errors.items()) / 15
    low, high = _clopper_pearson(float(scores.sum()), 16)
    assert mce.ci_low == pytest.approx(low / floor) and mce.ci_high == pytest.approx(high / floor)
    assert mce.ci_low <= mce.value <= mce.ci_high
    ce = {r.condition["corruption"]: r for r in out.records if r.name == "corruption_error"}
    assert set(ce) == set(PAPER_ALEXNET_ERRORS)  # not speckle noise: AlexNet has no baseline for it
    assert len({round(float(e.mean()), 9) for e in errors.values()}) >= 3  # informative: some corruptions cause errors, unequal ones
    for name, record in ce.items():
        # CE_c = sum_s E_s / sum_s E_s^AlexNet, its interval Clopper-Pearson over the per-example mean errors / A_c
        baseline = PAPER_ALEXNET_ERRORS[name]
        assert record.value == pytest.approx(float(errors[name].mean()) / baseline) and record.n == 16
        low, high = _clopper_pearson(float(errors[name].sum()), 16)
        assert (record.ci_low, record.ci_high) == pytest.approx((low / baseline, high / baseline))
    # relative CE_c = sum_s (E_s - E_clean) / sum_s (E_s^AlexNet - E_clean^AlexNet), the clean error measured here
    x, y = _imagenet_data().load(slice(0, 16))
    clean_error = float((_imagenet_handle().predict_logits(x).argmax(1) != y).double().mean())
    assert out.resolved["clean_error"] == pytest.approx(clean_error) and out.resolved["clean_error_source"] == "measured here"
    relative_ce = {r.condition["corruption"]: r.value for r in out.records if r.name == "relative_corruption_error"}
    gaps = {c: (float(e.mean()) - clean_error) / (PAPER_ALEXNET_ERRORS[c] - PAPER_ALEXNET_CLEAN_ERROR) for c, e in errors.items()}
    assert relative_ce == pytest.approx(gaps)
    relative = next(r for r in out.records if r.name == "relative_mce")
    assert relative.n == 16 and relative.value == pytest.approx(sum(gaps.values()) / 15)
    # accuracy per corruption and the headline mean (the 15 benchmark corruptions, not the extra): means of
    # per-example mean accuracies over the cells, Clopper-Pearson over the 16 examples
    accuracy = {c: 1.0 - e for c, e in errors.items()}
    assert min(float(a.min()) for a in accuracy.values()) < 1.0  # informative: some example fails some cell
    rows = {r.condition["corruption"]: r for r in out.records if r.name == "corruption_accuracy"}
    overall = next(r for r in out.records if r.name == "mean_corruption_accuracy")
    for record, per_example in [*((rows[c], a) for c, a in accuracy.items()), (overall, sum(accuracy.values()) / 15)]:
        assert record.value == pytest.approx(float(per_example.mean())) and record.n == 16
        assert (record.ci_low, record.ci_high) == pytest.approx(_clopper_pearson(float(per_example.sum()), 16))


def test_no_alexnet_normalisation_for_other_label_sets() -> None:
    """A 4-class set corrupted with the ImageNet table (any image > 64 px resolves to it) gets no CE."""
    spec = CorruptionsSpec(table="imagenet", corruptions=("brightness",), severities=(1, 2, 3, 4, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=16, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    assert not any(r.name in {"corruption_error", "relative_corruption_error", "mce"} for r in out.records)
    assert "1000 classes" in out.artifacts["ce_not_computed"]


def _clean_npz(folder: Path, images: np.ndarray, labels: np.ndarray, classes: int = 10) -> Path:
    """An ``npz`` clean set of these images and labels; return its manifest."""
    folder.mkdir(parents=True)
    np.savez(folder / "clean.npz", x=images, y=labels.astype(np.int64))
    side = int(images.shape[1])
    manifest = {"schema_version": 1, "name": "clean", "format": "npz", "num_classes": classes, "input_shape": [3, side, side],
                "files": [{"path": "clean.npz"}], "splits": {"test": {"n": int(len(labels))}}}
    path = folder / "clean.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.mark.parametrize(("classes", "side", "expected"), [(100, 32, "has 10 classes"), (10, 16, r"shape \[3, 32, 32\]")])
def test_released_sweep_refuses_another_label_set_or_image_shape(tmp_path: Path, classes: int, side: int, expected: str) -> None:
    """A CIFAR-10-C set in a 100-class run (or under 16 px data) is refused before any cell runs, naming both manifests."""
    from robench.data import load_dataset
    from tests.data.fixtures import write_cifar_c

    released = write_cifar_c(tmp_path / "home" / "tiny-cifar10c", n=20)
    clean_manifest = _clean_npz(tmp_path / "clean", np.zeros((20, side, side, 3), np.uint8), released["labels"], classes=classes)
    dataset = DatasetSpec(manifest=str(clean_manifest))
    data, _ = load_dataset(dataset, root=tmp_path / "clean")
    spec = CorruptionsSpec(source="released", released_manifest=str(released["manifest"]), corruptions=("fog",), severities=(1,))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False, data_home=str(tmp_path / "home"))
    ctx.begin("corruptions")
    counter = PassCounter()
    module = PixelModel(_RowCode(classes), Normalize([0.0], [1.0]), counter).eval()
    handle = ModelHandle(module=module, info=ModelInfo(source="t", format="t", num_classes=classes), device=torch.device("cpu"), counter=counter)
    with pytest.raises(DataError, match=expected) as caught:
        registry.get("evaluation", "corruptions")(handle, data, ThreatModel(name="t", dataset=dataset), spec, ctx)
    assert str(released["manifest"]) in str(caught.value) and str(clean_manifest) in str(caught.value)
    assert counter.forward == 0


def test_group_means_carry_the_interval_of_the_overall_mean_and_the_report_draws_it() -> None:
    """The per-group bars were bare point estimates beside an overall mean with an interval made the
    same way (per-example mean score over the cells, Clopper-Pearson over examples)."""
    from robench.report.sections.corruptions import build as build_section
    from robench.results import EvaluationResult, Results
    from robench.stats import mean_interval

    spec = CorruptionsSpec(corruptions=("gaussian_noise", "shot_noise", "contrast"), severities=(1, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), CALIBRATED, spec, ctx)
    groups = {r.condition["group"]: r for r in out.records if r.name == "group_corruption_accuracy"}
    assert set(groups) == {"noise", "digital"}
    labels = _data().labels
    for group, names in (("noise", ("gaussian_noise", "shot_noise")), ("digital", ("contrast",))):
        hits = torch.stack([(ctx.shared[f"corruptions/{c}/{s}"]["probs"].argmax(1) == labels).float() for c in names for s in (1, 5)])
        per_example = hits.mean(dim=0)
        assert groups[group].value == pytest.approx(float(per_example.mean())) and groups[group].n == 16
        assert (groups[group].ci_low, groups[group].ci_high) == pytest.approx(mean_interval(per_example.tolist()))
    results = Results.model_construct(dataset=types.SimpleNamespace(input_shape=[1, 16, 16]), evaluations=[
        EvaluationResult(key="corruptions", section="corruptions", name="corruptions", status="success",
                         records=out.records, artifacts=out.artifacts, resolved=out.resolved)])  # fmt: skip
    assert build_section(results)["group_intervals"] is True
