"""kill -9 at random points, then --resume: identical records, nothing journalled is recomputed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import robench
from tests.conftest import NoisyQuadrantNet

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from robench import journal, runner
    limit, torn = int(sys.argv[1]), sys.argv[2] == "1"
    put = journal.Journal.put
    count = 0

    def dying_put(self, key, data, meta):
        global count
        count += 1
        if count > limit:
            if torn:  # die in the middle of writing a record
                record = journal._encode(key, data, meta)
                self._handle.write(record[: len(record) // 2])
                self._handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        put(self, key, data, meta)

    journal.Journal.put = dying_put
    runner.evaluate(sys.argv[3], sys.argv[4], arch="tests.conftest:QuadrantNet", out_dir=sys.argv[5],
                    data_root=sys.argv[6], batch_size=8, seed=11, progress=False)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_and_resume(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path, seed: int) -> None:
    data_root = tiny_threat.parent / "data"
    reference = robench.evaluate(quadrant_checkpoint, tiny_threat, arch="tests.conftest:QuadrantNet",
                                 data_root=data_root, batch_size=8, seed=11, progress=False)
    total = sum(e.cost.batches for e in reference.evaluations)
    rng = random.Random(seed)
    limit, torn = rng.randrange(1, total), rng.random() < 0.5
    out = tmp_path / "run"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(limit), str(int(torn)), str(quadrant_checkpoint), str(tiny_threat), str(out),
         str(data_root)],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert robench.load_results(out / "results.json").status == "started"
    resumed = robench.evaluate(quadrant_checkpoint, tiny_threat, arch="tests.conftest:QuadrantNet", out_dir=out,
                               data_root=data_root, batch_size=8, seed=11, progress=False, resume=True)
    assert resumed.records() == reference.records()
    assert [c for e in resumed.evaluations for c in e.checks] == [c for e in reference.evaluations for c in e.checks]
    assert sum(e.cost.resumed_batches for e in resumed.evaluations) == limit  # nothing journalled was redone
    on_disk = robench.load_results(out / "results.json")
    assert on_disk.status == "success" and on_disk.records() == reference.records()


def test_an_interrupted_resume_keeps_what_had_finished(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume interrupted before it has replayed its journal rewrote results.json with nothing
    in it (the journal still held everything): the earlier run's finished evaluations stay."""
    from robench.registry import registry

    data_root = tiny_threat.parent / "data"
    out = tmp_path / "run"
    kwargs = dict(arch="tests.conftest:QuadrantNet", out_dir=out, data_root=data_root, batch_size=8, seed=11, progress=False)
    first = robench.evaluate(quadrant_checkpoint, tiny_threat, **kwargs)
    finished = [(e.key, e.status) for e in first.evaluations]
    assert finished == [("clean", "success"), ("attacks/fgsm", "success"), ("attacks/pgd", "success")]

    def interrupted(*args, **kw):  # noqa: ANN002, ANN003, ANN202  (Ctrl-C as the attacks start, clean replayed)
        raise KeyboardInterrupt

    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda kind, name: interrupted if (kind, name) == ("evaluation", "attacks") else real_get(kind, name))
    with pytest.raises(KeyboardInterrupt):
        robench.evaluate(quadrant_checkpoint, tiny_threat, resume=True, **kwargs)
    on_disk = robench.load_results(out / "results.json")
    assert on_disk.status == "error" and [(e.key, e.status) for e in on_disk.evaluations] == finished
    assert on_disk.records() == first.records()


def test_a_resume_without_its_journal_keeps_only_the_same_runs_results(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With the journal gone, the earlier results.json was kept whenever model, threat model, data and
    seed matched: a resume at another batch size (which the journal would refuse) kept the earlier
    run's attacks beside its own numbers. Now the file must match the journal's identity."""
    from robench.registry import registry

    data_root = tiny_threat.parent / "data"
    out = tmp_path / "run"
    kwargs = {"arch": "tests.conftest:QuadrantNet", "out_dir": out, "data_root": data_root, "seed": 11, "progress": False}
    robench.evaluate(quadrant_checkpoint, tiny_threat, batch_size=8, **kwargs)
    (out / "journal.bin").unlink()
    real_get = registry.get

    def interrupted(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    finished = [("clean", "success"), ("attacks/fgsm", "success"), ("attacks/pgd", "success")]
    for batch_size, kept in ((4, [("clean", "success"), ("attacks/fgsm", "error")]), (8, finished)):
        if batch_size == 8:  # the same run again, its journal gone: its earlier finished evaluations are kept
            robench.evaluate(quadrant_checkpoint, tiny_threat, batch_size=8, **kwargs)
            (out / "journal.bin").unlink()
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(registry, "get", lambda kind, name: interrupted if (kind, name) == ("evaluation", "attacks") else real_get(kind, name))
            robench.evaluate(quadrant_checkpoint, tiny_threat, resume=True, batch_size=batch_size, **kwargs)
        assert [(e.key, e.status) for e in robench.load_results(out / "results.json").evaluations] == kept


TERMINATOR = textwrap.dedent(
    """
    import os, signal, sys
    from robench import cli, journal
    put = journal.Journal.put
    count = 0

    def terminated_put(self, key, data, meta):
        global count
        count += 1
        put(self, key, data, meta)
        if count == 3:  # a scheduler's time limit, or torchrun stopping this rank after another failed
            os.kill(os.getpid(), signal.SIGTERM)

    journal.Journal.put = terminated_put
    sys.exit(cli.main(["evaluate", "--checkpoint", sys.argv[1], "--threat-model", sys.argv[2], "--arch", "tests.conftest:QuadrantNet",
                       "--out", sys.argv[3], "--data-root", sys.argv[4], "--batch-size", "8", "--no-progress"]))
    """
)


def test_sigterm_leaves_an_error_status_and_what_had_finished(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path) -> None:
    """SIGTERM killed the process without a word: results.json stayed at 'started'."""
    out = tmp_path / "run"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", TERMINATOR, str(quadrant_checkpoint), str(tiny_threat), str(out), str(tiny_threat.parent / "data")],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=300, check=False,
    )
    # 143 = 128 + SIGTERM, as a shell reports a process it ended (130 is Ctrl-C's)
    assert proc.returncode == 143 and f"robench: terminated (SIGTERM); finished evaluations are in {out / 'results.json'}" in proc.stderr, proc.stderr[-2000:]
    results = robench.load_results(out / "results.json")
    assert results.status == "error" and "signal 15" in (results.error or "")


@pytest.mark.parametrize("crash_at", [2, 5])
def test_randomized_model_numbers_depend_on_the_seed_only(tmp_path: Path, tiny_threat: Path, monkeypatch: pytest.MonkeyPatch,
                                                          crash_at: int) -> None:
    """A randomized model drew from torch's global RNG as it stood: another prior state, or a resume
    inside a stage (EOT-PGD's passes), changed its numbers."""
    from robench import journal

    data_root = tiny_threat.parent / "data"
    kwargs = dict(data_root=data_root, batch_size=8, seed=11, progress=False)

    def run(prior: int, **more: object) -> robench.Results:
        torch.manual_seed(prior)
        return robench.evaluate(NoisyQuadrantNet(), tiny_threat, **kwargs, **more)  # type: ignore[arg-type]

    reference = run(0)
    assert reference.model.randomized
    assert run(12345).records() == reference.records()

    put, count = journal.Journal.put, {"n": 0}

    def dying_put(self, key, data, meta):  # noqa: ANN001, ANN202
        count["n"] += 1
        if count["n"] > crash_at:
            raise KeyboardInterrupt
        put(self, key, data, meta)

    monkeypatch.setattr(journal.Journal, "put", dying_put)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(1, out_dir=out)
    monkeypatch.setattr(journal.Journal, "put", put)
    resumed = run(2, out_dir=out, resume=True)
    assert sum(e.cost.resumed_batches for e in resumed.evaluations) == crash_at
    assert resumed.records() == reference.records()


def test_a_resume_ignores_an_edited_description_and_claims_but_not_an_edited_eps(tmp_path: Path, quadrant_checkpoint: Path,
                                                                                 tiny_threat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal identity held the sha256 of the whole threat model, so a resume was refused
    ("belongs to a different run") when only the description or the model card's claims had been
    edited, which change no number. Now those two are left out of it; the adversary is not."""
    import yaml

    from robench import journal
    from robench._errors import JournalError

    data_root = tiny_threat.parent / "data"
    out = tmp_path / "run"
    kwargs = {"arch": "tests.conftest:QuadrantNet", "out_dir": out, "data_root": data_root, "batch_size": 8, "seed": 11, "progress": False}
    first = robench.evaluate(quadrant_checkpoint, tiny_threat, **kwargs)
    declared = yaml.safe_load(tiny_threat.read_text())
    declared["description"] = "edited after the run"
    declared["claims"] = {"robust_accuracy": 0.5}
    tiny_threat.write_text(yaml.safe_dump(declared))
    written: list[str] = []
    real_put = journal.Journal.put
    monkeypatch.setattr(journal.Journal, "put", lambda self, key, data, meta: (written.append(key), real_put(self, key, data, meta))[1])
    again = robench.evaluate(quadrant_checkpoint, tiny_threat, resume=True, **kwargs)
    assert written == []  # every batch came from the journal
    assert again.threat_model_sha256 != first.threat_model_sha256  # the results record the file as it is now
    assert again.threat_model["description"] == "edited after the run"
    assert [e.records for e in again.evaluations] == [e.records for e in first.evaluations]
    declared["adversary"]["eps"] = 0.2
    tiny_threat.write_text(yaml.safe_dump(declared))
    with pytest.raises(JournalError, match="threat_model_computation_sha256"):
        robench.evaluate(quadrant_checkpoint, tiny_threat, resume=True, **kwargs)


def test_a_resume_takes_batches_from_every_journal_once(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume read only its rank's own journal: the batches another rank (or an earlier run with
    another number of processes) had journalled were computed again. Where two journals hold a
    batch, its cost counts once."""
    from robench import journal

    kwargs = dict(arch="tests.conftest:QuadrantNet", data_root=tiny_threat.parent / "data", batch_size=8, seed=11, progress=False)
    reference = robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=tmp_path / "earlier", **kwargs)
    total = sum(e.cost.batches for e in reference.evaluations)
    put, count = journal.Journal.put, {"n": 0}

    def dying_put(self, key, data, meta):  # noqa: ANN001, ANN202
        count["n"] += 1
        if count["n"] > 4:
            raise KeyboardInterrupt
        put(self, key, data, meta)

    out = tmp_path / "run"
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(journal.Journal, "put", dying_put)
        robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=out, **kwargs)
    # an earlier run's rank 1 (say) finished every batch, the first 4 as well
    (out / "journal.rank1.bin").write_bytes((tmp_path / "earlier" / "journal.bin").read_bytes())
    sibling, own = (out / "journal.rank1.bin").read_bytes(), (out / "journal.bin").read_bytes()
    resumed = robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=out, resume=True, **kwargs)
    assert [e.cost.resumed_batches for e in resumed.evaluations] == [e.cost.batches for e in reference.evaluations]
    assert sum(e.cost.resumed_batches for e in resumed.evaluations) == total  # none computed (4 resumed before)
    for mine, theirs in zip(resumed.evaluations, reference.evaluations):
        assert (mine.cost.forward_passes, mine.cost.backward_passes, mine.cost.batches) == (
            theirs.cost.forward_passes, theirs.cost.backward_passes, theirs.cost.batches)
    assert resumed.records() == reference.records()
    assert (out / "journal.rank1.bin").read_bytes() == sibling and (out / "journal.bin").read_bytes() == own


def test_a_resume_refuses_another_runs_sibling_journal(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path) -> None:
    from robench._errors import JournalError

    kwargs = dict(arch="tests.conftest:QuadrantNet", data_root=tiny_threat.parent / "data", batch_size=8, progress=False, only=["clean"])
    robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=tmp_path / "run", seed=11, **kwargs)
    robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=tmp_path / "other", seed=12, **kwargs)
    (tmp_path / "run" / "journal.rank3.bin").write_bytes((tmp_path / "other" / "journal.bin").read_bytes())
    with pytest.raises(JournalError, match=r"journal\.rank3\.bin belongs to a different run \(seed: journal 12 vs now 11\)") as caught:
        robench.evaluate(quadrant_checkpoint, tiny_threat, out_dir=tmp_path / "run", seed=11, resume=True, **kwargs)
    assert "\n" not in str(caught.value)
