"""The corruptions report section renders from records and artifacts alone."""

from __future__ import annotations

import types

import torch

from robench.context import EvalContext
from robench.registry import registry
from robench.report.render import _environment
from robench.report.sections.corruptions import build
from robench.results import EvaluationResult
from robench.threat_model import CorruptionsSpec
from tests.corruptions.test_sweep import THREAT, _data, _handle


class _Results:
    def __init__(self, evaluations: list[EvaluationResult]) -> None:
        self.evaluations = evaluations
        self.dataset = types.SimpleNamespace(input_shape=[1, 16, 16])  # the images of _data()


def test_section_builds_and_renders() -> None:
    assert build(_Results([])) is None  # type: ignore[arg-type]
    spec = CorruptionsSpec(corruptions=("gaussian_noise", "contrast"), severities=(1, 5))
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("corruptions")
    out = registry.get("evaluation", "corruptions")(_handle(), _data(), THREAT, spec, ctx)
    evaluation = EvaluationResult(
        key="corruptions", section="corruptions", name="corruptions", status="success",
        records=out.records, artifacts=out.artifacts, resolved=out.resolved, warnings=out.warnings,
    )
    section = build(_Results([evaluation]))  # type: ignore[arg-type]
    assert section is not None and [r["corruption"] for r in section["rows"]] == ["gaussian_noise", "contrast"]
    assert section["heatmap"].startswith("data:image/png;base64,") and section["examples_uri"].startswith("data:image/png;base64,")
    html = _environment().get_template("sections/corruptions.html.j2").render(section=section, results=None)
    assert "gaussian_noise" in html and "cifar10" in html
