"""The certification section end to end: threat-model entries, records, resume, report."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from robench.certify.smoothing import ABSTAIN
from robench.context import EvalContext
from robench.models import load_model
from robench.registry import registry
from robench.report.sections.certification import build
from tests.certify._results import certification_results
from robench.threat_model import ThreatModel, validate_data


def _threat(entries: list[dict], adversary: dict | None = None) -> ThreatModel:
    return ThreatModel.model_validate(
        {"name": "t", "dataset": {"manifest": "mnist5k"}, "adversary": adversary, "evaluations": {"certification": entries}}
    )


def _run(net, data, threat: ThreatModel, index: int = 0, seed: int = 0, device: str = "cpu"):
    handle = load_model(net, device=device)
    ctx = EvalContext(device=torch.device(device), seed=seed, batch_size=50, progress=False)
    spec = threat.evaluations.certification[index]
    ctx.begin(f"certification/{spec.key}")
    return registry.get("evaluation", "certification")(handle, data, threat, spec, ctx), ctx


def _records(output, name: str) -> list:
    return [r for r in output.records if r.name == name]


def test_smoothing_section_records_and_reproducibility(digit_mlp, digits) -> None:
    params = {"sigma": 0.25, "n0": 20, "n": 400, "batch": 256, "n_examples": 30, "images_per_batch": 8, "n_predict": 200}
    threat = _threat([{"name": "smoothing", "params": params}], {"norm": "L2", "eps": 0.25})
    output, ctx = _run(digit_mlp, digits, threat)
    curve = [r for r in _records(output, "certified_accuracy") if "radius" in r.condition and "point" not in r.condition]
    assert [r.condition["radius"] for r in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
    values = [r.value for r in curve]
    assert values == sorted(values, reverse=True) and values[0] > 0.5 and all(r.n == 30 for r in curve)
    examples = output.artifacts["examples"]
    radius = torch.tensor([e["radius"] for e in examples])
    correct = torch.tensor([e["prediction"] == e["label"] for e in examples])
    assert _records(output, "average_certified_radius")[0].value == pytest.approx(float((radius * correct).mean()))
    headline = [r for r in _records(output, "certified_accuracy") if "threat_eps" in r.condition][0]
    assert headline.value == pytest.approx(float((correct & (radius >= 0.25)).float().mean()))
    abstain = _records(output, "abstain_rate")[0]
    assert abstain.value == pytest.approx(sum(e["prediction"] == -1 for e in examples) / 30)
    assert ctx.cost.forward_passes == 30 * (20 + 400 + 200) == output.artifacts["noisy_samples"] + output.artifacts["predict_samples"]
    assert output.artifacts["predict_samples"] == 30 * 200
    again, _ = _run(digit_mlp, digits, threat)
    assert again.artifacts["examples"] == examples
    other, _ = _run(digit_mlp, digits, threat, seed=1)
    assert other.artifacts["examples"] != examples


def test_smoothing_at_a_linf_eps_beyond_its_largest_radius_says_it_cannot_certify(digit_mlp, digits) -> None:
    # Linf eps 8/255 on 784 pixels needs an L2 radius of 28 * 8/255 = 0.878; sigma 0.1 with n = 400
    # and alpha = 0.001 certifies at most 0.1 * Phi^-1(0.001^(1/400)) = 0.212
    params = {"sigma": 0.1, "n0": 20, "n": 400, "batch": 256, "n_examples": 12, "images_per_batch": 12}
    threat = _threat([{"name": "smoothing", "params": params}], {"norm": "Linf", "eps": "8/255"})
    output, _ = _run(digit_mlp, digits, threat)
    headline = [r for r in _records(output, "certified_accuracy") if "threat_eps" in r.condition][0]
    assert output.artifacts["threat_radius_l2"] == pytest.approx(28 * 8 / 255)
    assert output.artifacts["max_certified_radius"] == pytest.approx(0.1 * norm.ppf(0.001 ** (1 / 400)))
    assert headline.value == 0.0 and max(e["radius"] for e in output.artifacts["examples"]) <= output.artifacts["max_certified_radius"]
    assert any("not certifiable with these settings" in w and "0.878" in w for w in output.warnings)
    from robench.report.render import record_label

    results = certification_results(threat, {"smoothing": output})
    assert headline.condition["certifiable"] is False and "not certifiable" not in record_label(headline)
    needs = f"needs L2 r = {28 * 8 / 255:.4g} > ceiling {0.1 * norm.ppf(0.001 ** (1 / 400)):.4g}"
    assert results.formatted(headline) == (f"n/a: not certifiable with these settings ({needs})", "")
    from robench.report.render import render_html

    html = render_html(results)
    assert "not certifiable with these settings" in html and f"σ·Φ⁻¹(α^(1/n)) = {0.1 * norm.ppf(0.001 ** (1 / 400)):.4g}" in html and needs.replace(">", "&gt;") in html
    assert "0 by construction" in html
    # at an L2 eps within reach the same settings say nothing of the kind
    reachable, _ = _run(digit_mlp, digits, _threat([{"name": "smoothing", "params": params}], {"norm": "L2", "eps": 0.1}))
    assert not any("not certifiable" in w for w in reachable.warnings)
    ceiling = reachable.artifacts["max_certified_radius"]  # only grid radii past it are 0 by construction
    assert all(("certifiable" in r.condition) == (r.condition.get("radius", 0) > ceiling) for r in reachable.records)
    assert "not certifiable" not in render_html(certification_results(threat, {"smoothing": reachable}))


def test_smoothing_warns_when_its_budget_caps_the_certificates(digit_mlp, digits) -> None:
    # n = 200 samples: a digit the MLP classifies under noise every time sits at the ceiling
    params = {"sigma": 0.1, "n0": 20, "n": 200, "batch": 256, "n_examples": 20, "images_per_batch": 20}
    output, _ = _run(digit_mlp, digits, _threat([{"name": "smoothing", "params": params}]))  # no adversary: the ceiling is still recorded
    ceiling = 0.1 * norm.ppf(proportion_confint(200, 200, alpha=0.002, method="beta")[0])
    assert output.artifacts["max_certified_radius"] == pytest.approx(ceiling, rel=1e-12)
    capped = sum(e["count"] == e["n"] and e["prediction"] != ABSTAIN for e in output.artifacts["examples"])
    assert capped > 2 and all(e["radius"] <= ceiling * (1 + 1e-12) for e in output.artifacts["examples"])
    warning = next(w for w in output.warnings if w.startswith("capped by the Monte-Carlo budget"))
    assert f"{capped} of 20 certificates" in warning
    assert f"{0.1 * norm.ppf(proportion_confint(100_000, 100_000, alpha=0.002, method='beta')[0]):.4g}" in warning
    html = render_html_of(output)
    assert html.count("capped by the Monte-Carlo budget") == 2  # the section and the top, not the Limitations or twice in the section
    # every number the report's table adds to the grid is a record (metrics.csv held none of them),
    # checked by brute force on the per-example counts; grid radii past the ceiling are 0 by construction
    examples = output.artifacts["examples"]
    points = {r.condition["point"]: r for r in _records(output, "certified_accuracy") if "point" in r.condition}
    at_ceiling = next(r for p, r in points.items() if p.startswith("the ceiling"))
    assert at_ceiling.condition["radius"] == pytest.approx(ceiling, rel=1e-12)
    assert round(at_ceiling.value * 20) == sum(e["count"] == e["n"] and e["prediction"] == e["label"] for e in examples)
    past = [r for r in _records(output, "certified_accuracy") if r.condition.get("radius", 0) > ceiling * (1 + 1e-9) and "point" not in r.condition]
    assert past and all(r.condition.get("certifiable") is False and r.value == 0 for r in past)
    within = [r for r in _records(output, "certified_accuracy") if "radius" in r.condition and r.condition["radius"] <= ceiling]
    assert all("certifiable" not in r.condition for r in within)
    from robench.results import not_certifiable

    assert not_certifiable(past[0], output.artifacts).endswith(f"(needs L2 r = {past[0].condition['radius']:.4g} > ceiling {ceiling:.4g})")


def render_html_of(output) -> str:
    from robench.report.render import render_html

    return render_html(certification_results(_threat([{"name": "smoothing"}]), {"smoothing": output}))


def test_fast_smoothing_says_it_certifies_the_bf16_classifier(digit_mlp, digits) -> None:
    """Fast smoothing certifies the smoothed classifier of the bf16 model it samples (a model whose
    fp32 logits 1 and 1.001 tie in bf16 certifies another class); nothing said so in the run."""
    params = {"sigma": 0.25, "n0": 10, "n": 50, "batch": 256, "n_examples": 4, "images_per_batch": 4}
    for mode, warned in (("exact", False), ("fast", True)):
        threat = _threat([{"name": "smoothing", "params": {**params, "mode": mode}}], {"norm": "L2", "eps": 0.25})
        output, _ = _run(digit_mlp, digits, threat)
        assert any(w.startswith("mode: fast: the certificates are those of the smoothed classifier") for w in output.warnings) == warned


def test_a_tie_of_two_logits_certifies_nothing_at_radius_0() -> None:
    """A Lipschitz margin of exactly 0 (the label ties another class; argmax picks the label by index) has
    radius 0: the grid's record at r = 0 counts radius > 0 and left it out, the exact curve counted it."""
    from robench.certify.curves import certified_radii, exact_curve

    examples = [{"label": 0, "prediction": 0, "radius": 0.0}, {"label": 1, "prediction": 1, "radius": 0.2}]
    assert exact_curve(examples)[0]["value"] == 0.5 and certified_radii(examples) == [0.2]


def test_the_report_curve_is_the_exact_curve_of_the_per_example_radii() -> None:
    from robench.report.sections.certification import exact_curve

    generator = torch.Generator().manual_seed(0)
    radius = torch.rand(200, generator=generator).mul(0.9).tolist()
    label = torch.randint(0, 3, (200,), generator=generator).tolist()
    prediction = [p if i % 7 else ABSTAIN for i, p in enumerate(torch.randint(0, 3, (200,), generator=generator).tolist())]
    examples = [{"label": y, "prediction": p, "radius": r if p >= 0 else 0.0} for y, p, r in zip(label, prediction, radius)]
    curve = exact_curve(examples)

    def brute_force(r: float) -> float:  # certified and correct at r, over all 200 (abstains count as failures)
        return sum(e["prediction"] == e["label"] and e["radius"] >= r for e in examples) / 200

    assert [p["radius"] for p in curve] == sorted({0.0, *(e["radius"] for e in examples if e["prediction"] == e["label"])})
    for point in curve:
        assert point["value"] == brute_force(point["radius"])
        assert point["ci_low"] == pytest.approx(proportion_confint(round(point["value"] * 200), 200, method="beta")[0], abs=1e-9)
    for left, right in zip(curve, curve[1:]):  # constant on (left, right]: probe in between
        assert brute_force((left["radius"] + right["radius"]) / 2) == right["value"]
    assert brute_force(curve[-1]["radius"] + 1e-9) == 0.0


@pytest.mark.gpu
@pytest.mark.slow
def test_smoothing_section_on_cuda_exact_and_fast_compiled(digit_mlp, digits) -> None:
    base = {"sigma": 0.25, "n0": 20, "n": 2000, "batch": 4096, "n_examples": 30, "images_per_batch": 16}
    accuracy = {}
    for label, extra, device in [("cpu", {}, "cpu"), ("exact", {}, "cuda"), ("fast", {"mode": "fast", "compile": True}, "cuda")]:
        threat = _threat([{"name": "smoothing", "params": {**base, **extra}}], {"norm": "L2", "eps": 0.25})
        output, ctx = _run(copy.deepcopy(digit_mlp), digits, threat, device=device)  # .to() would move the fixture
        assert ctx.cost.forward_passes == 30 * (20 + 2000)
        accuracy[label] = [r.value for r in _records(output, "certified_accuracy") if "radius" in r.condition]
        if label == "fast":
            assert "bf16" in ctx.cost.precision
    # the devices draw different noise and bf16 rounds differently: the curves agree within sampling error
    for label in ("exact", "fast"):
        assert max(abs(a - b) for a, b in zip(accuracy[label], accuracy["cpu"])) <= 0.15, accuracy


def test_ibp_and_lipschitz_sections(digit_mlp, digits) -> None:
    threat = _threat([{"name": "ibp", "params": {"pgd_check_steps": 10}}, {"name": "lipschitz"}], {"norm": "Linf", "eps": 0.01})
    data = digits
    ibp_out, _ = _run(digit_mlp, data, threat, 0)
    assert ibp_out.checks[0].status == "pass"
    curve = [r for r in _records(ibp_out, "certified_accuracy") if "eps" in r.condition]
    assert [r.condition["eps"] for r in curve] == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01])
    clean = _records(ibp_out, "clean_accuracy")[0].value
    assert all(r.value <= clean for r in curve) and curve[0].value >= curve[-1].value
    # n: the examples verified at some radius (the boxes are nested: those of the smallest); pairs: summed over the radii
    verified = ibp_out.checks[0].evidence["verified"]
    assert ibp_out.checks[0].evidence["n"] == max(verified) < ibp_out.checks[0].evidence["pairs"] == sum(verified)
    lip_out, _ = _run(digit_mlp, data, threat, 1)
    assert lip_out.checks[0].status == "pass" and lip_out.artifacts["lipschitz_bound"] > 0
    from robench.report._labels import check_scope

    assert lip_out.checks[0].evidence["n"] == len(data)  # its n and budget are stated ("not recorded" before)
    assert "not recorded" not in check_scope(lip_out.checks[0])
    # the report draws Lipschitz's exact curve from its per-example radii (its grid missed them all)
    from robench.report.sections.certification import exact_curve

    examples = lip_out.artifacts["examples"]
    for point in (r for r in _records(lip_out, "certified_accuracy") if "radius" in r.condition):
        r = point.condition["radius"]
        assert point.value == sum(e["prediction"] == e["label"] and 0 < e["radius"] and e["radius"] >= r for e in examples) / len(examples)
    assert exact_curve(examples)[0]["value"] == pytest.approx(_records(lip_out, "certified_accuracy")[0].value)
    results = certification_results(threat, {"ibp": ibp_out, "lipschitz": lip_out})
    section = build(results)
    assert next(row for row in section["rows"] if row["key"] == "lipschitz")["exact"]
    assert section is not None and section["figure_eps"].startswith("data:image/png") and section["figure_radius"]
    from robench.report.render import render_html

    html = render_html(results)
    assert "Interval bound propagation" in html and "margin / (√2·L)" in html
    assert 'intervals: ibp" src=' in html and 'intervals: lipschitz" src=' in html  # alt text names what is drawn


@pytest.mark.parametrize("name", ["ibp", "crown", "lipschitz"])
def test_deterministic_certifiers_refuse_a_randomized_model(digit_mlp, digits, name: str) -> None:
    # a model flipping its logits on a few passes passed the trace check and IBP verified it
    from robench._errors import ConfigError

    threat = _threat([{"name": name}], {"norm": "Linf", "eps": 0.01})
    handle = load_model(digit_mlp, device="cpu")
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=50, progress=False)
    ctx.shared["randomized"] = True
    spec = threat.evaluations.certification[0]
    ctx.begin(f"certification/{spec.key}")
    with pytest.raises(ConfigError, match="randomized"):
        registry.get("evaluation", "certification")(handle, digits.subset(8), threat, spec, ctx)


def test_the_section_counts_what_the_rounding_allowance_alone_rejects(digit_mlp, digits) -> None:
    class Offset(torch.nn.Module):  # logits + 2^20 - 2^20: in float32 they round to multiples of 1/8
        def __init__(self) -> None:
            super().__init__()
            self.net = digit_mlp

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return self.net(x) + 2.0**20 - 2.0**20

    data = digits.subset(60)
    sound, _ = _run(Offset().eval(), data, _threat([{"name": "ibp", "params": {"pgd_check_steps": 0}}], {"norm": "Linf", "eps": 0.01}))
    loose, _ = _run(Offset().eval(), data, _threat([{"name": "ibp", "params": {"pgd_check_steps": 0, "rounding": False}}],
                                                    {"norm": "Linf", "eps": 0.01}))  # fmt: skip
    rejected = sound.artifacts["rejected_by_rounding_allowance"]  # a result, not a parameter
    assert "rejected_by_rounding_allowance" not in sound.resolved
    at_eps = [r for r in _records(sound, "certified_accuracy") if "threat_eps" in r.condition][0]
    without = [r for r in _records(loose, "certified_accuracy") if "threat_eps" in r.condition][0]
    assert rejected > 0 and any("rejected" in w for w in sound.warnings)
    said = next(w for w in sound.warnings if "rejected" in w)  # what rounding: false changes, in plain words
    assert said.endswith("with rounding: false they would count as verified, as they do for verifiers that ignore rounding")
    assert round(without.value * 60) - round(at_eps.value * 60) == rejected
    assert loose.artifacts["rejected_by_rounding_allowance"] == 0 and not any("rejected" in w for w in loose.warnings)
    # at every radius of the curve, eps 0 included (it was counted at the threat eps only, where often nothing is verified)
    per_eps = sound.artifacts["rejected_by_rounding_per_eps"]
    curve_sound = {r.condition["eps"]: round(r.value * 60) for r in _records(sound, "certified_accuracy") if "eps" in r.condition}
    curve_loose = {r.condition["eps"]: round(r.value * 60) for r in _records(loose, "certified_accuracy") if "eps" in r.condition}
    assert per_eps["eps"][0] == 0.0 and per_eps["rejected"] == [curve_loose[e] - curve_sound[e] for e in per_eps["eps"]]
    assert per_eps["rejected"][per_eps["eps"].index(0.01)] == rejected


def test_bad_parameters_are_reported_with_their_path() -> None:
    _, errors = validate_data(
        {"name": "t", "dataset": {"manifest": "mnist5k"}, "evaluations": {"certification": [{"name": "smoothing", "params": {"sigma": -1}}]}}
    )
    assert errors and errors[0].startswith("evaluations.certification[0].params.sigma")
    _, errors = validate_data(
        {"name": "t", "dataset": {"manifest": "mnist5k"}, "evaluations": {"certification": [{"name": "smothing"}]}}
    )
    assert "did you mean 'smoothing'" in errors[0]


@pytest.mark.gpu
def test_ibp_crown_lipschitz_sections_on_cuda_match_cpu(digit_mlp, digits) -> None:
    threat = _threat([{"name": "ibp", "params": {"pgd_check_steps": 10}}, {"name": "crown"}, {"name": "lipschitz"}], {"norm": "Linf", "eps": 0.01})
    for index, record in [(0, "certified_accuracy"), (1, "certified_accuracy"), (2, "average_certified_radius")]:
        cpu, _ = _run(copy.deepcopy(digit_mlp), digits, threat, index)
        cuda, _ = _run(copy.deepcopy(digit_mlp), digits, threat, index, device="cuda")
        assert [c.status for c in cuda.checks] == [c.status for c in cpu.checks]
        a, b = _records(cpu, record)[0], _records(cuda, record)[0]
        assert abs(a.value - b.value) <= 1.5 / a.n if record == "certified_accuracy" else a.value == pytest.approx(b.value, rel=1e-4)


def test_ibp_attacks_the_verified_examples_at_every_radius_and_no_verified_example_is_inconclusive(digit_mlp, digits) -> None:
    """The PGD check ran at the threat's eps only, where nothing was verified: 'PGD broke 0 of 0' passed,
    and counted among the gradient-masking checks of the checklist."""
    from robench.report.checklist import checklist

    data = digits.subset(40)
    threat = _threat([{"name": "ibp", "params": {"pgd_check_steps": 5, "eps_fractions": [0.01, 1.0]}}], {"norm": "Linf", "eps": 0.3})
    out, _ = _run(digit_mlp, data, threat)
    check = out.checks[0]
    points = sorted((r for r in _records(out, "certified_accuracy") if "eps" in r.condition), key=lambda r: r.condition["eps"])
    assert points[0].condition["eps"] == 0  # the curve's start; PGD has nothing to check there
    curve = [round(r.value * 40) for r in points[1:]]
    assert curve[0] > 0 and curve[1] == 0  # verified at eps 0.003, none at 0.3
    assert check.status == "pass" and check.evidence["verified"] == curve and check.evidence["broken"] == [0, 0]
    nothing, _ = _run(digit_mlp, data, _threat([{"name": "ibp", "params": {"pgd_check_steps": 5, "eps_fractions": [1.0]}}],
                                               {"norm": "Linf", "eps": 0.3}))  # fmt: skip
    assert nothing.checks[0].status == "inconclusive" and "nothing to break" in nothing.checks[0].message
    items = {i.key: i for i in checklist(certification_results(threat, {"ibp": nothing}))}
    assert items["masking_checks"].status == "n/a"  # a certifier's soundness check is not a gradient-masking check
    assert items["certification"].status == "warn" and "ibp_pgd_consistency inconclusive" in items["certification"].evidence


def test_ibp_radii_may_be_fractions_and_are_recorded_as_written(digit_mlp, digits) -> None:
    """Ten-digit fractions (0.0033333333 of eps 0.3) recorded radii 0.00099999999 that the report
    showed as 0.001: a join on eps == 0.001 found nothing. Fractions are now written exactly."""
    threat = _threat([{"name": "ibp", "params": {"pgd_check_steps": 0, "eps_fractions": ["1/300", "1/30", 0.1]}}], {"norm": "Linf", "eps": 0.3})
    out, _ = _run(digit_mlp, digits.subset(8), threat)
    assert out.resolved["grid"] == [0.001, 0.01, 0.03, 0.3]
    assert sorted(r.condition["eps"] for r in _records(out, "certified_accuracy") if "eps" in r.condition) == [0.0, 0.001, 0.01, 0.03, 0.3]
    from robench._errors import ConfigError

    bad = _threat([{"name": "ibp", "params": {"eps_fractions": ["a third"]}}], {"norm": "Linf", "eps": 0.3})
    with pytest.raises(ConfigError, match=r"params.eps_fractions: expected a number > 0 or a fraction"):
        bad.resolved_params("certification", bad.evaluations.certification[0])


@pytest.mark.parametrize("name", ["ibp", "crown", "lipschitz"])
def test_deterministic_certifiers_record_the_ieee_float32_they_run_in(digit_mlp, digits, name: str) -> None:
    # they bound the model inside ieee_fp32 (no TF32): their cost says fp32 even where the
    # device's default (the label a cost starts with on CUDA) is TF32 convolutions
    threat = _threat([{"name": name, **({"params": {"pgd_check_steps": 0}} if name != "lipschitz" else {})}], {"norm": "Linf", "eps": 0.01})
    handle = load_model(digit_mlp, device="cpu")
    ctx = EvalContext(device=torch.device("cpu"), seed=0, batch_size=50, progress=False, precision="fp32 (TF32 convolutions)")
    spec = threat.evaluations.certification[0]
    ctx.begin(f"certification/{spec.key}")
    registry.get("evaluation", "certification")(handle, digits.subset(8), threat, spec, ctx)
    assert ctx.cost.precision == "fp32"


def test_a_box_verifier_at_its_own_eps_records_no_certified_accuracy_at_the_threat_models(digit_mlp, digits) -> None:
    """IBP with params.eps = 0.005 under a threat model of eps 0.1 recorded its number at 0.005 as the
    certified accuracy at the threat model's eps (threat_eps: 0.005), and the report compared its
    examples with attacks at 0.1: PGD "broke" 6 of 23 certified examples, a checklist failure
    ("a robench bug") for a sound certificate. Now it records the curve only, and says so."""
    import torch

    from robench.report.checklist import certified_but_broken
    from robench.results import EvaluationResult, MetricRecord, pack_outcomes

    data = digits.subset(20)
    threat = _threat([{"name": "ibp", "params": {"pgd_check_steps": 0, "eps": 0.005}}], {"norm": "Linf", "eps": 0.1})
    out, _ = _run(digit_mlp, data, threat)
    assert not [r for r in _records(out, "certified_accuracy") if "threat_eps" in r.condition]
    assert "certified_accuracy" not in out.outcomes
    assert any("not the threat model's Linf eps = 0.1" in w for w in out.warnings)
    assert [r.condition["eps"] for r in _records(out, "certified_accuracy")][-1] == 0.005  # the curve still holds its eps
    # results of an older robench, with the record at params.eps labelled as the threat's: no comparison with attacks at 0.1
    out.records.append(MetricRecord.proportion("certification/ibp", "certified_accuracy", 20, 20,
                                               {"certifier": "ibp", "norm": "Linf", "threat_norm": "Linf", "threat_eps": 0.005}))  # fmt: skip
    out.outcomes["certified_accuracy"] = pack_outcomes(torch.ones(20, dtype=torch.bool))
    results = certification_results(threat, {"ibp": out})
    results.evaluations[0].outcomes = out.outcomes
    attack = MetricRecord.proportion("attacks/pgd", "robust_accuracy", 0, 20, {"norm": "Linf", "eps": 0.1})
    results.evaluations.append(EvaluationResult(key="attacks/pgd", section="attacks", name="pgd", status="success", records=[attack],
                                                outcomes={"robust_accuracy": pack_outcomes(torch.zeros(20, dtype=torch.bool))}))  # fmt: skip
    assert certified_but_broken(results) == []
    row = build(results)["rows"][0]
    assert row["headline"] is None and row["threat_eps"] == 0.1  # the figure's dashed line: the threat model's eps
