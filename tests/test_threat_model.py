"""Threat models: schema, eps parsing, safe YAML, error paths, shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from robench._errors import ConfigError
from robench.threat_model import (
    ThreatModel,
    ThreatModelError,
    builtin_dir,
    format_eps,
    load_threat_model,
    parse_eps,
    validate_file,
)

BASE = """schema_version: 1
name: t
dataset: {manifest: mnist5k, split: test, n_examples: 10}
adversary: {norm: Linf, eps: 8/255}
"""


@pytest.mark.parametrize(
    ("text", "value"), [("8/255", 8 / 255), ("0.3", 0.3), (0.5, 0.5), ("4 / 255", 4 / 255), (1, 1.0)]
)
def test_parse_eps(text: object, value: float) -> None:
    assert parse_eps(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("bad", ["8/0", "-0.1", "abc", "1/2/3", float("nan"), float("inf"), True, "", 0])
def test_parse_eps_rejects(bad: object) -> None:
    with pytest.raises((ValueError, ConfigError)):
        parse_eps(bad)


def test_format_eps_round_trips_fractions_of_255() -> None:
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(0.5) == "0.5"


def test_frozen_and_extra_keys_forbidden(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE)
    tm = load_threat_model(path)
    assert tm.adversary is not None and tm.adversary.eps == pytest.approx(8 / 255)
    with pytest.raises(ValidationError):
        tm.name = "other"  # type: ignore[misc]
    path.write_text(BASE + "surprise: 1\n")
    errors = validate_file(path)
    assert errors == ["surprise: unknown key (not part of the schema)"]


def test_sha256_is_canonical(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(BASE)
    # same content, other key order, other spelling of eps
    b.write_text(
        "adversary: {eps: 0.03137254901960784, norm: Linf}\nname: t\nschema_version: 1\n"
        "dataset: {split: test, n_examples: 10, manifest: mnist5k}\n"
    )
    assert load_threat_model(a).sha256 == load_threat_model(b).sha256
    c = tmp_path / "c.yaml"
    c.write_text(BASE.replace("8/255", "4/255"))
    assert load_threat_model(c).sha256 != load_threat_model(a).sha256


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (("eps: 8/255", "eps: -1"), "adversary.eps"),
        (("norm: Linf", "norm: L7"), "adversary.norm"),
        (("n_examples: 10", "n_examples: 0"), "dataset.n_examples"),
        (("schema_version: 1", "schema_version: 9"), "schema_version"),
        (("eps: 8/255}", "eps: 100, bounds: [0, 255]}"), "adversary"),  # pixels are in [0, 1]
        (("eps: 8/255}", "eps: 0.1, bounds: [-1, 1]}"), "adversary"),
    ],
)
def test_errors_carry_yaml_path(tmp_path: Path, replace: tuple[str, str], expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE.replace(*replace))
    errors = validate_file(path)
    assert errors and errors[0].startswith(expected + ":"), errors
    with pytest.raises(ThreatModelError):
        load_threat_model(path)


def test_unknown_attack_and_bad_params_named(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE + "evaluations:\n  attacks:\n    - name: pgdd\n    - name: pgd\n      params: {steps: -3, stepz: 1}\n")
    errors = validate_file(path)
    assert any(e.startswith("evaluations.attacks[0].name:") and "pgd" in e for e in errors), errors
    assert any(e.startswith("evaluations.attacks[1].params.steps:") for e in errors), errors
    assert any(e.startswith("evaluations.attacks[1].params.stepz:") for e in errors), errors


@pytest.mark.parametrize(
    "text",
    [
        "name: [unclosed\n",
        "a: &x [1]\nb: *x\n",  # aliases refused
        "!!python/object/apply:os.system ['echo pwned']\n",
        "- just\n- a list\n",
        "[" * 5000 + "\n",  # nesting deeper than the parser's recursion
        BASE.replace("eps: 8/255", "eps: 1" + "0" * 400),  # an integer no float holds
        BASE.replace("eps: 8/255", "eps: 8/255, eps: 0.9"),  # YAML kept the last one silently
        BASE + BASE.split("\n", 1)[1],  # every top-level key twice
    ],
    ids=["unclosed", "alias", "python-tag", "list", "deep", "huge-eps", "duplicate-key", "duplicate-sections"],
)
def test_malformed_yaml_is_an_error_not_a_crash(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    errors = validate_file(path)
    assert errors and all(isinstance(e, str) and "\n" not in e for e in errors)
    if "eps: 0.9" in text or text.count("schema_version") > 1:  # the duplicate-key cases
        assert any("duplicated key" in e for e in errors), errors


def test_schema_errors_do_not_hide_registry_and_manifest_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "schema_version: 1\nname: bad\ndataset: {manifest: mnist5k, split: tset, n_examples: -3}\n"
        "adversary: {norm: Linf2, eps: 8/0}\n"
        "evaluations:\n  attacks:\n    - name: pgdd\n    - name: pgd\n      params: {stepz: 10}\n  calibraton: {}\n"
    )
    errors = validate_file(path)
    paths = [e.split(": ", 1)[0] for e in errors]
    # the schema errors, and in the same pass the unknown attack, the unknown parameter and the bad split
    assert paths == ["dataset.n_examples", "adversary.norm", "adversary.eps", "evaluations.calibraton",
                     "evaluations.attacks[0].name", "evaluations.attacks[1].params.stepz", "dataset.split"], errors  # fmt: skip
    assert "did you mean 'pgd'" in errors[4] and "has no split 'tset'" in errors[6]
    # a path with a schema error is not reported twice
    path.write_text(BASE.replace("manifest: mnist5k", "manifest: 3").replace("adversary: {norm: Linf", "adversary: {norm: L9"))
    assert [e.split(": ", 1)[0] for e in validate_file(path)] == ["dataset.manifest", "adversary.norm"]


def test_validate_names_an_unreadable_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robench.cli import main

    missing = tmp_path / "nonexist.yaml"
    assert validate_file(missing) == ["cannot read threat model (No such file or directory)"]
    assert main(["validate", str(missing)]) == 2
    assert capsys.readouterr().err.count(str(missing)) == 1


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(ConfigError, match="no threat-model file"):
        load_threat_model("mnist-linf-0.4")


def test_shipped_threat_models_are_valid_and_named_after_their_file() -> None:
    files = sorted(builtin_dir().glob("*.yaml"))
    names = {f.stem for f in files}
    for required in (
        "mnist-linf-0.3",
        "cifar10-linf-8_255",
        "cifar10-l2-0.5",
        "cifar10-corruptions",
        "cifar100-linf-8_255",
        "imagenet-linf-4_255",
        "imagenet-corruptions",
        "cifar10-smoothing-l2",
    ):
        assert required in names
    for path in files:
        assert validate_file(path) == [], path
        assert load_threat_model(path).name == path.stem


def test_leaderboard_settings() -> None:
    linf = load_threat_model("cifar10-linf-8_255")
    assert linf.adversary is not None and linf.adversary.eps == pytest.approx(8 / 255)
    assert linf.dataset.n_examples == 10000
    l2 = load_threat_model("cifar10-l2-0.5")
    assert l2.adversary is not None and (l2.adversary.norm, l2.adversary.eps) == ("L2", 0.5)
    imagenet = load_threat_model("imagenet-linf-4_255")
    assert imagenet.adversary is not None and imagenet.adversary.eps == pytest.approx(4 / 255)
    assert (imagenet.dataset.n_examples, imagenet.dataset.center_crop) == (5000, 224)
    smoothing = load_threat_model("cifar10-smoothing-l2")
    assert (smoothing.dataset.n_examples, smoothing.dataset.stride) == (500, 20)


def test_model_validate_round_trip() -> None:
    tm = load_threat_model("mnist-linf-0.3")
    again = ThreatModel.model_validate_json(tm.canonical_json())
    assert again == tm and again.sha256 == tm.sha256


def test_fast_audit_is_the_audit_with_speed_levers_only() -> None:
    def load(name: str) -> dict:
        data = yaml.safe_load((builtin_dir() / f"{name}.yaml").read_text())
        data.pop("name"), data.pop("description")
        return data

    exact, fast = load("cifar10-audit"), load("cifar10-audit-fast")
    for entry in fast["evaluations"]["attacks"] + fast["evaluations"]["certification"]:
        if entry["name"] in ("autoattack", "smoothing"):
            assert entry["params"].pop("mode") == "fast" and entry["params"].pop("compile") is True
    assert fast["evaluations"]["stability"].pop("rng") == "device"
    assert fast == exact


def test_validate_finds_attacks_that_cannot_run_under_the_norm(tmp_path: Path) -> None:
    """validate said ok for ddn under Linf, which the run then refused."""
    path = tmp_path / "t.yaml"
    path.write_text(BASE + "evaluations: {attacks: [{name: pgd}, {name: ddn}, {name: fmn, params: {norm: L2}}]}\n")
    errors = validate_file(path)
    assert errors == ["evaluations.attacks[1].name: DDN minimises L2, the threat model's norm is Linf"], errors


def test_claims_are_validated_with_their_path(tmp_path: Path) -> None:
    """validate said ok for a claimed accuracy in percent and a misspelt key; only the report's
    checklist complained, after the run."""
    path = tmp_path / "t.yaml"
    path.write_text(BASE + "claims: {robust_accuracy: 60, clean_acc: 0.9, eps: 8/0, norm: linf, other_threats: L2}\n")
    errors = validate_file(path)
    assert [e.split(": ", 1)[0] for e in errors] == [
        "claims.norm", "claims.eps", "claims.robust_accuracy", "claims.other_threats", "claims.clean_acc"
    ], errors  # fmt: skip
    assert "fraction in [0, 1]" in errors[2] and "60" in errors[2]
    assert errors[4] == "claims.clean_acc: unknown key (not part of the schema)"
    for bad in ("true", "'0.6'", "1.5", "-0.1", ".nan", "null"):
        path.write_text(BASE + f"claims: {{certified_accuracy: {bad}}}\n")
        assert [e.split(": ", 1)[0] for e in validate_file(path)] == ["claims.certified_accuracy"], bad


def test_valid_claims_keep_their_spelling_in_the_canonical_json(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    claims = {"source": "card", "dataset": "mnist5k", "norm": "Linf", "eps": "8/255", "clean_accuracy": 1,
              "robust_accuracy": 0.6, "certified_accuracy": 0, "mean_corruption_accuracy": 0.5, "other_threats": ["L2:0.5"]}  # fmt: skip
    path.write_text(BASE + f"claims: {yaml.safe_dump(claims, default_flow_style=True)}")
    tm = load_threat_model(path)
    assert tm.model_dump(mode="json")["claims"] == claims  # only the given keys, as written
    assert '"clean_accuracy":1,' in tm.canonical_json() and '"eps":"8/255"' in tm.canonical_json()
    path.write_text(BASE)
    assert load_threat_model(path).model_dump(mode="json")["claims"] == {}
    assert ThreatModel.model_validate_json(tm.canonical_json()) == tm


@pytest.mark.parametrize(
    ("replace", "extra", "path"),
    [
        (("n_examples: 10", "n_examples: true"), "", "dataset.n_examples"),
        (("schema_version: 1", "schema_version: true"), "", "schema_version"),
        (("", ""), "evaluations: {attacks: [{name: pgd, params: {steps: true}}]}", "evaluations.attacks[0].params.steps"),
        (("", ""), "evaluations: {attacks: [{name: pgd, params: {restarts: true}}]}", "evaluations.attacks[0].params.restarts"),
        (("", ""), "evaluations: {corruptions: {severities: [2, true]}}", "evaluations.corruptions.severities"),
        (("", ""), "evaluations: {calibration: {n_bins: true}}", "evaluations.calibration.n_bins"),
        (("", ""), "evaluations: {certification: [{name: smoothing, params: {sigma: true}}]}", "evaluations.certification[0].params.sigma"),
    ],
)
def test_a_boolean_is_not_a_number(tmp_path: Path, replace: tuple[str, str], extra: str, path: str) -> None:
    """pydantic's lax mode read YAML true as 1 (``steps: true`` ran one PGD step, ``severities: [true]`` severity 1)."""
    file = tmp_path / "t.yaml"
    file.write_text(BASE.replace(*replace) + extra + "\n")
    assert validate_file(file) == [f"{path}: expected a number, got the boolean true"]


def _registered_params(wanted) -> list[tuple[str, type, str]]:  # type: ignore[no-untyped-def]
    """``(entry name, params model, field name)`` of every attack's and certifier's parameter whose
    annotation ``wanted`` accepts."""
    from robench.registry import registry

    registry.load_builtins()
    return [(entry.name, entry.params, name) for kind in ("attack", "certifier") for entry in registry.entries(kind)
            if entry.params is not None for name, field in entry.params.model_fields.items() if wanted(field.annotation)]  # fmt: skip


def _refused(params: type, name: str, value: object, words: str) -> bool:
    with pytest.raises(ValidationError) as caught:
        params.model_validate({name: value})  # type: ignore[attr-defined]
    return any(e["loc"] == (name,) and words in e["msg"] for e in caught.value.errors())


def test_no_parameter_model_takes_a_boolean_for_a_number() -> None:
    """Every attack's and certifier's integer and float parameters refuse true, as the threat model's own fields."""
    from typing import get_args

    def number(annotation: object) -> bool:
        return annotation in (int, float) or set(get_args(annotation)) in ({int, type(None)}, {float, type(None)})

    fields = _registered_params(number)
    assert len(fields) > 40
    for entry, params, name in fields:
        assert _refused(params, name, True, "boolean"), (entry, name)


def test_no_parameter_model_takes_an_infinite_or_nan_number() -> None:
    """``hop_skip_jump``'s ``gamma: .inf`` passed its ``gt=0`` bound and ran; every float parameter
    (and float list, ``eps_grid: [0.1, .inf]``) of every attack and certifier refuses inf and NaN."""
    from typing import get_args

    def floats(annotation: object) -> bool:
        return annotation is float or float in get_args(annotation) or any(float in get_args(arg) for arg in get_args(annotation))

    fields = _registered_params(floats)
    assert len(fields) > 15
    for entry, params, name in fields:
        annotation = params.model_fields[name].annotation
        listed = "tuple" in str(annotation) or "list" in str(annotation)
        for value in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(ValidationError) as caught:
                params.model_validate({name: [0.5, value] if listed else value})
            assert any(e["loc"][0] == name for e in caught.value.errors()), (entry, name, value)


@pytest.mark.parametrize(
    ("adversary", "error"),
    [
        ("{norm: L2, eps: 1e300}", "L2 eps 1e+300 exceeds 28, the L2 diameter of the input box (1 x sqrt(784) for inputs of shape [1, 28, 28])"),
        ("{norm: L2, eps: 15, bounds: [0.25, 0.75]}", "L2 eps 15 exceeds 14, the L2 diameter of the input box (0.5 x sqrt(784)"),
        ("{norm: L1, eps: 785}", "L1 eps 785 exceeds 784, the L1 diameter of the input box (1 x 784 for inputs of shape [1, 28, 28])"),
        ("{norm: L2, eps: 28}", None),
        ("{norm: L1, eps: 784}", None),
    ],
)
def test_an_eps_whose_ball_holds_the_whole_input_box_is_refused(tmp_path: Path, adversary: str, error: str | None) -> None:
    """``norm: L2, eps: 1e300`` validated, and the run failed on NaN logits (a gradient-masking-like message)."""
    path = tmp_path / "t.yaml"
    path.write_text(BASE.replace("adversary: {norm: Linf, eps: 8/255}", f"adversary: {adversary}"))
    errors = validate_file(path)
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(f"adversary.eps: {error}"), errors


def test_the_whole_box_radius_follows_a_center_crop(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("schema_version: 1\nname: t\ndataset: {manifest: imagenet, split: val, center_crop: 100}\n"
                    "adversary: {norm: L1, eps: 30001}\n")  # fmt: skip
    assert [e.split(" (")[0] for e in validate_file(path)] == ["adversary.eps: L1 eps 30001 exceeds 30000, the L1 diameter of the input box"]
    path.write_text(path.read_text().replace("30001", "30000"))
    assert validate_file(path) == []
    # with the crop off the images keep their own size, which the manifest does not give: the run checks it
    path.write_text(path.read_text().replace("center_crop: 100", "center_crop: none").replace("30000", "30001"))
    assert validate_file(path) == []
    from robench.threat_model import load_threat_model

    assert load_threat_model(path).dataset.transform({"resize": 256, "center_crop": 224}) == (256, None)


@pytest.mark.parametrize(
    ("extra", "path", "shown"),
    [
        ("evaluations: {clean: 'yes'}", "evaluations.clean", "'yes'"),
        ("evaluations: {clean: 0}", "evaluations.clean", "0"),
        ("evaluations: {calibration: {temperature_scaling: 'on'}}", "evaluations.calibration.temperature_scaling", "'on'"),
        ("evaluations: {attacks: [{name: pgd, params: {compile: 1}}]}", "evaluations.attacks[0].params.compile", "1"),
        ("evaluations: {certification: [{name: ibp, params: {rounding: 'no'}}]}", "evaluations.certification[0].params.rounding", "'no'"),
    ],
)
def test_a_flag_takes_only_true_or_false(tmp_path: Path, extra: str, path: str, shown: str) -> None:
    """pydantic's lax mode read 1, 'yes', 'on' as true and 0, 'no' as false in a bool field
    (``clean: 'no'`` turned clean accuracy off, ``compile: 1`` compiled the model)."""
    file = tmp_path / "t.yaml"
    file.write_text(BASE + extra + "\n")
    assert validate_file(file) == [f"{path}: expected true or false, got {shown}"]


def test_no_parameter_model_takes_a_number_or_text_for_a_flag() -> None:
    """Every attack's and certifier's bool parameters refuse 1 and 'true', as the threat model's own flags."""
    fields = _registered_params(lambda annotation: annotation is bool)
    assert len(fields) >= 5
    for entry, params, name in fields:
        assert all(_refused(params, name, value, "true or false") for value in (1, "true")), (entry, name)


def test_applicable_fields_leave_out_settings_that_do_not_apply() -> None:
    from robench.threat_model import applicable_fields

    declared = {"name": "t", "dataset": {"manifest": "cifar10"}, "adversary": {"eps": 0.1},
                "evaluations": {"corruptions": {}, "stability": {"source": "released", "released_manifest": "cifar10p"}}}  # fmt: skip
    tm = ThreatModel.model_validate(declared)
    data = tm.model_dump(mode="json")
    shown = applicable_fields(data)
    assert "targets" not in shown["adversary"] and "released_manifest" not in shown["evaluations"]["corruptions"]
    assert shown["evaluations"]["corruptions"]["table"] == "auto" and shown["evaluations"]["corruptions"]["rng"] == "cpu"
    assert "rng" not in shown["evaluations"]["stability"] and shown["evaluations"]["stability"]["released_manifest"] == "cifar10p"
    assert data == tm.model_dump(mode="json") and tm.sha256 == ThreatModel.model_validate(declared).sha256  # the record is untouched


def test_corruptions_quantize_round_trips_and_defaults_to_none(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE + "evaluations:\n  corruptions: {corruptions: [fog], quantize: uint8}\n")
    assert validate_file(path) == []
    tm = load_threat_model(path)
    assert tm.evaluations.corruptions is not None and tm.evaluations.corruptions.quantize == "uint8"
    again = ThreatModel.model_validate(yaml.safe_load(yaml.safe_dump(tm.model_dump(mode="json"))))
    assert again == tm and again.sha256 == tm.sha256
    path.write_text(BASE + "evaluations:\n  corruptions: {corruptions: [fog]}\n")
    default = load_threat_model(path)
    assert default.evaluations.corruptions is not None and default.evaluations.corruptions.quantize == "none"
    assert default.sha256 != tm.sha256  # the setting is part of the threat model's identity


@pytest.mark.parametrize(
    ("corruptions", "expected"),
    [
        ("{quantize: int8}", "evaluations.corruptions.quantize: Input should be 'none', 'uint8' or 'jpeg85' (got 'int8')"),
        ("{quantize: 8}", "evaluations.corruptions.quantize: Input should be 'none', 'uint8' or 'jpeg85' (got 8)"),
        ("{source: released, released_manifest: cifar10c, quantize: uint8}",
         "evaluations.corruptions: quantize 'uint8' applies to generated corruptions only: released images are stored quantised already"),
    ],
    ids=["unknown", "number", "released"],
)
def test_a_bad_quantize_is_one_clear_line(tmp_path: Path, corruptions: str, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE + f"evaluations:\n  corruptions: {corruptions}\n")
    errors = validate_file(path)
    assert errors[:1] == [expected], errors
    with pytest.raises(ThreatModelError) as raised:
        load_threat_model(path)
    assert isinstance(raised.value, ConfigError) and "\n" not in str(raised.value)


def test_quantize_is_not_shown_for_released_corruptions() -> None:
    from robench.threat_model import applicable_fields

    released = {"name": "t", "dataset": {"manifest": "cifar10"},
                "evaluations": {"corruptions": {"source": "released", "released_manifest": "cifar10c"}}}  # fmt: skip
    assert "quantize" not in applicable_fields(ThreatModel.model_validate(released).model_dump(mode="json"))["evaluations"]["corruptions"]
    generated = {"name": "t", "dataset": {"manifest": "cifar10"}, "evaluations": {"corruptions": {"quantize": "jpeg85"}}}
    assert applicable_fields(ThreatModel.model_validate(generated).model_dump(mode="json"))["evaluations"]["corruptions"]["quantize"] == "jpeg85"
