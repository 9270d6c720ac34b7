"""Every section in one run through the CLI (the yardstick's audit, shrunk): the sections' hand-offs
fit together, the report has every section and nothing reads as "did not run"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from robench.cli import main
from robench.models.archs import SmallCNN
from tests._mnist import digits, fit

AUDIT = {
    "schema_version": 1,
    "name": "mini-audit",
    "dataset": {"manifest": "mnist5k", "split": "test", "n_examples": 24},
    "adversary": {"norm": "Linf", "eps": 0.1},
    "evaluations": {
        "attacks": [
            {"name": "fgsm"},
            {"name": "pgd", "params": {"steps": 5}},
            {"name": "autoattack", "params": {"version": "custom", "attacks": ["apgd-ce", "apgd-t"], "n_iter": 5}},
            {"name": "gradient_masking", "params": {"n_examples": 12, "steps": 5, "square_queries": 20}},
        ],
        "corruptions": {"corruptions": ["gaussian_noise", "glass_blur", "frost", "jpeg_compression"], "severities": [1, 5]},
        "stability": {"perturbations": ["gaussian_noise", "translate"]},
        "calibration": {"n_bins": 10, "temperature_scaling": True},
        "certification": [
            {"name": "smoothing", "params": {"sigma": 0.25, "n0": 8, "n": 64, "batch": 256}},
            {"name": "ibp"},
            {"name": "lipschitz"},
        ],
    },
}


@pytest.mark.slow
def test_every_section_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "cnn.pt"
    torch.save(fit(SmallCNN(), digits("train", 300), epochs=1).state_dict(), checkpoint)
    threat = tmp_path / "mini-audit.yaml"
    threat.write_text(yaml.safe_dump(AUDIT))
    out = tmp_path / "out"
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--arch", "small_cnn", "--threat-model", str(threat),
                 "--out", str(out), "--no-progress", "--batch-size", "12"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "success"
    sections = {e["section"] for e in results["evaluations"]}
    assert sections == {"clean", "attacks", "corruptions", "stability", "calibration", "certification"}
    for evaluation in results["evaluations"]:
        assert evaluation["status"] == "success" and evaluation["records"], evaluation["key"]
        for record in evaluation["records"]:
            if "accuracy" in record["name"] and record["unit"] == "fraction" and record["n"]:
                assert record["ci_low"] is not None and record["ci_low"] <= record["value"] <= record["ci_high"]
    calibration = [r for e in results["evaluations"] if e["section"] == "calibration" for r in e["records"]]
    conditions = {r["condition"].get("condition") for r in calibration}
    assert {"clean", "attack", "corruption"} <= conditions  # hand-offs from the earlier sections arrived
    html = (out / "report.html").read_text()
    assert "did not run" not in html
    for title in ("Empirical robustness", "Common corruptions", "Stability", "Calibration", "Certification"):
        assert title in html
    assert (out / "metrics.csv").stat().st_size > 0 and (out / "summary.md").stat().st_size > 0
    # The report of a run whose evaluations all failed before producing anything still renders
    # (the clean section read the missing accuracy record: an internal error on exactly the run
    # whose report is wanted most).
    for evaluation in results["evaluations"]:
        evaluation.update(status="error", error="interrupted", records=[], artifacts={}, checks=[], warnings=[])
    results["status"] = "error"
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps(results))
    assert main(["report", str(failed), "--out", str(tmp_path / "failed.html")]) == 0, capsys.readouterr().err
    assert "Clean evaluation error: interrupted" in (tmp_path / "failed.html").read_text()
