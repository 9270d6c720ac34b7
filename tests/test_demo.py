"""The demo end to end with a shortened recipe (the full one is timed in docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench import demo


@pytest.mark.slow
def test_demo_shortened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "TRAINING", {
        "standard": {"epochs": 1, "eps": 0.0, "steps": 0, "n_train": 320},
        "adversarial": {"epochs": 1, "eps": 0.3, "steps": 2, "warmup_epochs": 1, "n_train": 320},
    })
    lines: list[str] = []
    threads = torch.get_num_threads()
    outcomes = demo.run_demo(tmp_path / "out", progress=False, n_examples=40, log=lines.append)
    assert set(outcomes) == {"standard", "adversarial"}
    assert torch.get_num_threads() == threads  # training's thread count does not leak to the caller
    for variant, results in outcomes.items():
        assert results.status == "success"
        assert (tmp_path / "out" / variant / "results.json").is_file()
        for name in ("report.html", "metrics.csv", "summary.md"):
            assert (tmp_path / "out" / variant / name).is_file(), name
        assert results.records("clean", "accuracy")[0].n == 40
    table = demo.demo_table(outcomes)
    assert "standard (n=40)" in table and "adversarial (n=40)" in table and "robust accuracy: pgd" in table
    # the second run reuses the cached checkpoints
    lines.clear()
    demo.run_demo(tmp_path / "out2", progress=False, n_examples=8, log=lines.append)
    assert sum("Reusing" in line for line in lines) == 2
