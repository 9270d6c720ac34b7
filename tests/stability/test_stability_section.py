"""The ``stability`` and ``calibration`` sections end to end, and released CIFAR-10-P style files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from robench._errors import ConfigError, DataError
from robench.calibration import expected_calibration_error
from robench.context import EvalContext
from robench.data import load_dataset
from robench.models import load_model
from robench.registry import registry
from robench.runner import evaluate
from robench.stability.params import sequence_params
from robench.threat_model import DatasetSpec, StabilitySpec
from tests.conftest import QuadrantNet, write_npz_dataset
from tests.stability.test_flip_metrics import _flip_brute_force, _t5d_brute_force


@pytest.fixture
def tiny_run(tmp_path: Path) -> tuple:
    manifest = write_npz_dataset(tmp_path / "data", n=16)
    evaluations: dict = {
        "attacks": [{"name": "fgsm"}],
        "stability": {
            "perturbations": ["rotate", "gaussian_noise", "translate"],
            "difficulty": 2,
            "baseline": {"rotate": 0.2, "gaussian_noise": 0.1, "translate": 0.4},
        },
        "calibration": {"temperature_scaling": True, "holdout_fraction": 0.25},
    }
    if "corruptions" in registry.names("evaluation"):
        evaluations["corruptions"] = {"corruptions": ["gaussian_noise"], "severities": [1, 3]}
    threat = {
        "schema_version": 1,
        "name": "tiny-stability",
        "dataset": {"manifest": str(manifest), "split": "test"},
        "adversary": {"norm": "Linf", "eps": 0.1},
        "evaluations": evaluations,
    }
    path = tmp_path / "threat.yaml"
    path.write_text(yaml.safe_dump(threat))
    torch.manual_seed(0)
    model = QuadrantNet()
    with torch.no_grad():
        model.scale.fill_(4.0)  # less confident than the default, so that calibration is not trivial
    results = evaluate(model, path, data_root=tmp_path / "data", out_dir=tmp_path / "out", device="cpu", progress=False)
    data, _ = load_dataset(DatasetSpec(manifest=str(manifest)), root=tmp_path / "data")
    return results, model, data


def test_end_to_end_through_the_runner(tiny_run: tuple) -> None:
    results, model, data = tiny_run
    assert results.status == "success"
    assert {e.key: e.status for e in results.evaluations}["stability"] == "success"
    x, y = data.load(slice(0, len(data)))

    # Rotation is deterministic: recompute its frames and predictions independently.
    frames = registry.get("perturbation", "rotate")(x, torch.Generator(), params=sequence_params("rotate", "cifar10"))
    with torch.no_grad():
        logits = model(frames.reshape(-1, *frames.shape[2:])).reshape(16, frames.shape[1], -1)
    fp = _flip_brute_force(logits.argmax(2).numpy(), noise=False, difficulty=2)
    t5d = _t5d_brute_force(logits.numpy(), noise=False, difficulty=2)
    record = results.records("stability", "flip_probability")
    by_name = {r.condition["perturbation"]: r for r in record}
    assert by_name["rotate"].value == pytest.approx(fp, abs=1e-12)
    assert by_name["rotate"].n == 16 and by_name["rotate"].ci_low <= fp <= by_name["rotate"].ci_high
    t5d_record = next(r for r in results.records("stability", "top5_distance") if r.condition["perturbation"] == "rotate")
    assert t5d_record.value == pytest.approx(t5d, abs=1e-12)
    rates = {r.condition["perturbation"]: r.value for r in results.records("stability", "flip_rate")}
    assert rates["rotate"] == pytest.approx(fp / 0.2)
    mean_rate = results.records("stability", "mean_flip_rate")[0].value
    assert mean_rate == pytest.approx(np.mean([rates[n] for n in ("rotate", "gaussian_noise", "translate")]))
    # mFP and mT5D: the plain means over the three perturbations of their per-perturbation values
    # (rotate's checked against the brute force above)
    for metric in ("flip_probability", "top5_distance"):
        values = [r.value for r in results.records("stability", metric)]
        assert len(values) == 3 and len(set(values)) > 1  # informative: a max or a single value would differ
        assert results.records("stability", f"mean_{metric}")[0].value == pytest.approx(np.mean(values), abs=1e-12)
    artifacts = results.evaluation("stability").artifacts
    strip = artifacts["perturbations"][0]["strip"]
    assert strip["images"][0].startswith("data:image/png;base64,") and len(strip["predictions"]) == 31

    # Calibration: clean ECE from the model's own probabilities; attacked and corrupted conditions present.
    with torch.no_grad():
        probs = model(x).softmax(1)
    clean = next(r for r in results.records("calibration", "ece") if r.condition == {"condition": "clean"})
    assert clean.value == pytest.approx(expected_calibration_error(probs, y), abs=1e-6)
    conditions = {r.condition["condition"] for r in results.records("calibration", "ece")}
    assert "attack" in conditions
    if "corruptions" in registry.names("evaluation"):
        assert "corruption" in conditions
    assert results.evaluation("calibration").artifacts["temperature"]["n_fit"] == 4


def test_report_sections_render(tiny_run: tuple) -> None:
    from robench.report.render import render_html
    from robench.report.sections import calibration as calibration_section
    from robench.report.sections import stability as stability_section

    results = tiny_run[0]
    stability = stability_section.build(results)
    calibration = calibration_section.build(results)
    assert stability is not None and calibration is not None
    assert [row["perturbation"] for row in stability["rows"]] == ["rotate", "gaussian_noise", "translate"]
    html = render_html(results)
    assert "Flip probability" in html and "Reliability" in html and "ECE" in html


def _pixel_model(num_classes: int = 4) -> nn.Module:
    class MeanQuadrants(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 6 * nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), 2).flatten(1)

    return MeanQuadrants()


def _released(tmp_path: Path, frames: int = 6) -> tuple[Path, dict[str, np.ndarray]]:
    """A CIFAR-10-P style release: rotate.npy and gaussian_noise_2.npy, uint8 (N, T, 8, 8, 3)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "home" / "tinyp"
    folder.mkdir(parents=True)
    arrays, files = {}, []
    for name in ("rotate.npy", "gaussian_noise_2.npy"):
        array = rng.integers(0, 256, size=(10, frames, 8, 8, 3), dtype=np.uint8)
        array[:, 1::2] = array[:, :1]  # repeated frames, so that flips are neither all nor none
        np.save(folder / name, array)
        raw = (folder / name).read_bytes()
        files.append({"path": name, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
        arrays[name] = array
    manifest = {
        "schema_version": 1, "name": "tinyp", "format": "cifar_p", "directory": "tinyp", "num_classes": 4,
        "input_shape": [3, 8, 8], "files": files, "splits": {"test": {"n": 10}},
    }  # fmt: skip
    path = tmp_path / "tinyp.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path, arrays


def test_released_sequences_match_brute_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, arrays = _released(tmp_path)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "home"))
    handle = load_model(_pixel_model(), device="cpu", num_classes=4)
    spec = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["rotate", "gaussian_noise"], difficulty=2, n_examples=7)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("stability")
    out = registry.get("evaluation", "stability")(handle, None, None, spec, ctx)  # type: ignore[arg-type]
    values = {r.condition["perturbation"]: r.value for r in out.records if r.name == "flip_probability"}
    for name, file, noise in (("rotate", "rotate.npy", False), ("gaussian_noise", "gaussian_noise_2.npy", True)):
        frames = torch.from_numpy(arrays[file][:7]).permute(0, 1, 4, 2, 3).float() / 255
        with torch.no_grad():
            predictions = _pixel_model()(frames.reshape(-1, 3, 8, 8)).reshape(7, 6, -1).argmax(2)
        assert values[name] == pytest.approx(_flip_brute_force(predictions.numpy(), noise, 2), abs=1e-12)
    assert all(r.n == 7 for r in out.records if r.name == "flip_probability")

    (tmp_path / "home" / "tinyp" / "rotate.npy").write_bytes(b"tampered")
    ctx.begin("stability")
    with pytest.raises(DataError, match="rotate.npy"):
        registry.get("evaluation", "stability")(handle, None, None, spec, ctx)  # type: ignore[arg-type]


def test_released_sequences_are_read_from_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--data-home`` (the context's data_home) locates the release; $ROBENCH_DATA is not needed."""
    manifest, _ = _released(tmp_path)
    monkeypatch.delenv("ROBENCH_DATA", raising=False)
    handle = load_model(_pixel_model(), device="cpu", num_classes=4)
    spec = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["rotate"], n_examples=4)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False, data_home=str(tmp_path / "home"))
    ctx.begin("stability")
    out = registry.get("evaluation", "stability")(handle, None, None, spec, ctx)  # type: ignore[arg-type]
    assert [r.n for r in out.records if r.name == "flip_probability"] == [4]


def test_released_file_not_listed_and_bad_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, _ = _released(tmp_path)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "home"))
    handle = load_model(_pixel_model(), device="cpu", num_classes=4)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("stability")
    spec = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["scale"], n_examples=4)
    with pytest.raises(DataError, match="does not list scale.npy"):
        registry.get("evaluation", "stability")(handle, None, None, spec, ctx)  # type: ignore[arg-type]
    from pydantic import ValidationError

    for value in (0.0, 1.5, float("nan")):  # a flip probability above 1 was taken; validate now refuses them too
        with pytest.raises(ValidationError, match="baseline"):
            StabilitySpec(perturbations=["rotate"], baseline={"rotate": value})


def test_released_sequences_follow_the_run_n_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the section's own n_examples, as many sequences as the run evaluates (dataset.n_examples / --n-examples)."""
    manifest, _ = _released(tmp_path)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "home"))
    handle = load_model(_pixel_model(), device="cpu", num_classes=4)
    data, _ = load_dataset(DatasetSpec(manifest=str(write_npz_dataset(tmp_path / "clean")), n_examples=3), root=tmp_path / "clean")
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("stability")
    spec = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["rotate", "gaussian_noise"], difficulty=2)
    out = registry.get("evaluation", "stability")(handle, data, None, spec, ctx)  # type: ignore[arg-type]
    assert [r.n for r in out.records if r.name == "flip_probability"] == [3, 3]
    assert out.resolved["n_examples"] == 3  # how many it evaluated, not None ("the run's")
    ctx.begin("stability")
    own = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["rotate"], n_examples=5)
    out = registry.get("evaluation", "stability")(handle, data, None, own, ctx)  # type: ignore[arg-type]
    assert [r.n for r in out.records if r.name == "flip_probability"] == [5] and out.resolved["n_examples"] == 5
    ctx.begin("stability")
    with pytest.raises(DataError, match="11 sequences asked for, the file has 10"):
        registry.get("evaluation", "stability")(handle, data, None, own.model_copy(update={"n_examples": 11}), ctx)  # type: ignore[arg-type]


def test_partial_release_serves_the_perturbations_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the declared perturbation's file is verified: a release without gaussian_noise_2.npy runs rotate."""
    manifest, _ = _released(tmp_path)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "home"))
    (tmp_path / "home" / "tinyp" / "gaussian_noise_2.npy").unlink()
    handle = load_model(_pixel_model(), device="cpu", num_classes=4)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("stability")
    spec = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["rotate"], n_examples=4)
    out = registry.get("evaluation", "stability")(handle, None, None, spec, ctx)  # type: ignore[arg-type]
    assert [r.n for r in out.records if r.name == "flip_probability"] == [4]
    ctx.begin("stability")
    noise = StabilitySpec(source="released", released_manifest=str(manifest), perturbations=["gaussian_noise"], difficulty=2, n_examples=4)
    with pytest.raises(DataError, match="gaussian_noise_2.npy: file missing"):
        registry.get("evaluation", "stability")(handle, None, None, noise, ctx)  # type: ignore[arg-type]


def test_no_flip_at_all_gets_an_exact_upper_bound_not_a_point() -> None:
    """A percentile bootstrap of 100 zeros is [0, 0]; the bound must keep room for unseen flips."""
    from scipy.stats import beta

    from robench.stability.evaluate import BOOTSTRAP_INTERVAL, mean_interval

    generator = torch.Generator().manual_seed(0)
    (low, high), method = mean_interval(torch.zeros(100), generator, 1.0)
    assert low == 0.0 and high == pytest.approx(beta.ppf(0.975, 1, 100)) and "exact bound" in method  # 0.0362
    (low, high), _ = mean_interval(torch.zeros(3, 100), generator, 15.0)  # mT5D over 3 perturbations
    assert high == pytest.approx(15 * beta.ppf(0.975, 1, 100))
    (low, high), _ = mean_interval(torch.ones(50), generator, 1.0)
    assert high == 1.0 and low == pytest.approx(beta.ppf(0.025, 50, 1))
    values = torch.zeros(100)
    values[:7] = 0.5
    (low, high), method = mean_interval(values, generator, 1.0)
    assert method.startswith(BOOTSTRAP_INTERVAL) and low < 0.035 < high


def test_a_constant_nonzero_value_or_one_sequence_gets_an_exact_bound_not_a_point() -> None:
    """Exactly one flip in each of 40 brightness sweeps (every value 1/30): the bootstrap gives
    [1/30, 1/30]. With u the Clopper-Pearson bound for 0 of 40 sequences differing, the mean lies in
    [c (1 - u), c (1 - u) + M u]; one sequence is the same case with n = 1."""
    from scipy.stats import beta

    from robench.stability.evaluate import mean_interval

    generator = torch.Generator().manual_seed(0)
    c, u = 1 / 30, beta.ppf(0.975, 1, 40)
    (low, high), method = mean_interval(torch.full((40,), c), generator, 1.0)
    assert (low, high) == (pytest.approx(c * (1 - u)), pytest.approx(c * (1 - u) + u)) and "exact bound" in method
    assert low < c < high and high > 0.11  # the bootstrap claimed [0.0333, 0.0333]
    (low, high), method = mean_interval(torch.full((3, 40), 2.0), generator, 18.0)  # mT5D of constant sequences
    assert high == pytest.approx(2 * (1 - u) + 18 * u) and "exact bound" in method
    (low, high), _ = mean_interval(torch.tensor([0.2]), generator, 1.0)
    assert low == pytest.approx(0.2 * 0.025) and high == pytest.approx(0.2 * 0.025 + 0.975)


def test_generated_sequences_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    """Each sequence has its own random stream: batch size (CLI defaults differ by device) leaves
    every flip probability, and the strip of sequence 0, unchanged."""
    from robench.data.base import ArrayDataset

    generator = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.rand(12, 1, 8, 8, generator=generator), torch.arange(12) % 4, 4)
    model = QuadrantNet()
    with torch.no_grad():
        model.scale.fill_(2.0)
    handle = load_model(model, device="cpu")
    spec = StabilitySpec(perturbations=("gaussian_noise", "speckle_noise", "rotate"))
    seen = []
    for batch_size in (1, 5, 12):
        ctx = EvalContext(device=torch.device("cpu"), batch_size=batch_size, progress=False, seed=4)
        ctx.begin("stability")
        out = registry.get("evaluation", "stability")(handle, data, None, spec, ctx)
        strips = [s["strip"]["images"] for s in out.artifacts["perturbations"]] if "perturbations" in out.artifacts else []
        seen.append(([(r.name, r.condition, r.value) for r in out.records], strips))
    assert seen[0] == seen[1] == seen[2]


def test_few_flipping_sequences_still_get_95_percent_coverage() -> None:
    """A stable model: 2% of 100 sequences are unstable (flip probability Binomial(30, q)/30 with
    q ~ Beta(2, 8)). The percentile bootstrap alone covered the true mean FP in 90% of 300 test sets
    (it only sees the 2 or so sequences that flipped); widened, at least 95%."""
    import numpy as np

    from robench.stability.evaluate import mean_interval

    rng = np.random.default_rng(5)
    truth, covered = 0.02 * 0.2, 0
    for rep in range(300):
        q = rng.beta(2, 8, size=100) * (rng.random(100) < 0.02)
        values = torch.tensor(rng.binomial(30, q) / 30)
        (low, high), _ = mean_interval(values, torch.Generator().manual_seed(rep), 1.0)
        covered += low <= truth <= high
    assert covered / 300 >= 0.95



def test_a_few_sequences_flipping_on_every_frame_still_get_95_percent_coverage() -> None:
    """Many sequences flip once and a few on every frame (images near a decision boundary): with 50
    or more nonzero sequences the bootstrap was used alone and covered 87% (interval below the truth
    in 12%). 100 sequences of 30 comparisons: 55% flip once, 2% on every frame."""
    import numpy as np

    from robench.stability.evaluate import mean_interval

    rng = np.random.default_rng(0)
    truth, covered, reps = 0.55 / 30 + 0.02, 0, 400
    for rep in range(reps):
        u = rng.random(100)
        values = np.where(u < 0.55, 1 / 30, 0.0) + np.where(u > 0.98, 1.0, 0.0)
        (low, high), _ = mean_interval(torch.tensor(values), torch.Generator().manual_seed(rep), 1.0)
        covered += low <= truth <= high
    assert covered / reps >= 0.95


def _stability_page(spec: StabilitySpec, n: int = 12) -> tuple[str, list]:
    """The report of a stability evaluation of a small generated run (in the strong fixture)."""
    from robench.data.base import ArrayDataset
    from robench.report.render import render_html
    from robench.results import EvaluationResult
    from tests.report import fixtures

    generator = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.rand(n, 1, 8, 8, generator=generator), torch.arange(n) % 4, 4)
    model = QuadrantNet()
    with torch.no_grad():
        model.scale.fill_(2.0)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=n, progress=False, seed=4)
    ctx.begin("stability")
    out = registry.get("evaluation", "stability")(load_model(model, device="cpu"), data, None, spec, ctx)
    results = fixtures.strong()
    results.evaluations.append(EvaluationResult(key="stability", section="stability", name="stability", status="success",
                                                records=out.records, artifacts=out.artifacts, resolved=out.resolved))  # fmt: skip
    html = render_html(results)
    return html[html.index('<h2 id="stability"'):][: html[html.index('<h2 id="stability"'):].index("<table")], out.records


def test_the_report_describes_the_intervals_that_are_computed() -> None:
    """The text said 'percentile bootstraps over sequences' (with an exact Clopper-Pearson bound for
    constant rows); the intervals are the hull of that bootstrap and the Fay-Feuer gamma interval."""
    import html as html_lib

    from robench.stability.evaluate import BOOTSTRAP_INTERVAL, bootstrap_mean_interval, mean_interval
    from robench.stats import weighted_sum_interval

    text, records = _stability_page(StabilitySpec(perturbations=("gaussian_noise", "rotate")))
    text = html_lib.unescape(" ".join(text.split()))
    assert "Intervals are 95% percentile bootstraps over sequences" not in text
    assert "smallest interval holding both a percentile bootstrap of the mean over sequences (1000 resamples)" in text
    assert "Fay-Feuer gamma interval for a mean of values bounded by the metric's largest value" in text
    assert "[c (1 − u), c (1 − u) + max · u]" in text and "divided by the baseline" in text
    methods = {r.interval for r in records if r.ci_low is not None}
    assert methods <= {f"{BOOTSTRAP_INTERVAL} joined with the Fay-Feuer gamma interval"} | {m for m in methods if m.startswith("exact bound")}
    # what the text says is what is computed: the hull of the two intervals
    values = torch.tensor([0.0] * 90 + [0.1, 0.3, 0.0, 0.5, 0.2, 0.0, 0.7, 0.1, 0.0, 0.9], dtype=torch.float64)
    (low, high), method = mean_interval(values, torch.Generator().manual_seed(1), 1.0)
    boot = bootstrap_mean_interval(values, torch.Generator().manual_seed(1))
    gamma = weighted_sum_interval(values.tolist(), 1.0)
    assert (low, high) == (min(boot[0], gamma[0]), max(boot[1], gamma[1])) and "Fay-Feuer" in method
