"""Minimum-norm and decision-based attacks via foolbox: norms, quantiles, the eps curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("foolbox")

from robench._errors import ConfigError, UnavailableError  # noqa: E402
from robench.attacks.foolbox_attacks import (  # noqa: E402
    accuracy_curve,
    distance,
    empirical_quantiles,
)

from .conftest import make_threat, record, run_section  # noqa: E402


def test_empirical_quantiles_match_brute_force():
    values = np.random.default_rng(0).exponential(size=37)
    values[[3, 9]] = np.inf
    ordered = np.sort(values)
    for q, got in zip((0.1, 0.25, 0.5, 0.75, 0.9), empirical_quantiles(values)):
        # Inverse empirical CDF: the smallest value whose rank reaches q * n.
        assert got == ordered[int(np.ceil(q * len(values))) - 1]


def test_curve_and_l0_distance():
    correct = torch.tensor([True, True, True, False])
    min_norm = torch.tensor([0.5, 2.0, float("inf"), 0.0])
    assert accuracy_curve(correct, min_norm, [0.0, 0.5, 1.0, 100.0]) == [3, 2, 2, 1]
    delta = torch.zeros(2, 1, 3, 3)
    delta[0, 0, 0, 0], delta[0, 0, 1, 2] = 0.3, -0.1
    assert distance(delta, "L0").tolist() == [2.0, 0.0]


@pytest.mark.parametrize("name,params", [("fmn", {"steps": 10}), ("ddn", {"steps": 10})])
def test_min_norm_l2(handle, mnist_test, name, params):
    data = mnist_test.subset(30)
    threat = make_threat([{"name": name, "params": params}], norm="L2", eps=1.0)
    output, ctx = run_section(handle, data, threat)
    curve = output.artifacts["curve"]
    accuracies = curve["robust_accuracy"]
    assert curve["eps"][0] == 0.0 and accuracies[0] == record(output, "clean_accuracy").value
    assert all(b <= a for a, b in zip(accuracies, accuracies[1:]))
    robust = record(output, "robust_accuracy")
    assert robust.value == record(output, "robust_accuracy_at_eps", eps=1.0).value
    assert robust.value < accuracies[0]  # the attack finds adversarial examples inside the ball
    median = record(output, "min_perturbation_norm_quantile", quantile=0.5).value
    assert median is not None and median > 0
    # Re-check by brute force: examples the curve calls fooled at eps 1 are fooled by an example in the ball.
    assert ctx.shared[f"attacks/{name}"]["robust"].float().mean() == pytest.approx(robust.value)


def test_fmn_l0_reports_counts_without_robust_accuracy(handle, mnist_test):
    threat = make_threat([{"name": "fmn", "params": {"steps": 10, "norm": "L0"}}], norm="L2", eps=1.0)
    output, _ = run_section(handle, mnist_test.subset(10), threat)
    assert output.artifacts["norm"] == "L0"
    assert not [r for r in output.records if r.name == "robust_accuracy"]
    found = [r.value for r in output.records if r.name == "min_perturbation_norm_quantile" and r.value is not None]
    assert found and all(float(v).is_integer() for v in found)


@pytest.mark.slow
def test_hop_skip_jump_black_box(handle, mnist_test):
    params = {"steps": 3, "initial_gradient_eval_steps": 10, "max_gradient_eval_steps": 50}
    threat = make_threat([{"name": "hop_skip_jump", "params": params}], norm="L2", eps=1.0, knowledge="black-box")
    output, _ = run_section(handle, mnist_test.subset(10), threat)
    assert output.artifacts["knowledge"] == "decision-based"
    assert not output.warnings


def test_boundary_is_l2_only(handle, mnist_test):
    threat = make_threat([{"name": "boundary", "params": {"steps": 10}}], norm="Linf", eps=0.1)
    with pytest.raises(ConfigError, match="L2"):
        run_section(handle, mnist_test.subset(4), threat)


def test_white_box_under_black_box_threat_warns(handle, mnist_test):
    threat = make_threat([{"name": "ddn", "params": {"steps": 5}}], norm="L2", eps=1.0, knowledge="black-box")
    output, _ = run_section(handle, mnist_test.subset(5), threat)
    assert any("white-box attack run under a black-box threat model" in w for w in output.warnings)


def test_missing_foolbox_is_unavailable(handle, mnist_test, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "foolbox", None)
    threat = make_threat([{"name": "ddn"}], norm="L2", eps=1.0)
    with pytest.raises(UnavailableError, match="foolbox"):
        run_section(handle, mnist_test.subset(4), threat)
