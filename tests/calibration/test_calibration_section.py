"""Bootstrap intervals, temperature scaling and the ``calibration`` section evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robench._errors import ConfigError
from robench.calibration import calibration_metrics, expected_calibration_error
from robench.calibration.bootstrap import bootstrap_intervals
from robench.calibration.temperature import apply_temperature, fit_temperature, logits_from_probs
from robench.context import EvalContext
from robench.registry import registry
from robench.threat_model import CalibrationSpec


def _sample(n: int, k: int, seed: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits / temperature): calibrated at that temperature."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen, dtype=torch.float64) * 4
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=gen).squeeze(1)
    return logits, labels


def test_bootstrap_equals_naive_resampling_loop() -> None:
    logits, labels = _sample(300, 5, 0, 1.0)
    probs = logits.softmax(1)
    probs = probs.float()  # binned in float32 by both paths
    got = bootstrap_intervals(probs, labels, 15, torch.Generator().manual_seed(3), resamples=50)
    draws = torch.randint(0, 300, (50, 300), generator=torch.Generator().manual_seed(3))
    naive = {name: [] for name in got}
    for index in draws:
        metrics = calibration_metrics(probs[index], labels[index], 15)
        for name in naive:
            naive[name].append(getattr(metrics, name))
    for name, interval in got.items():
        assert interval is not None
        low, high = np.quantile(np.array(naive[name]), [0.025, 0.975])
        assert interval == pytest.approx((low, high), abs=1e-9), name
        assert interval[0] <= interval[1]


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
            assert record.interval is not None and "bootstrap" in record.interval
            assert record.ci_low <= record.ci_high
    assert len(out.artifacts["reliability"]) == 4
    first = out.artifacts["reliability"][0]
    assert len(first["edges"]) == 16 and sum(first["count"]) == 400
    temperature = out.artifacts["temperature"]
    assert temperature["n_fit"] == 100 and temperature["n_eval"] == 300
    after = [r for r in out.records if r.condition.get("temperature") == "after" and r.name == "nll"]
    assert len(after) == 4 and all(r.n == 300 for r in after)


def test_section_warns_when_requested_conditions_are_missing() -> None:
    logits, labels = _sample(40, 3, 4, 1.0)
    shared = {"clean": {"probs": logits.softmax(1).float(), "labels": labels}}
    out = registry.get("evaluation", "calibration")(None, None, None, CalibrationSpec(), _ctx(shared))
    assert any("attacks" in w for w in out.warnings) and any("corruptions" in w for w in out.warnings)
