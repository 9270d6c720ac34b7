"""Fuzzing: the threat-model parser and the results loader only ever answer with error lines or
a valid object, never an unexpected exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robench._errors import ConfigError
from robench.results import load_results
from robench.threat_model import ThreatModel, validate_data, validate_file

KEYS = ["schema_version", "name", "dataset", "adversary", "evaluations", "manifest", "split", "eps", "norm", "attacks",
        "params", "steps", "corruptions", "severities", "n_examples", "bounds", "goal", "claims", "stride"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["8/255", "Linf", "L2", "mnist5k", "test", "pgd", "1/0", "-3", "nan"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5)),
    max_leaves=25,
)

VALID = {"schema_version": 1, "name": "f", "dataset": {"manifest": "mnist5k", "split": "test"},
         "adversary": {"norm": "Linf", "eps": "8/255"}, "evaluations": {"attacks": [{"name": "pgd"}]}}


def _check(data: Any) -> None:
    model, errors = validate_data(data)
    assert all(isinstance(e, str) and e and "\n" not in e for e in errors)
    assert (model is None) == bool(errors)
    if model is not None:
        assert isinstance(model, ThreatModel) and len(model.sha256) == 64


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents(data: Any) -> None:
    _check(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["dataset", "adversary", "evaluations", ""]), st.sampled_from(KEYS), scalars),
                max_size=4))
def test_mutations_of_a_valid_document(mutations: list[tuple[str, str, Any]]) -> None:
    data = json.loads(json.dumps(VALID))
    for section, key, value in mutations:
        target = data.get(section) if section else data
        if isinstance(target, dict):
            target[key] = value
    _check(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_as_yaml_file(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.yaml"
        path.write_bytes(raw)
        errors = validate_file(path)
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)


@settings(max_examples=200, deadline=None)
@given(documents | st.text(max_size=200))
def test_results_loader(data: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data, allow_nan=True))
        try:
            load_results(path)
        except ConfigError as exc:
            assert str(exc)


def test_valid_document_round_trips_through_yaml() -> None:
    model, errors = validate_data(yaml.safe_load(yaml.safe_dump(VALID)))
    assert errors == [] and model is not None
