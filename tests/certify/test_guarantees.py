"""When a certifier's settings give up its guarantee: the rule, and the run, report and checklist that state it."""

from __future__ import annotations

import pytest
import torch

from robench.certify.guarantees import unproven


@pytest.mark.parametrize(
    "certifier,params,says",
    [
        ("ibp", {"rounding": True}, None),
        ("ibp", {"rounding": False}, "rounding: false"),
        ("ibp", {}, "rounding: false"),  # results from before the allowance had none
        ("crown", {"rounding": True, "precision": "float64"}, None),
        ("crown", {"rounding": True, "precision": "model"}, "precision: model"),
        ("crown", {"rounding": True}, "precision: model"),  # results from before float64 bounded in float32
        ("crown", {"rounding": False, "precision": "float64"}, "rounding: false"),
        ("crown", {"rounding": False, "precision": "model"}, "rounding: false"),
        ("lipschitz", {"method": "bound"}, None),
        ("lipschitz", {"method": "power"}, "method: power"),
        ("smoothing", {"rounding": False, "method": "power"}, None),  # probabilistic by design, stated in its text
    ],
)  # fmt: skip
def test_settings_that_give_up_the_guarantee_are_named(certifier: str, params: dict, says: str | None) -> None:
    reason = unproven(certifier, params)
    assert (reason is None) if says is None else (reason is not None and reason.startswith(says))


def test_every_reason_is_named_and_power_iteration_only_counts_where_it_estimated() -> None:
    """CROWN with both rounding: false and precision: model named only the first (fixing it revealed
    the second on the next run); Lipschitz by power iteration on a model without convolutions has
    exact norms, yet was flagged (review of 2026-12-05)."""
    both = unproven("crown", {"rounding": False, "precision": "model"})
    assert both is not None and "rounding: false" in both and "precision: model" in both
    assert unproven("lipschitz", {"method": "power"}, estimated=[]) is None
    assert unproven("lipschitz", {"method": "power"}, estimated=["1"]) is not None
    assert unproven("lipschitz", {"method": "power"}) is not None  # not recorded: older results


def test_a_failed_certification_is_not_called_unproven() -> None:
    """A certification that errored has only its declared parameters (the defaults it ran with are
    not recorded), and the report said "rounding: false" of an IBP run that used the default true."""
    from robench.report.checklist import unproven_certificate
    from robench.results import EvaluationResult

    declared = {"name": "ibp", "id": None, "params": {}}
    failed = EvaluationResult(key="certification/ibp", section="certification", name="ibp", declared=declared, status="error")
    assert unproven_certificate(failed) is None
    done = EvaluationResult(key="certification/ibp", section="certification", name="ibp", declared=declared, status="success")
    assert unproven_certificate(done) is not None  # finished without recorded settings: older results, no allowance


@pytest.fixture(scope="module")
def digit_cnn() -> torch.nn.Module:
    """A small untrained convolutional net (power iteration estimates its convolution's norm)."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, 10)).eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def _crown_and_lipschitz(net, crown_params: dict, lipschitz_params: dict):
    import robench
    from robench.threat_model import ThreatModel

    threat = ThreatModel.model_validate({
        "name": "g", "dataset": {"manifest": "mnist5k"}, "adversary": {"norm": "Linf", "eps": 0.005},
        "evaluations": {"certification": [{"name": "crown", "params": {"pgd_check_steps": 0, **crown_params}},
                                          {"name": "lipschitz", "params": lipschitz_params}]},
    })  # fmt: skip
    return robench.evaluate(net, threat, n_examples=20, device="cpu", progress=False, batch_size=20)


def test_a_run_whose_settings_are_not_sound_says_so_in_its_warnings_report_and_checklist(digit_cnn) -> None:
    """CROWN in float32 and Lipschitz by power iteration warned nowhere that their numbers are not
    guaranteed (the method text said so for power iteration only; the checklist passed)."""
    from robench.report.checklist import checklist
    from robench.report.render import render_html

    torch.manual_seed(0)
    sound = _crown_and_lipschitz(digit_cnn, {}, {})
    loose = _crown_and_lipschitz(digit_cnn, {"precision": "model"}, {"method": "power", "power_iterations": 20})
    for results, expected in ((sound, (None, None)), (loose, ("precision: model", "method: power"))):
        for key, says in zip(("certification/crown", "certification/lipschitz"), expected):
            warned = [w for w in results.evaluation(key).warnings if w.startswith(("precision:", "method:", "rounding:"))]
            assert (not warned) if says is None else (len(warned) == 1 and warned[0].startswith(says))
    item = next(i for i in checklist(sound) if i.key == "certification")
    assert item.status == "pass"
    item = next(i for i in checklist(loose) if i.key == "certification")
    assert item.status == "warn" and "certification/crown: precision: model" in item.evidence and "certification/lipschitz: method: power" in item.evidence
    html = " ".join(render_html(loose).split())
    assert "CROWN&#39;s own float32 rounding is not bounded" in html and "Not a guaranteed certificate" not in html  # the run's warnings say it
    # results of a robench that did not warn (the rule reads the recorded parameters): the section says it once
    for key in ("certification/crown", "certification/lipschitz"):
        evaluation = loose.evaluation(key)
        evaluation.warnings = [w for w in evaluation.warnings if not w.startswith(("precision:", "method:"))]
    html = " ".join(render_html(loose).split())
    assert html.count("Not a guaranteed certificate with these settings: precision: model") == 1
    assert html.count("Not a guaranteed certificate with these settings: method: power") == 1
    assert "Not a guaranteed certificate" not in render_html(sound)
