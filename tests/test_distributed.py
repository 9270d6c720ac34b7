"""torchrun with 2 CPU processes on gloo gives the same records as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import robench
from tests.conftest import QuadrantNet

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
    # batches go to ranks from an offset per stage: rank 1 also runs some stage's first batch (a stage
    # of one batch no longer always lands on rank 0)
    raw, keys, at = (tmp_path / "two" / "journal.rank1.bin").read_bytes(), [], 0
    while at < len(raw):  # the journal's frames: MAGIC, key length, payload length, digest, key, payload
        key_length, length = int.from_bytes(raw[at + 4 : at + 8], "big"), int.from_bytes(raw[at + 8 : at + 16], "big")
        keys.append(raw[at + 48 : at + 48 + key_length].decode())
        at += 48 + key_length + length
    assert any(key.endswith("/0") for key in keys), keys


class NaNOnRank1(QuadrantNet):
    """Finite on the probe's batches of 2 and 3, NaN for full batches on rank 1: a model error on one shard."""

    def forward(self, x):  # noqa: ANN001, ANN201, D102
        out = super().forward(x)
        return out * float("nan") if len(x) == 8 and os.environ.get("RANK") == "1" else out


@pytest.mark.slow
def test_an_error_on_one_shard_ends_every_rank_with_that_error(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path) -> None:
    """Rank 1's ModelError was rank 1's alone: rank 0 died on gloo's 'Connection closed by peer' and
    wrote that into results.json (or was killed first and left it at 'started')."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    args = [a if a != "tests.conftest:QuadrantNet" else "tests.test_distributed:NaNOnRank1" for a in ARGS]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "robench", "evaluate",
         "--checkpoint", str(quadrant_checkpoint), "--threat-model", str(tiny_threat), "--data-root", str(tiny_threat.parent / "data"),
         "--device", "cpu", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert two.returncode != 0
    assert "Connection closed" not in two.stderr and "internal error" not in two.stderr, two.stderr[-2000:]
    assert two.stderr.count("robench: error: model returned NaN") == 2, two.stderr[-2000:]
    results = robench.load_results(tmp_path / "two" / "results.json")
    assert results.status == "error" and "NaN" in (results.error or "")


@pytest.mark.slow
def test_a_resume_with_another_number_of_processes_recomputes_no_journalled_batch(
    tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path
) -> None:
    """A resume read only each rank's own journal: 2 processes then 1 recomputed rank 1's batches,
    1 then 2 recomputed every batch of rank 1's share (same numbers, wasted time)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    data_root = tiny_threat.parent / "data"
    common = ["evaluate", "--checkpoint", str(quadrant_checkpoint), "--threat-model", str(tiny_threat),
              "--data-root", str(data_root), "--device", "cpu", "--out", str(out), *ARGS]

    def two(*more: str) -> None:
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "robench",
                              *common, *more], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, run.stderr[-3000:]

    kwargs = dict(arch="tests.conftest:QuadrantNet", data_root=data_root, batch_size=8, seed=3, progress=False)
    reference = robench.evaluate(quadrant_checkpoint, tiny_threat, **kwargs)
    batches = {e.key: e.cost.batches for e in reference.evaluations}
    two("--only", "clean")  # 2 processes finish the clean section (the run stops there)
    rank1 = (out / "journal.rank1.bin").read_bytes()
    # 2 -> 1: every clean batch, rank 1's too, comes from the journals; the attacks are computed
    one = robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=out, resume=True, **kwargs)
    assert {e.key: e.cost.resumed_batches for e in one.evaluations} == {**{key: 0 for key in batches}, "clean": batches["clean"]}
    assert one.records() == reference.records()
    assert (out / "journal.rank1.bin").read_bytes() == rank1  # read, never written
    # 1 -> 2: rank 1 takes its share of the attacks from rank 0's journal; nothing is computed
    two("--resume")
    again = robench.load_results(out / "results.json")
    assert again.options["world_size"] == 2 and again.status == "success"
    assert {e.key: e.cost.resumed_batches for e in again.evaluations} == batches
    assert again.records() == reference.records()
    for mine, theirs in zip(again.evaluations, reference.evaluations):
        assert (mine.cost.forward_passes, mine.cost.backward_passes, mine.cost.batches) == (
            theirs.cost.forward_passes, theirs.cost.backward_passes, theirs.cost.batches)
