"""The results schema: round trip, validation, atomic writes, error paths."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from robench._errors import ConfigError
from robench.results import (
    SCHEMA_VERSION,
    Check,
    Cost,
    DatasetInfo,
    EvaluationResult,
    MetricRecord,
    ModelInfo,
    Results,
    atomic_write_text,
    load_results,
)
from robench.runner import environment
import torch


def _results() -> Results:
    ev = EvaluationResult(key="attacks/pgd", section="attacks", name="pgd", declared={"steps": 10})
    ev.records = [
        MetricRecord.proportion("attacks/pgd", "robust_accuracy", 37, 100, {"attack": "pgd"}),
        MetricRecord(evaluation="attacks/pgd", name="median_perturbation_norm", value=0.03, n=60, unit="linf"),
    ]
    ev.checks = [Check(name="iterative_stronger_than_single_step", status="pass", message="PGD <= FGSM", evidence={"pgd": 0.37, "fgsm": 0.45})]
    ev.cost = Cost(wall_time_s=1.5, forward_passes=2000, backward_passes=1900)
    ev.status = "success"
    results = Results(
        seed=3,
        threat_model={"name": "x", "dataset": {"manifest": "mnist5k", "split": "test"}, "adversary": {"norm": "Linf", "eps": 0.3}},
        threat_model_sha256="0" * 64,
        model=ModelInfo(source="m.pt", format="state_dict", sha256="1" * 64, arch="small_cnn", num_parameters=10),
        dataset=DatasetInfo(
            manifest="mnist5k", manifest_sha256="2" * 64, format="npz", root="/d", split="test",
            n_examples=100, num_classes=10, input_shape=[1, 28, 28], verified="sha256 of 1 file",
        ),
        environment=environment(torch.device("cpu")),
    )
    results.evaluations.append(ev)
    return results


def test_round_trip(tmp_path: Path) -> None:
    results = _results()
    path = results.save(tmp_path / "out" / "results.json")
    again = load_results(path)
    assert again == results
    record = again.records(name="robust_accuracy")[0]
    assert (record.n, record.value) == (100, 0.37)
    assert record.ci_low < 0.37 < record.ci_high and record.interval == "clopper-pearson"
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 2 and data["status"] == "started"
    for key in ("evaluation", "name", "value", "n", "ci_low", "ci_high", "condition", "unit"):
        assert key in data["evaluations"][0]["records"][0]
    assert not list(path.parent.glob("*.tmp*"))


@pytest.mark.parametrize(
    ("threat", "message"),
    [({"x": 1}, "name: required key is missing"), ({"name": "t"}, "dataset: required key is missing"),
     ({"name": "t", "dataset": {"manifest": "m"}, "adversary": {"eps": "abc"}}, "adversary.eps"),
     ({"name": "t", "dataset": {"manifest": "m"}, "adversary": {"eps": 10**400}}, "adversary.eps"),  # no OverflowError
     ({"name": "t", "dataset": {"manifest": "m"}, "evaluations": {"attacks": "pgd"}}, "evaluations.attacks"),
     ({"name": "t", "dataset": {"manifest": "m"}, "evaluations": {"attacks": [{"name": "pgd"}, None]}}, "evaluations.attacks"),
     ({"name": "t", "dataset": {"manifest": "m"}, "claims": 2.0}, "claims: Input should be a valid dictionary"),
     # the schema the threat model was written from: these loaded, then crashed the report
     ({"name": "t", "dataset": {"manifest": "m"}, "adversary": {"eps": 0.1}, "evaluations": {"attacks": [{"name": None}]}},
      r"evaluations.attacks\[0\].name: Input should be a valid string"),
     ({"name": "t", "dataset": {"manifest": "m"}, "evaluations": {"calibration": {"conditions": 5}}}, "evaluations.calibration.conditions"),
     ({"name": "t", "dataset": {"manifest": "m"}, "evaluations": {"stability": True}}, "evaluations.stability"),
     ({"name": "t", "dataset": {"manifest": "m"}, "adversary": {"eps": 0.1, "bounds": None}}, "adversary.bounds"),
     ({"name": "t", "dataset": {"manifest": "m"}, "adversary": {"eps": -0.1}}, "adversary.eps: expected eps > 0"),
     ({"name": "t", "dataset": {"manifest": "m"}, "claims": None}, "claims: Input should be a valid dictionary")],
)
def test_a_recorded_threat_model_the_report_cannot_read_is_refused_on_load(tmp_path: Path, threat: dict, message: str) -> None:
    """`report` read threat_model.name and .adversary.eps of any JSON: an internal error, not one line."""
    path = _results().save(tmp_path / "results.json")
    data = json.loads(path.read_text())
    data["threat_model"] = threat
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_results(path)


def test_a_recorded_threat_model_with_keys_of_another_version_still_loads(tmp_path: Path) -> None:
    path = _results().save(tmp_path / "results.json")
    data = json.loads(path.read_text())
    data["threat_model"]["adversary"]["future_option"] = 1
    data["threat_model"]["retired_section"] = {"x": 1}
    path.write_text(json.dumps(data))
    assert load_results(path).threat_model["retired_section"] == {"x": 1}


def test_json_too_deep_or_with_a_huge_integer_is_refused_on_load(tmp_path: Path) -> None:
    for name, text in (("deep", "[" * 100_000 + "]" * 100_000), ("bigint", '{"seed": ' + "9" * 5000 + "}")):
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        with pytest.raises(ConfigError, match="not a robench results file"):
            load_results(path)


def test_writing_into_a_folder_or_under_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path, tmp_path / "afile" / "results.json"):
        with pytest.raises(ConfigError, match="folder|cannot write"):
            _results().save(target)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_writing_onto_a_device_or_fifo_is_a_config_error_and_leaves_it(tmp_path: Path) -> None:
    """The atomic rename replaced whatever was at the path: `robench report r.json --out /dev/null`
    run as root turned /dev/null into a regular file holding the report."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        atomic_write_text(fifo, "x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and not list(tmp_path.glob(".fifo.*"))


def test_non_finite_values_rejected() -> None:
    with pytest.raises(ValidationError):
        MetricRecord(evaluation="e", name="n", value=float("nan"))
    with pytest.raises(ValidationError):
        MetricRecord(evaluation="e", name="n", value=0.1, ci_low=0.0)
    # an interval end or a cost that is NaN/inf would be written as null and the file refused on load
    for low, high in ((float("nan"), 0.7), (0.1, float("inf"))):
        with pytest.raises(ValidationError, match="non-finite"):
            MetricRecord(evaluation="e", name="n", value=0.5, ci_low=low, ci_high=high)
    with pytest.raises(ValidationError, match="not finite"):
        Cost(wall_time_s=float("nan"))


def test_an_inconclusive_check_is_written_as_version_2_and_version_1_files_still_load(tmp_path: Path) -> None:
    """A check that could not fail is neither pass nor fail (schema version 2); a version-1 file,
    whose checks are pass/warn/fail only, loads as it is."""
    results = _results()
    results.evaluations[0].checks.append(
        Check(name="near_zero_at_large_eps", status="inconclusive", message="inconclusive: no clean-correct examples to compare (0 of 0)",
              evidence={"n": 5, "eligible": 0})  # fmt: skip
    )
    path = results.save(tmp_path / "v2.json")
    assert json.loads(path.read_text())["schema_version"] == 2
    assert [c.status for c in load_results(path).evaluations[0].checks] == ["pass", "inconclusive"]
    data = json.loads(_results().save(tmp_path / "v1.json").read_text())
    data["schema_version"] = 1
    (tmp_path / "v1.json").write_text(json.dumps(data))
    old = load_results(tmp_path / "v1.json")
    assert old.schema_version == 1 and old.evaluations[0].checks[0].status == "pass"
    with pytest.raises(ValidationError):
        Check(name="x", status="maybe", message="")


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"schema_version": 99}', "schema_version"), ('{"schema_version": 1, "x": 1}', "results")],
)
def test_load_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_results(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_results(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [({"value": 2.0}, "is a fraction but its value is 2.0"), ({"condition": {"eps": "8/255"}}, "condition eps '8/255'"),
     ({"condition": {"eps": 10**400}}, "condition eps 1000"),  # no OverflowError from math.isfinite
     # these loaded: `robench compare` called the swapped interval disjoint from the other run's
     ({"ci_low": 0.9, "ci_high": 0.1}, "ci_low 0.9 above ci_high 0.1"), ({"n": -5}, r"records.0.n: Input should be greater than or equal to 0")],
)
def test_a_damaged_record_is_refused_on_load(tmp_path: Path, change: dict, message: str) -> None:
    """A corruption accuracy of 2.0 or an eps written as text loaded, then crashed the report."""
    path = _results().save(tmp_path / "results.json")
    data = json.loads(path.read_text())
    record = data["evaluations"][0]["records"][0]
    assert record["unit"] == "fraction"
    record.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_results(path)


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        ("record", {"n": True}, "evaluations.0.records.0.n: expected a number, got the boolean true"),
        ("record", {"ci_low": False}, "evaluations.0.records.0.ci_low: expected a number, got the boolean false"),
        ("cost", {"forward_passes": True}, "evaluations.0.cost.forward_passes: expected a number, got the boolean true"),
        ("model", {"randomized": 1}, "model.randomized: expected true or false, got 1"),
        ("model", {"trusted_pickle": "no"}, "model.trusted_pickle: expected true or false, got 'no'"),
        ("dataset", {"n_examples": True}, "dataset.n_examples: expected a number, got the boolean true"),
    ],
)
def test_results_scalars_are_strict(tmp_path: Path, where: str, change: dict, message: str) -> None:
    """pydantic's lax mode read a record's ``n: true`` as 1 example and ``randomized: 1`` as true;
    results.json now has the threat model's strict scalars."""
    path = _results().save(tmp_path / "results.json")
    data = json.loads(path.read_text())
    target = {"record": data["evaluations"][0]["records"][0], "cost": data["evaluations"][0]["cost"],
              "model": data["model"], "dataset": data["dataset"]}[where]
    target.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        load_results(path)
    assert str(caught.value) == f"{path}: not a robench results file: {message}"


@pytest.mark.parametrize(
    ("change", "message"),
    [(lambda d: d["evaluations"].append(dict(d["evaluations"][0])), "evaluations: two evaluations have the key 'attacks/pgd'"),
     (lambda d: d["evaluations"][0]["cost"].update(wall_time_s=-5.0), "evaluations.0.cost: cost wall_time_s is negative (-5.0)"),
     (lambda d: d["evaluations"][0]["cost"].update(forward_passes=-1), "evaluations.0.cost.forward_passes: Input should be greater than or equal to 0")],
    ids=["duplicate-key", "negative-time", "negative-passes"],
)
def test_duplicate_evaluations_and_negative_costs_are_refused_on_load(tmp_path: Path, change, message: str) -> None:
    """A second evaluation of the same key loaded, and the report and `compare` read only the first;
    a negative wall time or pass count was summed into the run's cost."""
    path = _results().save(tmp_path / "results.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        load_results(path)
    assert str(caught.value) == f"{path}: not a robench results file: {message}"


def test_results_written_before_the_provenance_fields_still_load(tmp_path: Path) -> None:
    """model.provenance, dataset.files_sha256 and environment.numerics are optional: an older file
    (without them) loads, with none recorded; a new one round-trips them."""
    results = _results()
    results.model.provenance = {"trained_by": "robench demo", "epochs": 10, "trained_with_torch": None}
    results.dataset.files_sha256 = {"mnist_5k.csv.gz": "3" * 64}
    assert results.environment.numerics is not None
    assert load_results(results.save(tmp_path / "new.json")) == results
    data = json.loads(results.model_dump_json())
    del data["model"]["provenance"], data["dataset"]["files_sha256"], data["environment"]["numerics"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_results(tmp_path / "old.json")
    assert old.model.provenance is None and old.dataset.files_sha256 == {} and old.environment.numerics is None


@pytest.mark.parametrize(
    "delta,values,text",
    [(0.0001903, (0.4356, 0.4358), "+0.0002"), (-0.25, (12.5, 12.25), "-0.25"), (-1e-7, (0.4356, 0.4356), "0.0000"),
     (3.0, (1e7, 1e7 + 3), "+3"), (0.05, (0.0, 0.05), "+0.05000")],
)  # fmt: skip
def test_a_difference_is_written_to_the_decimals_of_its_values(delta, values, text) -> None:
    """compare printed an ACR delta as +0.0001903 beside values written 0.4356 and 0.4358."""
    from robench.results import MetricRecord, signed_difference

    assert signed_difference(delta, *values) == text
    shown = MetricRecord(evaluation="e", name="m", value=values[1], unit="l2").formatted()[0]
    assert len(shown.split(".")[-1]) == len(text.split(".")[-1]) or "." not in text
