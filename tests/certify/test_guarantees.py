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
        ("lipschitz", {"method": "bound"}, None),
        ("lipschitz", {"method": "power"}, "method: power"),
        ("smoothing", {"rounding": False, "method": "power"}, None),  # probabilistic by design, stated in its text
    ],
)  # fmt: skip
def test_settings_that_give_up_the_guarantee_are_named(certifier: str, params: dict, says: str | None) -> None:
    reason = unproven(certifier, params)
    assert (reason is None) if says is None else (reason is not None and reason.startswith(says))


def _crown_and_lipschitz(net, crown_params: dict, lipschitz_params: dict):
    import robench
    from robench.threat_model import ThreatModel

    threat = ThreatModel.model_validate({
        "name": "g", "dataset": {"manifest": "mnist5k"}, "adversary": {"norm": "Linf", "eps": 0.005},
        "evaluations": {"certification": [{"name": "crown", "params": {"pgd_check_steps": 0, **crown_params}},
                                          {"name": "lipschitz", "params": lipschitz_params}]},
    })  # fmt: skip
    return robench.evaluate(net, threat, n_examples=20, device="cpu", progress=False, batch_size=20)


def test_a_run_whose_settings_are_not_sound_says_so_in_its_warnings_report_and_checklist(digit_mlp) -> None:
    """CROWN in float32 and Lipschitz by power iteration warned nowhere that their numbers are not
    guaranteed (the method text said so for power iteration only; the checklist passed)."""
    from robench.report.checklist import checklist
    from robench.report.render import render_html

    torch.manual_seed(0)
    sound = _crown_and_lipschitz(digit_mlp, {}, {})
    loose = _crown_and_lipschitz(digit_mlp, {"precision": "model"}, {"method": "power", "power_iterations": 20})
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
