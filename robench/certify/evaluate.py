"""The ``certification`` section: run each declared certifier (``threat.evaluations.certification``)."""

from __future__ import annotations

from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset
from robench.models.wrapper import ModelHandle
from robench.registry import register, registry
from robench.threat_model import EvaluationSpec, ThreatModel


@register("evaluation", "certification")
def evaluate_certification(
    model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, ctx: EvalContext
) -> EvaluationOutput:
    """Certified accuracy of one declared certifier (``spec.name``) with its validated parameters."""
    params = threat.resolved_params("certification", spec)
    certifier = registry.get("certifier", spec.name)
    output = certifier.evaluate(model, data, threat, spec, params, ctx)
    output.artifacts.setdefault("certifier", spec.name)
    return output
