"""torchrun with 2 CPU processes on gloo gives the same records as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import robench

ARGS = ["--arch", "tests.conftest:QuadrantNet", "--batch-size", "8", "--no-progress", "--seed", "3"]


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    common = ["evaluate", "--checkpoint", str(quadrant_checkpoint), "--threat-model", str(tiny_threat),
              "--data-root", str(tiny_threat.parent / "data"), "--device", "cpu", *ARGS]
    one = subprocess.run([sys.executable, "-m", "robench", *common, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "robench",
         *common, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = robench.load_results(tmp_path / "one" / "results.json")
    b = robench.load_results(tmp_path / "two" / "results.json")
    assert b.options["world_size"] == 2
    assert a.records() == b.records()
    for ea, eb in zip(a.evaluations, b.evaluations):
        assert (ea.cost.forward_passes, ea.cost.backward_passes, ea.cost.batches) == (
            eb.cost.forward_passes, eb.cost.backward_passes, eb.cost.batches)
    assert (tmp_path / "two" / "journal.rank1.bin").is_file()
