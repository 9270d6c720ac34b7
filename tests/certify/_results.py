"""A minimal results file holding certification outputs, for the report-section tests."""

from __future__ import annotations

from robench.context import EvaluationOutput
from robench.results import EvaluationResult, Results
from robench.threat_model import ThreatModel


def certification_results(threat: ThreatModel, outputs: dict[str, EvaluationOutput]) -> Results:
    """Results on 200 28x28 digits with one successful ``certification/<key>`` evaluation per output."""
    results = Results(
        threat_model=threat.model_dump(mode="json"), threat_model_sha256=threat.sha256,
        model={"source": "test", "format": "module"},
        dataset={"manifest": "m", "manifest_sha256": "0", "format": "npz", "split": "test", "n_examples": 200,
                 "num_classes": 10, "input_shape": [1, 28, 28], "verified": "none"},
        environment={"robench_version": "0", "python": "3"}, options={"only": None},
    )  # fmt: skip
    for key, output in outputs.items():
        results.evaluations.append(
            EvaluationResult(key=f"certification/{key}", section="certification", name=key, status="success",
                             records=output.records, checks=output.checks, artifacts=output.artifacts, resolved=output.resolved,
                             warnings=output.warnings)
        )  # fmt: skip
    return results
