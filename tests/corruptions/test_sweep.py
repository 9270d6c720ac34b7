"""The ``corruptions`` evaluation on a tiny model and dataset; the mCE formulas by hand."""

from __future__ import annotations

import sys
import types

import pytest

from robench.stats import clopper_pearson
import torch

from robench.context import EvalContext
from robench.corruptions import TABLES
from robench.corruptions.metrics import corruption_error, mean_corruption_errors, relative_corruption_error
from robench.corruptions.params import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS
from robench.data.base import ArrayDataset
from robench.models.wrapper import ModelHandle, Normalize, PassCounter, PixelModel
from robench.registry import registry
from robench.results import ModelInfo
from robench.threat_model import CorruptionsSpec, DatasetSpec, StabilitySpec, ThreatModel
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


def test_generated_sweep_records_and_hand_offs() -> None:
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "contrast"), severities=(1, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    acc = {(r.condition["corruption"], r.condition["severity"]): r for r in out.records if r.name == "accuracy"}
    assert set(acc) == {("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)}
    for (name, severity), record in acc.items():
        hand = ctx.shared[f"corruptions/{name}/{severity}"]
        assert hand["probs"].shape == (16, 4) and torch.equal(hand["labels"], _data().labels)
        expected = float((hand["probs"].argmax(1) == hand["labels"]).float().mean())
        assert record.value == pytest.approx(expected) and record.n == 16 and record.ci_low <= record.value <= record.ci_high
    # Independent recomputation of one cell: corrupt with the same per-batch generators and predict.
    model = _handle()
    correct = 0
    for index, start in enumerate(range(0, 16, 8)):
        x, y = _data().load(slice(start, start + 8))
        xc = registry.get("corruption", "contrast")(x, 5, TABLES["cifar10"], ctx.generator("contrast/5", index))
        correct += int((model.predict_logits(xc).argmax(1) == y).sum())
    assert acc[("contrast", 5)].value == correct / 16
    mean = next(r for r in out.records if r.name == "mean_corruption_accuracy")
    assert mean.value == pytest.approx(sum(r.value for r in acc.values()) / 4)
    assert mean.n == 16  # the 16 images are the independent units; the 4 cells share them
    # wider than the (wrong) pooled interval over 64 predictions
    pooled = clopper_pearson(round(mean.value * 64), 64)
    assert mean.ci_high - mean.ci_low >= pooled[1] - pooled[0] - 1e-9
    assert out.resolved["table"] == "cifar10"
    assert out.artifacts["examples"]["png_base64"] and out.artifacts["examples"]["columns"] == ["clean", "s1", "s5"]
    assert not any(r.name == "mce" for r in out.records) and out.warnings  # not an ImageNet-C sweep


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


def test_released_sweep_uses_load_corruption_set(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_corruption_set(manifest: str, corruption: str, severity: int, *, root: object = None, data_home: object = None, n_examples: int | None = None) -> ArrayDataset:
        calls.append((manifest, corruption, severity, n_examples))
        return _data(8)

    fake = types.ModuleType("robench.data.released")
    fake.load_corruption_set = load_corruption_set  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "robench.data.released", fake)
    spec = CorruptionsSpec(source="released", released_manifest="cifar10c", corruptions=("fog",), severities=(2, 3), n_examples=8)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    assert calls == [("cifar10c", "fog", 2, 8), ("cifar10c", "fog", 3, 8)]
    assert [r.condition for r in out.records if r.name == "accuracy"] == [{"corruption": "fog", "severity": 2}, {"corruption": "fog", "severity": 3}]


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


def test_mce_interval_over_examples() -> None:
    """mCE and CE intervals: the mean-score interval over examples, by an independent recomputation."""
    spec = CorruptionsSpec(table="imagenet", corruptions=tuple(ALEXNET_ERRORS), severities=(1, 2, 3, 4, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=16, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_imagenet_handle(), _imagenet_data(), THREAT, spec, ctx)
    per_cell = {c: [ctx.shared[f"corruptions/{c}/{s}"] for s in range(1, 6)] for c in ALEXNET_ERRORS}
    errors = {c: torch.stack([(h["probs"].argmax(1) != h["labels"]).double() for h in cells]).mean(0) for c, cells in per_cell.items()}
    mce = next(r for r in out.records if r.name == "mce")
    expected = sum(float(e.mean()) / ALEXNET_ERRORS[c] for c, e in errors.items()) / 15
    assert mce.value == pytest.approx(expected) and mce.n == 16
    # every example's score (1/15) sum_c e_c / A_c lies in [0, 1 / min A]: the interval of the scaled scores
    floor = min(ALEXNET_ERRORS.values())
    scores = sum(e * floor / ALEXNET_ERRORS[c] for c, e in errors.items()) / 15
    k = float(scores.sum())
    from scipy.stats import beta

    low = beta.ppf(0.025, k, 16 - k + 1) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 1, 16 - k) if k < 16 else 1.0
    assert mce.ci_low == pytest.approx(low / floor) and mce.ci_high == pytest.approx(high / floor)
    assert mce.ci_low <= mce.value <= mce.ci_high
    for record in (r for r in out.records if r.name == "corruption_error"):
        assert record.n == 16 and record.ci_low <= record.value <= record.ci_high
    relative = next(r for r in out.records if r.name == "relative_mce")
    assert relative.n == 16


def test_no_alexnet_normalisation_for_other_label_sets() -> None:
    """A 4-class set corrupted with the ImageNet table (any image > 64 px resolves to it) gets no CE."""
    spec = CorruptionsSpec(table="imagenet", corruptions=("brightness",), severities=(1, 2, 3, 4, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=16, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    assert not any(r.name in {"corruption_error", "relative_corruption_error", "mce"} for r in out.records)
    assert any("1000 classes" in w for w in out.warnings)
