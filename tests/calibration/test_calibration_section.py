"""Bootstrap intervals, temperature scaling and the ``calibration`` section evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from statsmodels.stats.proportion import proportion_confint

from robench._errors import ConfigError
from robench.calibration import calibration_metrics, expected_calibration_error
from robench.calibration.bootstrap import bootstrap_intervals
from robench.calibration.evaluate import INTERVALS
from robench.calibration.temperature import apply_temperature, fit_temperature, logits_from_probs
from robench.context import EvalContext
from robench.registry import registry
from robench.stats import clopper_pearson, weighted_sum_interval
from robench.threat_model import CalibrationSpec


def _sample(n: int, k: int, seed: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits / temperature): calibrated at that temperature."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen, dtype=torch.float64) * 4
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=gen).squeeze(1)
    return logits, labels


def _naive_gaps(probs: np.ndarray, labels: np.ndarray, n_bins: int, adaptive_bins: np.ndarray) -> dict[str, np.ndarray]:
    """Per-cell mean gaps of one (re)sample, one example at a time (numpy, right-closed float32 edges)."""
    n, k = probs.shape
    edges = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
    def bin_of(p: float) -> int:
        return int(min(max(np.searchsorted(edges, np.float32(p), side="left") - 1, 0), n_bins - 1))
    top = np.zeros(n_bins); counts = np.zeros(n_bins); adaptive = np.zeros(n_bins); classwise = np.zeros((k, n_bins))
    for i in range(n):
        c, pred = probs[i].max(), probs[i].argmax()
        g = float(pred == labels[i]) - float(c)
        top[bin_of(c)] += g; counts[bin_of(c)] += 1; adaptive[adaptive_bins[i]] += g
        for j in range(k):
            classwise[j, bin_of(probs[i, j])] += float(labels[i] == j) - float(probs[i, j])
    return {"top": top / n, "counts": counts, "sums": top, "adaptive": adaptive / n, "classwise": classwise / n}


def test_bootstrap_equals_naive_resampling_loop() -> None:
    """Percentile intervals of Brier/NLL and gap-deviation intervals of the binned errors, against a
    loop that recomputes every resample from its examples."""
    n, k, resamples = 120, 4, 40
    logits, labels = _sample(n, k, 0, 4.0)  # badly over-confident: some cells have a certain sign
    probs = logits.softmax(1).float()  # binned in float32 by both paths
    got = bootstrap_intervals(probs, labels, 15, torch.Generator().manual_seed(3), resamples=resamples)
    draws = torch.randint(0, n, (resamples, n), generator=torch.Generator().manual_seed(3)).numpy()
    p, y = probs.numpy(), labels.numpy()
    adaptive_bins = np.empty(n, dtype=int)
    for group, members in enumerate(np.array_split(np.argsort(p.max(1), kind="stable"), 15)):
        adaptive_bins[members] = group
    full = _naive_gaps(p, y, 15, adaptive_bins)
    deviations: dict[str, list[float]] = {"ece": [], "adaptive_ece": [], "classwise_ece": []}
    means: dict[str, list[float]] = {"brier": [], "nll": []}
    resampled: dict[str, list[np.ndarray]] = {"top": [], "adaptive": [], "classwise": []}
    for index in draws:
        res = _naive_gaps(p[index], y[index], 15, adaptive_bins[index])
        for cell in resampled:
            resampled[cell].append(res[cell].ravel() - full[cell].ravel())
        metrics = calibration_metrics(probs[index], labels[index], 15)
        means["brier"].append(metrics.brier)
        means["nll"].append(metrics.nll)
    estimates = {
        "ece": np.abs(full["top"]).sum(), "adaptive_ece": np.abs(full["adaptive"]).sum(),
        "classwise_ece": np.abs(full["classwise"]).sum() / k,
    }  # fmt: skip
    # cells 4 bootstrap standard deviations from 0 enter with their signed deviations, the rest in |.|
    for name, cell, scale in (("ece", "top", 1.0), ("adaptive_ece", "adaptive", 1.0), ("classwise_ece", "classwise", 1.0 / k)):
        deviation, centre = np.array(resampled[cell]), full[cell].ravel()
        certain = np.abs(centre) > 4.0 * deviation.std(axis=0, ddof=1)
        signed = np.abs((deviation[:, certain] * np.sign(centre[certain])).sum(axis=1))
        deviations[name] = list(scale * (signed + np.abs(deviation[:, ~certain]).sum(axis=1)))
        assert name != "ece" or 0 < certain.sum() < certain.size  # both kinds of cells are exercised
    metrics = calibration_metrics(probs, labels, 15)
    # cells whose examples all hit or all missed: the bootstrap cannot move their frequency; the upper
    # end adds, per group (all hit, all missed), the examples' share times the exact one-sided
    # Clopper-Pearson bound (statsmodels) of the pooled rate of the outcome none of them showed
    edges = np.linspace(0, 1, 16, dtype=np.float32)
    def bins_of(values: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, values.astype(np.float32), side="left") - 1, 0, 14)
    hit = (p.argmax(1) == y).astype(float)
    cell_sets = {
        "ece": (bins_of(p.max(1)), hit, 1.0), "adaptive_ece": (adaptive_bins, hit, 1.0),
        "classwise_ece": ((bins_of(p) + 15 * np.arange(k)).ravel(), np.eye(k)[y].ravel(), 1.0 / k),
    }  # fmt: skip
    unseen = {}
    for name, (cells_of, hits, scale) in cell_sets.items():
        sizes = [(int((cells_of == c).sum()), hits[cells_of == c].sum()) for c in np.unique(cells_of)]
        groups = [size for size in (sum(m for m, h in sizes if h == m), sum(m for m, h in sizes if h == 0)) if size]
        alpha = 0.05 / max(len(groups), 1)
        unseen[name] = scale * sum(size / n * proportion_confint(0, size, alpha=2 * alpha, method="beta")[1] for size in groups)
    assert unseen["classwise_ece"] > 0  # sparse class x bin cells are exercised
    for name, estimate in estimates.items():
        assert estimate == pytest.approx(getattr(metrics, name), abs=1e-6), name
        q = np.quantile(np.array(deviations[name]), 0.95)
        assert got[name] == pytest.approx((max(0.0, estimate - q), min(1.0, estimate + q + unseen[name])), abs=1e-6), name
        assert got[name][0] <= getattr(metrics, name) <= got[name][1]
    for name, values in means.items():
        percentile = tuple(np.quantile(np.array(values), [0.025, 0.975]))
        if name == "brier":  # widened to hold the Fay-Feuer interval of the terms in [0, 2]
            terms = ((p.astype(np.float64) - np.eye(k)[y]) ** 2).sum(axis=1).tolist()
            gamma = weighted_sum_interval(terms, 2.0)
            percentile = (min(percentile[0], gamma[0]), max(percentile[1], gamma[1]))
        assert got[name] == pytest.approx(percentile, abs=1e-9), name
    # MCE: statsmodels' exact intervals of the accuracy of every bin of at least min_count examples
    # (every occupied bin for min_count = 1), Bonferroni over those bins.
    confidence, correct = p.max(1), (p.argmax(1) == y)
    bins = np.clip(np.searchsorted(np.linspace(0, 1, 16, dtype=np.float32), confidence, side="left") - 1, 0, 14)
    for min_count in (1, 10):
        kept = [m for m in np.unique(bins) if (bins == m).sum() >= min_count]
        assert 0 < len(kept) < (len(np.unique(bins)) if min_count > 1 else 99)  # the minimum leaves bins out
        low = high = 0.0
        for m in kept:
            a, b = proportion_confint(int(correct[bins == m].sum()), int((bins == m).sum()), alpha=0.05 / len(kept), method="beta")
            c = float(confidence[bins == m].astype(np.float64).mean())
            low, high = max(low, a - c, c - b), max(high, abs(a - c), abs(b - c))
        interval = bootstrap_intervals(probs, labels, 15, torch.Generator().manual_seed(3), resamples=resamples, mce_min_count=min_count)["mce"]
        assert interval == pytest.approx((low, high), abs=1e-9)
        mce = calibration_metrics(probs, labels, 15, mce_min_count=min_count).mce
        assert interval[0] <= mce <= interval[1]
    assert got["mce"] == pytest.approx(interval, abs=1e-12)  # the default minimum is 10


@pytest.mark.slow
def test_binned_error_intervals_cover_the_true_error() -> None:
    """Coverage by simulation. Labels drawn from the model's own probabilities: the top label and every
    class probability are calibrated, so the true ECE, adaptive ECE, classwise ECE and MCE are all 0;
    the plug-in estimates are not (the percentile interval covered 0 in none of these trials)."""
    trials, covered = 40, {"ece": 0, "adaptive_ece": 0, "classwise_ece": 0, "mce": 0}
    for seed in range(trials):
        logits, labels = _sample(2000, 4, 100 + seed, 1.0)
        intervals = bootstrap_intervals(logits.softmax(1).float(), labels, 15, torch.Generator().manual_seed(seed), resamples=100)
        for name in covered:
            covered[name] += intervals[name][0] == 0.0
    for name, count in covered.items():
        assert count / trials >= 0.85, (name, count)
    # A miscalibrated model (labels from softmax(logits / 2), scored at T = 1): the true ECE, from
    # 400,000 draws, lies inside the intervals of samples of 400.
    logits, labels = _sample(400_000, 4, 7, 2.0)
    truth = expected_calibration_error(logits.softmax(1).float(), labels)
    hits = 0
    for seed in range(trials):
        logits, labels = _sample(400, 4, 1000 + seed, 2.0)
        low, high = bootstrap_intervals(logits.softmax(1).float(), labels, 15, torch.Generator().manual_seed(seed), resamples=100)["ece"]
        hits += low <= truth <= high
    assert hits / trials >= 0.85, (hits, truth)


def _accurate_sample(n: int, seed: int, top: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes, top confidence ``top``, correct with probability ``top`` (calibrated)."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.full((n, 10), (1 - top) / 9, dtype=torch.float64)
    probs[:, 0] = top
    correct = torch.rand(n, generator=gen, dtype=torch.float64) < top
    return probs, torch.where(correct, 0, torch.randint(1, 10, (n,), generator=gen))


def test_brier_interval_of_an_accurate_model_allows_unseen_errors() -> None:
    """Every one of 50 examples correct at confidence 0.99: the resampled Brier scores are all the
    same, so the percentile interval is a point, though an error rate up to the Clopper-Pearson bound
    (7%) fits the data, each error costing a Brier term of about 2."""
    probs, _ = _accurate_sample(50, 0, 0.99)
    labels = torch.zeros(50, dtype=torch.long)
    brier = calibration_metrics(probs, labels).brier
    low, high = bootstrap_intervals(probs, labels, 15, torch.Generator().manual_seed(0))["brier"]
    assert low <= brier <= high
    assert high >= 0.5 * clopper_pearson(0, 50)[1] * 2.0


def test_brier_interval_covers_an_accurate_model() -> None:
    """Coverage of a calibrated 99.5%-accurate model's Brier score at n = 100 (true value about 0.010, in
    closed form); the percentile bootstrap alone covered 37% (one sample in three has no error)."""
    top = 0.995
    truth = top * ((1 - top) ** 2 + 9 * ((1 - top) / 9) ** 2) + (1 - top) * (top**2 + (1 - (1 - top) / 9) ** 2 + 8 * ((1 - top) / 9) ** 2)
    trials, hits = 100, 0
    for seed in range(trials):
        probs, labels = _accurate_sample(100, seed, top)
        low, high = bootstrap_intervals(probs, labels, 15, torch.Generator().manual_seed(seed), resamples=200)["brier"]
        hits += low <= truth <= high
    assert hits / trials >= 0.9, hits


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    logits, labels = _sample(6000, 10, 1, 2.5)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(2.5, rel=0.08)
    assert fit.nll_after <= fit.nll_before
    assert not fit.at_bound
    # The fitted T minimises the NLL: no point of a grid does better.
    grid = torch.linspace(1.5, 4.0, 101, dtype=torch.float64)
    nll = [float(torch.nn.functional.cross_entropy(logits / t, labels)) for t in grid]
    assert fit.nll_after <= min(nll) + 1e-9
    scaled = apply_temperature(logits, fit.temperature)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(logits.softmax(1), labels)


def test_logits_from_probs_round_trip_and_bad_temperature() -> None:
    logits, _ = _sample(50, 4, 2, 1.0)
    probs = logits.softmax(1)
    assert torch.allclose(apply_temperature(logits_from_probs(probs), 1.0), probs, atol=1e-12)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="temperature"):
            apply_temperature(logits, bad)
    with pytest.raises(ConfigError, match="at least one"):
        fit_temperature(logits[:0], torch.zeros(0, dtype=torch.long))


def _ctx(shared: dict) -> EvalContext:
    ctx = EvalContext(device=torch.device("cpu"), progress=False, shared=shared)
    ctx.begin("calibration")
    return ctx


def test_section_records_every_condition_with_intervals() -> None:
    logits, labels = _sample(400, 4, 3, 1.0)
    clean = {"probs": logits.softmax(1).float(), "labels": labels}
    attacked = {"probs": (logits * 3).softmax(1).float(), "labels": labels, "robust": labels == labels}
    shared = {
        "clean": clean,
        "attacks/pgd": attacked,
        "attacks/worst_case": {"robust": labels == labels, "attacks": ["pgd"]},  # no probabilities
        "corruptions/fog/2": {"probs": (logits / 2).softmax(1).float(), "labels": labels},
        "corruptions/fog/1": {"probs": (logits / 1.5).softmax(1).float(), "labels": labels},
    }
    spec = CalibrationSpec(temperature_scaling=True, holdout_fraction=0.25)
    out = registry.get("evaluation", "calibration")(None, None, None, spec, _ctx(shared))
    eces = [r for r in out.records if r.name == "ece" and "split" not in r.condition]
    assert [r.condition.get("condition") for r in eces] == ["clean", "attack", "corruption", "corruption"]
    assert [r.condition.get("severity") for r in eces[2:]] == [1, 2]
    assert eces[0].value == pytest.approx(expected_calibration_error(clean["probs"], labels), abs=1e-12)
    assert eces[1].value == pytest.approx(expected_calibration_error(attacked["probs"], labels), abs=1e-12)
    for record in out.records:
        if record.name in ("ece", "max_calibration_error", "adaptive_ece", "brier", "nll") and "split" not in record.condition:
            key = {"max_calibration_error": "mce"}.get(record.name, record.name)
            assert record.interval == INTERVALS[key]
            assert record.ci_low <= record.value <= record.ci_high  # the interval holds its estimate
    assert len(out.artifacts["reliability"]) == 4
    first = out.artifacts["reliability"][0]
    assert len(first["edges"]) == 16 and sum(first["count"]) == 400
    temperature = out.artifacts["temperature"]
    assert temperature["n_fit"] == 100 and temperature["n_eval"] == 300
    after = [r for r in out.records if r.condition.get("temperature") == "after" and r.name == "nll"]
    assert len(after) == 4 and all(r.n == 300 for r in after)


def test_temperature_is_not_fitted_when_every_fitting_example_is_right() -> None:
    """All fitting examples correct: the NLL falls towards T -> 0 without a minimum (scipy runs to
    its lower bound); robench used to report the arbitrary point where float64 flattens, silently."""
    from scipy.optimize import minimize_scalar

    logits, labels = _sample(200, 4, 5, 1.0)
    right = logits.argmax(1) == labels
    logits, labels = logits[right], labels[right]
    fit = fit_temperature(logits, labels)
    assert not fit.identifiable
    reference = minimize_scalar(lambda t: float(torch.nn.functional.cross_entropy(logits / math.exp(t), labels)),
                                bounds=(math.log(1e-6), 0.0), method="bounded")  # fmt: skip
    assert reference.x < math.log(1e-2)  # the reference optimum is below robench's search range: no finite T
    shared = {"clean": {"probs": logits.softmax(1).float(), "labels": labels}}
    out = registry.get("evaluation", "calibration")(None, None, None, CalibrationSpec(temperature_scaling=True), _ctx(shared))
    assert out.artifacts["temperature"]["skipped"] and any("no minimum" in w for w in out.warnings)
    assert not [r for r in out.records if r.name == "temperature"]
    assert fit_temperature(*_sample(300, 4, 6, 2.0)).identifiable


def test_conditions_with_fewer_examples_are_scored_on_what_is_left_or_said_to_be_dropped() -> None:
    logits, labels = _sample(400, 4, 3, 1.0)
    probs = logits.softmax(1).float()
    shared = {
        "clean": {"probs": probs, "labels": labels},
        "corruptions/fog/1": {"probs": probs[:80], "labels": labels[:80]},  # all within the 100 fitting examples
        "corruptions/fog/2": {"probs": probs[:160], "labels": labels[:160]},
    }
    spec = CalibrationSpec(temperature_scaling=True, holdout_fraction=0.25)
    out = registry.get("evaluation", "calibration")(None, None, None, spec, _ctx(shared))
    after = {r.condition.get("severity"): r for r in out.records if r.condition.get("temperature") == "after" and r.name == "nll"}
    assert 1 not in after and after[2].n == 60
    assert any("not scored after scaling: all of its 80 examples" in w for w in out.warnings)
    assert any("examples 100 to 159 (60" in w for w in out.warnings)


def test_section_warns_when_requested_conditions_are_missing() -> None:
    logits, labels = _sample(40, 3, 4, 1.0)
    shared = {"clean": {"probs": logits.softmax(1).float(), "labels": labels}}
    out = registry.get("evaluation", "calibration")(None, None, None, CalibrationSpec(), _ctx(shared))
    assert any("attacks" in w for w in out.warnings) and any("corruptions" in w for w in out.warnings)


def test_report_gives_each_scaled_condition_its_n_and_says_when_scaling_was_skipped() -> None:
    from robench.report.render import render_html
    from tests.report import fixtures

    logits, labels = _sample(400, 4, 3, 1.0)
    probs = logits.softmax(1).float()
    shared = {"clean": {"probs": probs, "labels": labels}, "corruptions/fog/2": {"probs": probs[:160], "labels": labels[:160]}}

    def page(shared: dict) -> str:
        out = registry.get("evaluation", "calibration")(
            None, None, None, CalibrationSpec(temperature_scaling=True, holdout_fraction=0.25), _ctx(shared)
        )
        results = fixtures.strong().model_copy(deep=True)
        evaluation = next(e for e in results.evaluations if e.section == "calibration")
        evaluation.records, evaluation.artifacts, evaluation.warnings = out.records, out.artifacts, out.warnings
        return render_html(results)

    html = page(shared)
    table = html[html.index("<h3>Temperature scaling</h3>"):]
    assert "<th>n</th>" in table and '<td class="num">300</td>' in table and '<td class="num">60</td>' in table
    right = logits.argmax(1) == labels
    skipped = page({"clean": {"probs": probs[right], "labels": labels[right]}})
    assert "Declared, but skipped: not identifiable" in skipped


def test_temperature_is_fitted_on_log_probabilities_when_logit_gaps_exceed_float32() -> None:
    """Float32 probabilities underflow beyond a logit gap of ~87: the log of the clamped probabilities
    cut the fit (T 8.63 instead of 8.72 on a x8-scaled model). The hand-off's log-probabilities keep it."""
    from scipy.optimize import minimize_scalar

    from robench.threat_model import Evaluations, ThreatModel, DatasetSpec
    from robench.evaluations.clean import wants_log_probs

    logits, labels = _sample(2000, 10, 8, 1.0)
    logits = logits * 40  # gaps far beyond 87
    reference = minimize_scalar(lambda t: float(torch.nn.functional.cross_entropy(logits[:500] / math.exp(t), labels[:500])),
                                bounds=(math.log(1e-2), math.log(1e2)), method="bounded", options={"xatol": 1e-9})  # fmt: skip
    spec = CalibrationSpec(temperature_scaling=True, holdout_fraction=0.25)
    base = {"probs": logits.float().softmax(1), "labels": labels}
    with_logs = registry.get("evaluation", "calibration")(
        None, None, None, spec, _ctx({"clean": {**base, "log_probs": logits.float().log_softmax(1)}})
    )
    without = registry.get("evaluation", "calibration")(None, None, None, spec, _ctx({"clean": base}))
    fitted = with_logs.artifacts["temperature"]["temperature"]
    assert fitted == pytest.approx(math.exp(reference.x), rel=1e-4)
    assert abs(without.artifacts["temperature"]["temperature"] - fitted) > 1e-3 * fitted  # the clamped fit is off
    assert with_logs.artifacts["temperature"]["fitted_on"] == "log-probabilities"
    threat = ThreatModel(name="t", dataset=DatasetSpec(manifest="unused"), evaluations=Evaluations(calibration=spec))
    assert wants_log_probs(threat) and not wants_log_probs(None)


def test_clean_section_hands_off_log_probabilities_only_for_temperature_scaling() -> None:
    from robench.data.base import ArrayDataset
    from robench.models import load_model
    from robench.threat_model import DatasetSpec, Evaluations, ThreatModel
    from tests.conftest import QuadrantNet

    data = ArrayDataset(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 4, 4)
    handle = load_model(QuadrantNet(), device="cpu")
    for scaling in (True, False):
        threat = ThreatModel(name="t", dataset=DatasetSpec(manifest="unused"),
                             evaluations=Evaluations(calibration=CalibrationSpec(temperature_scaling=scaling)))  # fmt: skip
        ctx = EvalContext(device=torch.device("cpu"), progress=False)
        ctx.begin("clean")
        registry.get("evaluation", "clean")(handle, data, threat, None, ctx)
        hand = ctx.shared["clean"]
        assert ("log_probs" in hand) is scaling
        if scaling:
            assert torch.allclose(hand["log_probs"].exp(), hand["probs"], atol=1e-6)


def test_every_section_hands_off_log_probabilities_for_temperature_scaling() -> None:
    """A confidently fooled model (the wrong class 120 logits above the true one: p_y underflows in
    float32). Rescaled from log(clamped float32 probabilities) the NLL under attack after scaling was
    44.0 for a float64 reference of 60.5; the attacks and corruptions now hand off log-probabilities."""
    from robench.data.base import ArrayDataset
    from robench.models import load_model
    from robench.threat_model import ThreatModel

    class Overconfident(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 300 * self.linear(x.flatten(1))

    torch.manual_seed(0)
    data = ArrayDataset(torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(40) % 4, 4)
    handle = load_model(Overconfident(), device="cpu")
    threat = ThreatModel.model_validate({
        "name": "t", "dataset": {"manifest": "unused"}, "adversary": {"norm": "Linf", "eps": 0.3},
        "evaluations": {"attacks": [{"name": "pgd", "params": {"steps": 3}}, {"name": "fgsm"},
                                    {"name": "autoattack", "params": {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 3}},
                                    {"name": "fmn", "params": {"steps": 5}}],
                        "corruptions": {"corruptions": ["gaussian_noise"], "severities": [5]},
                        "calibration": {"temperature_scaling": True, "conditions": ["clean", "attacks", "corruptions"]}},
    })  # fmt: skip
    ctx = EvalContext(device=torch.device("cpu"), progress=False, batch_size=16)
    from robench.runner import _plan

    for section, key, _, spec in _plan(threat, None):
        ctx.begin(key)
        registry.get("evaluation", section)(handle, data, threat, spec, ctx)
    handoffs = {k: v for k, v in ctx.shared.items() if isinstance(v, dict) and "probs" in v}
    assert {"clean", "attacks/pgd", "attacks/fgsm", "attacks/autoattack", "attacks/fmn", "corruptions/gaussian_noise/5"} <= set(handoffs)
    for key, handoff in handoffs.items():
        assert "log_probs" in handoff, key
        assert torch.allclose(handoff["log_probs"].exp(), handoff["probs"], atol=1e-6), key
        assert float(handoff["log_probs"].min()) < -87.4, key  # beyond what float32 probabilities hold
    ctx.begin("calibration")
    out = registry.get("evaluation", "calibration")(handle, data, threat, threat.evaluations.calibration, ctx)
    rescaled = out.artifacts["temperature"]["rescaled_from"]
    assert set(rescaled.values()) == {"log-probabilities"}, rescaled
    fit = out.artifacts["temperature"]
    pgd = handoffs["attacks/pgd"]
    reference = float(torch.nn.functional.cross_entropy(pgd["log_probs"][fit["n_fit"]:].double() / fit["temperature"], pgd["labels"][fit["n_fit"]:]))
    nll = next(r.value for r in out.records if r.name == "nll" and r.condition.get("attack") == "pgd" and r.condition.get("temperature") == "after")
    assert nll == pytest.approx(reference, rel=1e-4)


def test_small_samples_of_a_calibrated_model_cover_its_zero_error() -> None:
    """At n = 50 the bootstrap bound alone held a calibrated 10-class model's true ECE 0 in 86% of test
    sets and its classwise ECE 0 in 46% (sparse class x bin cells); the exact lower bound holds it."""
    trials, covered = 100, {"ece": 0, "adaptive_ece": 0, "classwise_ece": 0}
    for seed in range(trials):
        logits, labels = _sample(50, 10, 500 + seed, 1.0)  # labels from the model's own probabilities
        intervals = bootstrap_intervals(logits.softmax(1).float(), labels, 15, torch.Generator().manual_seed(seed), resamples=100)
        for name in covered:
            covered[name] += intervals[name][0] == 0.0
    for name, count in covered.items():
        assert count / trials >= 0.95, (name, count)


def test_a_bin_without_variation_gets_the_exact_bound_not_a_point() -> None:
    # 20 examples at confidence 0.9, all correct: every resample has the same gap, and the interval was
    # [0.1, 0.1]; the bin's accuracy is only known to lie in Clopper-Pearson's [0.832, 1]
    probs = torch.full((20, 2), 0.1)
    probs[:, 0] = 0.9
    low, high = bootstrap_intervals(probs, torch.zeros(20, dtype=torch.long), 15, torch.Generator().manual_seed(0))["ece"]
    a = proportion_confint(20, 20, alpha=0.05, method="beta")[0]
    assert low == 0.0 and high == pytest.approx(max(abs(a - 0.9), 0.1), abs=1e-6)


def test_a_bin_without_errors_keeps_room_for_the_unseen_ones() -> None:
    """30 examples at confidences 0.96..0.99, all correct: the confidences vary, so the bootstrap has a
    width, but no resample holds an error and its upper end stayed near the observed gap 0.025 (0.028).
    The bin's accuracy is only known to be above 0.05^(1/30) = 0.905 (one-sided Clopper-Pearson): the
    true ECE may be 0.975 - 0.905 = 0.07 (in simulation: 81% coverage of a model 3 points over-confident)."""
    confidence = torch.linspace(0.96, 0.99, 30, dtype=torch.float64)
    probs = torch.stack((confidence, 1 - confidence), dim=1).float()
    low, high = bootstrap_intervals(probs, torch.zeros(30, dtype=torch.long), 15, torch.Generator().manual_seed(0))["ece"]
    far = proportion_confint(30, 30, alpha=0.1, method="beta")[0]  # one-sided at 5%
    reach = abs(far - float(confidence.mean()))  # the farthest gap the bin's exact interval allows
    # the observed gap 0.025 plus the bootstrap's deviation (of the confidences) plus the unseen errors' room
    assert low <= 0.025 and reach <= high <= 0.025 + (1 - far) + 0.01


def test_log_probabilities_are_kept_only_for_the_conditions_temperature_scaling_scores() -> None:
    # an (N, K) float32 tensor per attack (200 MB at ImageNet 50k x 1000) was kept though calibration
    # scored only the clean condition
    from robench.threat_model import ThreatModel

    threat = ThreatModel.model_validate({
        "name": "t", "dataset": {"manifest": "unused"}, "adversary": {"norm": "Linf", "eps": 0.1},
        "evaluations": {"attacks": [{"name": "fgsm"}], "calibration": {"temperature_scaling": True, "conditions": ["clean"]}},
    })  # fmt: skip
    from robench.evaluations.clean import wants_log_probs

    assert wants_log_probs(threat) and not wants_log_probs(threat, "attacks") and not wants_log_probs(threat, "corruptions")
    both = threat.model_copy(update={"evaluations": threat.evaluations.model_copy(update={
        "calibration": threat.evaluations.calibration.model_copy(update={"conditions": ("clean", "attacks")})})})  # fmt: skip
    assert wants_log_probs(both, "attacks")


def test_a_randomized_model_is_said_to_be_scored_on_one_pass() -> None:
    logits, labels = _sample(200, 4, 3, 1.0)
    shared = {"clean": {"probs": logits.softmax(1).float(), "labels": labels}}
    out = registry.get("evaluation", "calibration")(None, None, None, CalibrationSpec(), _ctx(shared))
    assert not any("randomized" in w for w in out.warnings)
    out = registry.get("evaluation", "calibration")(None, None, None, CalibrationSpec(), _ctx({**shared, "randomized": True}))
    assert any("one pass's probabilities" in w for w in out.warnings)


def test_temperature_scaled_metrics_have_intervals_in_the_records_and_the_report() -> None:
    """The temperature-scaling table was the one calibration table without intervals: every metric
    before and after scaling now has the bootstrap interval the unscaled conditions have, with n."""
    from robench.report.render import render_html
    from tests.report import fixtures

    logits, labels = _sample(400, 4, 3, 2.0)  # over-confident at T = 1: scaling changes the numbers
    shared = {"clean": {"probs": logits.softmax(1).float(), "labels": labels},
              "attacks/pgd": {"probs": (logits * 3).softmax(1).float(), "labels": labels}}  # fmt: skip
    spec = CalibrationSpec(temperature_scaling=True, holdout_fraction=0.25)
    out = registry.get("evaluation", "calibration")(None, None, None, spec, _ctx(shared))
    scaled = [r for r in out.records if r.condition.get("split") == "eval" and r.name in ("ece", "nll", "brier", "adaptive_ece")]
    assert len(scaled) == 2 * 2 * 4  # 2 conditions x before/after x 4 metrics
    for record in scaled:
        key = {"max_calibration_error": "mce"}.get(record.name, record.name)
        assert record.n == 300 and record.interval == INTERVALS[key], record
        assert record.ci_low <= record.value <= record.ci_high, record
    results = fixtures.strong().model_copy(deep=True)
    evaluation = next(e for e in results.evaluations if e.section == "calibration")
    evaluation.records, evaluation.artifacts = out.records, out.artifacts
    html = render_html(results)
    table = html[html.index("<h3>Temperature scaling</h3>"):]
    table = table[: table.index("</table>")]
    for record in scaled:
        if record.name in ("ece", "nll", "brier"):
            assert " ".join(record.formatted()).split(" ", 1)[1] in table, record  # its interval, as the report writes it
    assert "Each metric carries its 95% interval" in html


def test_the_mce_is_taken_over_bins_of_the_recorded_minimum_count() -> None:
    """PGD's MCE of 70.71% [0.00, 70.71] was the gap of a bin holding one digit (correct at
    confidence 0.29): the MCE and its interval now leave out bins of fewer than MCE_MIN_COUNT
    examples, and the results say so."""
    from robench.calibration.evaluate import MCE_MIN_COUNT

    assert MCE_MIN_COUNT >= 10
    logits, labels = _sample(200, 10, 5, 1.0)
    probs = (logits / 3).softmax(1).float()  # spread-out confidences: sparse bins at the low end
    tiny = {"probs": probs[:8], "labels": labels[:8]}  # no bin of 10: no MCE at all
    out = registry.get("evaluation", "calibration")(
        None, None, None, CalibrationSpec(n_bins=10, conditions=("clean", "corruptions")),
        _ctx({"clean": {"probs": probs, "labels": labels}, "corruptions/fog/1": tiny}),
    )  # fmt: skip
    assert out.resolved["mce_min_count"] == out.artifacts["mce_min_count"] == MCE_MIN_COUNT
    clean, small = [r for r in out.records if r.name == "max_calibration_error"]
    counts = torch.tensor(out.artifacts["reliability"][0]["count"])
    assert bool(((counts > 0) & (counts < MCE_MIN_COUNT)).any())
    panel = out.artifacts["reliability"][0]
    gaps = [abs(a - c) for a, c, n in zip(panel["accuracy"], panel["confidence"], panel["count"]) if n >= MCE_MIN_COUNT]
    assert clean.value == pytest.approx(max(gaps), abs=1e-6)  # brute force from the recorded bins
    assert clean.ci_low <= clean.value <= clean.ci_high and "at least 10 examples" in clean.interval
    assert small.value is None and small.ci_low is None and small.n == 8


def test_resampled_sums_in_chunks_equal_one_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """The weights are made a few resamples at a time (memory): the sums equal those of one
    (R, N) draw of indices, resample by resample."""
    from robench.calibration import bootstrap

    n, resamples = 50, 23
    terms = torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = bootstrap.bootstrap_draws(n, resamples, torch.Generator().manual_seed(4))
    expected = torch.stack([terms[index].sum(dim=0) for index in draws])
    monkeypatch.setattr(bootstrap, "WEIGHT_BUDGET", 7 * n)  # chunks of 7 resamples
    (got,) = bootstrap.resampled_sums([terms], resamples, torch.Generator().manual_seed(4))
    assert torch.allclose(got, expected, atol=1e-12)
    assert bootstrap.DEFAULT_RESAMPLES >= 1000


def test_an_attack_condition_carries_the_threat_model_s_norm_eps_and_goal() -> None:
    """ECE, Brier and NLL "under pgd" carried only the attack's name: filtered by eps or norm, the
    exported records lost them, and the label did not say at which eps the attack ran."""
    from robench.report._labels import record_label
    from robench.threat_model import ThreatModel

    logits, labels = _sample(200, 4, 5, 1.0)
    shared = {"attacks/pgd": {"probs": (logits * 3).softmax(1).float(), "labels": labels, "robust": labels == labels}}
    threat = ThreatModel.model_validate({"name": "t", "dataset": {"manifest": "mnist5k"}, "adversary": {"norm": "Linf", "eps": "8/255"},
                                         "evaluations": {"attacks": [{"name": "pgd"}]}})  # fmt: skip
    out = registry.get("evaluation", "calibration")(None, None, threat, CalibrationSpec(conditions=("attacks",)), _ctx(shared))
    ece = next(r for r in out.records if r.name == "ece")
    assert {k: ece.condition[k] for k in ("attack", "norm", "eps", "goal")} == {"attack": "pgd", "norm": "Linf", "eps": 8 / 255, "goal": "untargeted"}
    assert record_label(ece) == "ECE under pgd at Linf eps=8/255"
