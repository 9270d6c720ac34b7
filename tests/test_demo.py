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
        assert results.model.provenance is not None and results.model.provenance["checkpoint"] == "trained in this run"
    table = demo.demo_table(outcomes)
    assert "standard (n=40)" in table and "adversarial (n=40)" in table and "robust accuracy: pgd" in table
    # the second run reuses the cached checkpoints
    lines.clear()
    again = demo.run_demo(tmp_path / "out2", progress=False, n_examples=8, log=lines.append)
    assert sum("Reusing" in line for line in lines) == 2
    assert all(r.model.provenance and r.model.provenance["checkpoint"] == "reused from the cache" for r in again.values())


def test_demo_checkpoints_say_where_they_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe, the training data, the cache tag, trained now or reused, and the torch that trained it."""
    from safetensors.torch import save_file

    from robench.models.archs import SmallCNN

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "_train", lambda variant, seed, log: SmallCNN().eval())  # the recipe is not run here
    path, trained = demo.demo_checkpoint("adversarial", seed=3, log=lambda line: None)
    recipe = demo.TRAINING["adversarial"]
    assert trained == {
        "trained_by": "robench demo, adversarial recipe v2", "epochs": recipe["epochs"], "eps": recipe["eps"], "steps": recipe["steps"],
        "warmup_epochs": recipe["warmup_epochs"], "seed": 3, "train_data": "mnist5k split train, 4,000 examples",
        "cache_tag": path.stem.rsplit("-", 1)[1], "checkpoint": "trained in this run", "trained_with_torch": torch.__version__,
    }  # fmt: skip
    again, reused = demo.demo_checkpoint("adversarial", seed=3, log=lambda line: None)
    assert again == path and reused == {**trained, "checkpoint": "reused from the cache"}  # the torch version is in the file
    save_file({k: v.contiguous() for k, v in SmallCNN().state_dict().items()}, str(path))  # cached before robench wrote it
    assert demo.demo_checkpoint("adversarial", seed=3, log=lambda line: None)[1]["trained_with_torch"] is None
