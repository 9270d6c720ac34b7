"""End to end through robench.evaluate on the tiny fixture: results, costs, resume, errors."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import robench
from robench._errors import ConfigError, DataError, ModelError
from tests.conftest import QuadrantNet

ARCH = "tests.conftest:QuadrantNet"


def _run(checkpoint: Path | nn.Module, threat: Path, out: Path | None, **kwargs: object) -> robench.Results:
    return robench.evaluate(checkpoint, threat, arch=None if isinstance(checkpoint, nn.Module) else ARCH,
                            out_dir=out, progress=False, batch_size=16, data_root=Path(threat).parent / "data",
                            **kwargs)  # type: ignore[arg-type]


def test_end_to_end(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path) -> None:
    out = tmp_path / "out"
    results = _run(quadrant_checkpoint, tiny_threat, out)
    assert results.status == "success"
    assert [e.key for e in results.evaluations] == ["clean", "attacks/fgsm", "attacks/pgd"]
    clean = results.records("clean", "accuracy")[0]
    assert clean.n == 48 and clean.value == 1.0 and clean.ci_low is not None and clean.ci_low < 1.0
    pgd = results.records("attacks/pgd", "robust_accuracy")[0]
    fgsm = results.records("attacks/fgsm", "robust_accuracy")[0]
    assert pgd.value is not None and fgsm.value is not None and pgd.value <= fgsm.value + 1e-9
    for ev in results.evaluations:
        assert ev.status == "success" and ev.cost.wall_time_s > 0 and ev.cost.forward_passes >= 48
    assert results.evaluation("attacks/pgd").cost.backward_passes > 0  # type: ignore[union-attr]
    on_disk = robench.load_results(out / "results.json")
    assert on_disk.status == "success" and on_disk.records() == results.records()
    assert on_disk.threat_model_sha256 == robench.load_threat_model(tiny_threat).sha256
    assert on_disk.dataset.manifest_sha256 and on_disk.model.sha256 and on_disk.environment.packages["torch"]


def test_resume_gives_identical_numbers(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path) -> None:
    out = tmp_path / "out"
    first = _run(quadrant_checkpoint, tiny_threat, out, seed=5)
    again = _run(quadrant_checkpoint, tiny_threat, out, seed=5, resume=True)
    assert again.records() == first.records()
    assert all(e.cost.resumed_batches == e.cost.batches > 0 for e in again.evaluations)
    fresh = _run(quadrant_checkpoint, tiny_threat, tmp_path / "other", seed=5)
    assert fresh.records() == first.records()  # seeded: same numbers without the journal too


def test_n_examples_only_and_in_memory_module(tmp_path: Path, tiny_threat: Path) -> None:
    results = _run(QuadrantNet(), tiny_threat, None, n_examples=8, only=["clean"])
    assert [e.key for e in results.evaluations] == ["clean"]
    assert results.records("clean", "accuracy")[0].n == 8
    with pytest.raises(ConfigError, match="--only"):
        _run(QuadrantNet(), tiny_threat, None, only=["clena"])
    # one list for several threat models: undeclared names are skipped while one section is declared
    assert [e.key for e in _run(QuadrantNet(), tiny_threat, None, n_examples=8, only=["clean", "corruptions"]).evaluations] == ["clean"]
    with pytest.raises(ConfigError, match="declares none of these"):
        _run(QuadrantNet(), tiny_threat, None, only=["certification"])
    with pytest.raises(ConfigError, match="no section named"):
        _run(QuadrantNet(), tiny_threat, None, only=[])
    with pytest.raises(DataError, match="exceeds"):
        _run(QuadrantNet(), tiny_threat, None, n_examples=1000)


class _FailsAfterClean(QuadrantNet):
    """Fine for the probe (PROBE_PASSES + 1 forward calls) and the clean pass (3), then ``fail(logits)``."""

    def __init__(self, fail: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.calls, self.fail = 0, fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from robench.models.wrapper import PROBE_PASSES

        self.calls += 1
        out = super().forward(x)
        return out if self.calls <= PROBE_PASSES + 1 + 3 else self.fail(out)


def _nan(logits: torch.Tensor) -> torch.Tensor:
    return torch.full_like(logits, float("nan"))


def _crash(logits: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("cuDNN error (simulated)")


class _NoGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:  # noqa: ANN001, D102
        return logits.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001, D102
        raise NotImplementedError("no gradient for this defence (simulated)")


def _bad_backward(logits: torch.Tensor) -> torch.Tensor:
    return _NoGradient.apply(logits)


def _detached(logits: torch.Tensor) -> torch.Tensor:
    return logits.detach()


def _generator_exit(logits: torch.Tensor) -> torch.Tensor:
    raise GeneratorExit("closed (simulated)")  # a BaseException, not an Exception


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ fails too (simulated)")


def _unprintable(logits: torch.Tensor) -> torch.Tensor:
    raise _Unprintable()


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        (_nan, "NaN"),
        (_crash, "the model failed during attacks/fgsm: RuntimeError: cuDNN error \\(simulated\\)"),
        (_bad_backward, "the model failed in a backward pass during attacks/fgsm: NotImplementedError: no gradient"),
        (_detached, "do not depend differentiably on its input.*black-box attacks"),
        (_generator_exit, "the model failed during attacks/fgsm: GeneratorExit: closed"),
        (_unprintable, "the model failed during attacks/fgsm: _Unprintable: _Unprintable$"),  # its evaluation stayed "started"
    ],
    ids=["nan-logits", "forward-raises", "backward-raises", "not-differentiable", "base-exception", "str-raises"],
)
def test_model_failure_mid_run_keeps_finished_results(tmp_path: Path, tiny_threat: Path, fail, message: str) -> None:  # noqa: ANN001
    """NaN logits, a model whose forward or backward raises mid-run, or one without a gradient: a
    ModelError (exit 2), finished results kept."""
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=message):
        _run(_FailsAfterClean(fail), tiny_threat, out)
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "error" and re.search(message, data["error"])
    by_key = {e["key"]: e for e in data["evaluations"]}
    assert by_key["clean"]["status"] == "success" and by_key["clean"]["records"]
    assert by_key["attacks/fgsm"]["status"] == "error"


def test_failure_inside_a_compiled_model_is_a_model_error() -> None:
    """torch.compile runs a rewritten copy of the wrapper's forward; an error in it is still the model's."""
    from robench.attacks._speed import StepModel
    from robench.models.wrapper import Normalize, PassCounter, PixelModel
    from robench.runner import _as_model_error

    class Picky(QuadrantNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if float(x.mean()) > 0.5:  # a data-dependent check: dynamo breaks the graph here
                raise ValueError("input outside the defence's range (simulated)")
            return super().forward(x)

    step = StepModel(PixelModel(Picky(), Normalize(torch.zeros(1), torch.ones(1)), PassCounter()), compile=True)
    assert step(torch.zeros(2, 1, 8, 8)).shape[0] == 2
    with pytest.raises(ValueError) as caught:
        step(torch.ones(2, 1, 8, 8))
    converted = _as_model_error(caught.value, "attacks/pgd")
    assert isinstance(converted, ModelError) and "ValueError: input outside the defence's range" in str(converted)
    assert _as_model_error(ZeroDivisionError("a bug"), "attacks/pgd").__class__ is ZeroDivisionError


def test_wrong_class_count_is_a_model_error(tmp_path: Path, tiny_threat: Path) -> None:
    with pytest.raises(ModelError, match="classes"):
        _run(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), tiny_threat, None)


def _run_with_fgsm_raising(error: BaseException, out: Path, threat: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run ``threat`` with FGSM raising ``error``; the error propagates; return results.json."""
    from robench.attacks import pgd

    def broken(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(pgd.FGSM, "run", broken)
    with pytest.raises(type(error)):
        _run(QuadrantNet(), threat, out)
    return json.loads((out / "results.json").read_text())


def test_other_exceptions_keep_finished_results_and_say_so(tmp_path: Path, tiny_threat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception outside the model (a robench bug, say) stays what it is, and results.json says so."""
    data = _run_with_fgsm_raising(ZeroDivisionError("a bug (simulated)"), tmp_path / "out", tiny_threat, monkeypatch)
    assert data["status"] == "error" and data["error"] == "ZeroDivisionError: a bug (simulated)"
    assert {e["key"]: e["status"] for e in data["evaluations"]} == {"clean": "success", "attacks/fgsm": "error"}


def test_an_exception_whose_str_raises_is_recorded_by_its_type(
    tmp_path: Path, tiny_threat: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside the model too (and in the CLI's last line of defence): formatting the error raised
    again, so results.json kept the evaluation at "started" and the run's error was the __str__'s."""
    from robench.cli import main

    out = tmp_path / "out"
    data = _run_with_fgsm_raising(_Unprintable(), out, tiny_threat, monkeypatch)
    assert data["status"] == "error" and data["error"] == "_Unprintable: _Unprintable"
    assert {e["key"]: (e["status"], e["error"]) for e in data["evaluations"]} == {
        "clean": ("success", None), "attacks/fgsm": ("error", "_Unprintable")
    }  # fmt: skip
    checkpoint = tmp_path / "m.pt"
    torch.save(QuadrantNet().state_dict(), checkpoint)
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--arch", ARCH, "--threat-model", str(tiny_threat), "--out", str(out),
                 "--data-root", str(tiny_threat.parent / "data"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("robench: internal error: _Unprintable: _Unprintable") and err.count("\n") == 1, err
    unprintable_from_the_start = _FailsAfterClean(_unprintable)
    unprintable_from_the_start.calls = 10**6
    with pytest.raises(ModelError, match="model failed on random inputs .*: _Unprintable: _Unprintable$"):  # in the probe
        _run(unprintable_from_the_start, tiny_threat, None)


def test_resume_refuses_another_model(tmp_path: Path, tiny_threat: Path) -> None:
    """The journal knows the weights of an in-memory module too (no file to hash)."""
    from robench._errors import JournalError

    out = tmp_path / "out"
    _run(QuadrantNet(), tiny_threat, out, only=["clean"])
    other = QuadrantNet()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(JournalError, match="checkpoint_sha256"):
        _run(other, tiny_threat, out, only=["clean"], resume=True)
    assert _run(QuadrantNet(), tiny_threat, out, only=["clean"], resume=True).status == "success"


def test_resume_refuses_another_thread_count(tmp_path: Path, tiny_threat: Path) -> None:
    """CPU reductions depend on the thread count, so a resumed run must use the same one to be identical."""
    from robench._errors import JournalError

    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = _run(QuadrantNet(), tiny_threat, out, only=["clean"])
        assert first.environment.torch_threads == 1
        torch.set_num_threads(2)
        with pytest.raises(JournalError, match="torch_threads: journal 1 vs now 2"):
            _run(QuadrantNet(), tiny_threat, out, only=["clean"], resume=True)
    finally:
        torch.set_num_threads(threads)


def test_resume_refuses_other_numerics(tmp_path: Path, tiny_threat: Path) -> None:
    """Deterministic kernels (like TF32 on CUDA) change how a batch rounds: a resumed run keeps the journal's."""
    from robench._errors import JournalError

    out = tmp_path / "out"
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        _run(QuadrantNet(), tiny_threat, out, only=["clean"])
        torch.use_deterministic_algorithms(True)
        with pytest.raises(JournalError, match="numerics: journal .*'deterministic_algorithms': False"):
            _run(QuadrantNet(), tiny_threat, out, only=["clean"], resume=True)
    finally:
        torch.use_deterministic_algorithms(before)
    assert _run(QuadrantNet(), tiny_threat, out, only=["clean"], resume=True).status == "success"


def test_results_files_get_the_usual_mode(tmp_path: Path, tiny_threat: Path) -> None:
    import os

    out = tmp_path / "out"
    _run(QuadrantNet(), tiny_threat, out, only=["clean"])
    mask = os.umask(0)
    os.umask(mask)
    assert (out / "results.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_fresh_run_drops_the_journals_of_ranks_it_does_not_have(tmp_path: Path, tiny_threat: Path) -> None:
    """A 2-process run's journal.rank1.bin outlived a fresh 1-process run in the same folder and
    made a later 2-process --resume refuse ('belongs to a different run')."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.rank1.bin").write_bytes(b"RBJ2 of an earlier 2-process run")
    (out / "notes.bin").write_bytes(b"kept")
    _run(QuadrantNet(), tiny_threat, out, only=["clean"])
    assert not (out / "journal.rank1.bin").exists() and (out / "notes.bin").exists() and (out / "journal.bin").exists()


def test_randomized_clean_accuracy_is_a_pass_mean_like_robust_accuracy(tiny_threat: Path) -> None:
    """Clean accuracy of a randomized model was one pass's verdict while robust accuracy was a pass
    mean: on this model the attack sections reported robust 0.854 above clean 0.8125."""
    from tests.conftest import NoisyQuadrantNet

    results = robench.evaluate(NoisyQuadrantNet(), tiny_threat, data_root=tiny_threat.parent / "data", batch_size=8, seed=11,
                               progress=False)  # fmt: skip
    assert results.model.randomized
    clean = [r for r in results.records() if r.name in ("accuracy", "clean_accuracy")]
    assert len(clean) == 3 and all(r.condition.get("stochastic_passes") for r in clean)
    assert all(r.interval == "clopper-pearson (rounded pass-mean count)" for r in clean)
    for evaluation in ("attacks/fgsm", "attacks/pgd"):
        rows = {r.name: r.value for r in results.records() if r.evaluation == evaluation}
        assert rows["robust_accuracy"] <= rows["clean_accuracy"] + 0.005, (evaluation, rows)


def test_a_model_can_be_declared_randomized(tmp_path: Path, tiny_threat: Path) -> None:
    """Randomness the probe's passes on random inputs miss (here none at all) can be declared: EOT
    attacks and pass means, recorded as declared; without the flag the model is deterministic."""
    from robench.cli import build_parser
    from tests.conftest import QuadrantNet

    kwargs = dict(data_root=tiny_threat.parent / "data", batch_size=8, seed=11, progress=False)
    plain = robench.evaluate(QuadrantNet(), tiny_threat, **kwargs)
    declared = robench.evaluate(QuadrantNet(), tiny_threat, randomized=True, **kwargs)
    assert not plain.model.randomized and declared.model.randomized and declared.options["randomized"] is True
    assert declared.model.randomized_declared and not plain.model.randomized_declared
    # every pass mean is 0 or 1: the per-example outcomes (for paired comparisons) are kept
    assert [e.outcomes for e in declared.evaluations] == [e.outcomes for e in plain.evaluations]
    pgd = next(e for e in declared.evaluations if e.key == "attacks/pgd")
    assert pgd.resolved["eot_samples"] == 20 and any("EOT with 20 samples" in w for w in pgd.warnings)
    assert all(r.condition.get("stochastic_passes") for r in declared.records() if r.name in ("accuracy", "robust_accuracy"))
    # a deterministic model's pass means are its 0/1 outcomes: the numbers agree
    values = {(r.evaluation, r.name, str(r.condition.get("class"))): r.value for r in plain.records()}
    assert {(r.evaluation, r.name, str(r.condition.get("class"))): r.value for r in declared.records()} == values
    args = build_parser().parse_args(["evaluate", "--checkpoint", "m.pt", "--threat-model", "t.yaml", "--randomized"])
    assert args.randomized is True


def test_preprocessing_must_fit_the_channels(tmp_path: Path, tiny_threat: Path) -> None:
    """Two means for one-channel data broadcast the logits to 8 classes: the error blamed the model.
    (Three for one channel stay allowed: grayscale broadcast to a 3-channel stem.)"""
    import yaml

    from robench._errors import ConfigError
    from robench.threat_model import ThreatModelError, load_threat_model
    from tests.conftest import QuadrantNet

    raw = yaml.safe_load(tiny_threat.read_text())
    raw["dataset"]["preprocessing"] = {"mean": [0.5, 0.5], "std": [0.2, 0.2]}
    path = tmp_path / "rgb.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="have 2 values, but the data have 1 channel"):
        robench.evaluate(QuadrantNet(), path, data_root=tiny_threat.parent / "data", progress=False)
    raw["dataset"]["preprocessing"] = {"mean": [], "std": []}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ThreatModelError, match="preprocessing"):
        load_threat_model(path)


def test_the_masking_checks_run_after_the_attacks_they_compare() -> None:
    # declared first, gradient_masking had no attack to compare with its own PGD: a model scaling
    # its logits by 1e4 passed every check while AutoAttack found it 0% robust (a review)
    from robench.runner import _plan
    from robench.threat_model import ThreatModel

    threat = ThreatModel.model_validate({
        "name": "t", "dataset": {"manifest": "mnist5k"}, "adversary": {"norm": "Linf", "eps": 0.1},
        "evaluations": {"attacks": [{"name": "gradient_masking"}, {"name": "pgd"}, {"name": "fgsm"}], "clean": True},
    })  # fmt: skip
    assert [key for section, key, _, _ in _plan(threat, None) if section == "attacks"] == [
        "attacks/pgd", "attacks/fgsm", "attacks/gradient_masking",
    ]  # fmt: skip


def test_a_certifier_that_cannot_run_fails_the_run_before_any_section(tmp_path: Path) -> None:
    """CROWN has no rule for max pooling: the run stops before it starts with the layer named, and no
    section ran first (it failed after 7 minutes of attacks, corruptions and smoothing); nothing is
    written, so an earlier run's results in the folder stay (test_cli)."""
    threat = tmp_path / "t.yaml"
    threat.write_text(
        "schema_version: 1\nname: t\ndataset: {manifest: mnist5k, split: test, n_examples: 4}\n"
        "adversary: {norm: Linf, eps: 0.1}\nevaluations:\n  attacks: [{name: fgsm}]\n"
        "  certification: [{name: ibp}, {name: crown}]\n"
    )
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 13 * 13, 10))
    with pytest.raises(ConfigError, match=r"CROWN: unsupported layer .*MaxPool2d"):
        robench.evaluate(net, threat, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_threat_checks_of_attacks_and_certifiers_are_found_by_validate(tmp_path: Path) -> None:
    threat = tmp_path / "t.yaml"
    threat.write_text(
        "schema_version: 1\nname: t\ndataset: {manifest: mnist5k, split: test}\n"
        "adversary: {goal: targeted, norm: L1, eps: 10}\nevaluations:\n"
        "  attacks: [{name: square}, {name: autoattack}, {name: ddn}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        robench.load_threat_model(threat)
    errors = getattr(caught.value, "errors", [str(caught.value)])
    assert any("attacks[0].name: square supports the Linf and L2 norms" in e for e in errors), errors
    assert any("attacks[1].name: autoattack measures untargeted" in e for e in errors), errors
    assert any("attacks[2].name: DDN minimises L2" in e for e in errors), errors
    smoothing_only = tmp_path / "s.yaml"
    smoothing_only.write_text(
        "schema_version: 1\nname: s\ndataset: {manifest: mnist5k, split: test}\n"
        "evaluations:\n  certification: [{name: ibp}]\n"
    )
    with pytest.raises(ConfigError, match="certification.0.name: IBP needs an eps|certification\\[0\\]\\.name: IBP needs an eps"):
        robench.load_threat_model(smoothing_only)


def test_an_eps_whose_ball_holds_the_whole_input_box_fails_the_run_before_the_model_loads(tmp_path: Path, tiny_threat: Path) -> None:
    """A manifest that does not give the inputs' shape: validation cannot tell, the loaded data can
    (``norm: L2, eps: 1e300`` ran, to fail on NaN logits)."""
    import yaml

    from robench.threat_model import validate_file

    manifest = tiny_threat.parent / "data" / "tiny.yaml"
    data = yaml.safe_load(manifest.read_text())
    del data["input_shape"]
    manifest.write_text(yaml.safe_dump(data))
    threat = yaml.safe_load(tiny_threat.read_text())
    threat["adversary"] = {"norm": "L2", "eps": 8.5}
    tiny_threat.write_text(yaml.safe_dump(threat))
    assert validate_file(tiny_threat) == []
    with pytest.raises(ConfigError, match=r"adversary.eps: L2 eps 8.5 exceeds 8, the L2 diameter of the input box \(1 x sqrt\(64\) for inputs of shape \[1, 8, 8\]\)"):
        _run(tmp_path / "no-such-checkpoint.pt", tiny_threat, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    threat["adversary"]["eps"] = 8
    tiny_threat.write_text(yaml.safe_dump(threat))
    assert _run(QuadrantNet(), tiny_threat, None, only=["clean"]).status == "success"


def _fake_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status_script: str) -> None:
    """A ``git`` first on PATH: ``rev-parse`` prints a commit, ``status`` runs ``status_script``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = bin_dir / "git"
    git.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        '  case "$arg" in\n'
        "    rev-parse) echo 0123456789abcdef0123456789abcdef01234567; exit 0 ;;\n"
        f"    status) {status_script} ;;\n"
        "  esac\n"
        "done\n"
        "exit 1\n"
    )
    git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.skipif(os.name != "posix", reason="the stand-in git is a shell script")
def test_git_revision_is_not_called_clean_when_git_status_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robench.runner import git_revision

    if not (Path(robench.__file__).resolve().parent.parent / ".git").exists():
        pytest.skip("robench does not run from a git checkout")
    _fake_git(tmp_path, monkeypatch, "echo 'fatal: index file corrupt' >&2; exit 128")
    # status printed nothing because it failed: whether the tree is dirty is unknown, so no
    # revision is recorded (it used to be recorded as a clean commit)
    assert git_revision() is None


@pytest.mark.skipif(os.name != "posix", reason="the stand-in git is a shell script")
def test_git_revision_marks_a_dirty_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robench.runner import git_revision

    if not (Path(robench.__file__).resolve().parent.parent / ".git").exists():
        pytest.skip("robench does not run from a git checkout")
    _fake_git(tmp_path, monkeypatch, "echo ' M robench/cli.py'; exit 0")
    assert git_revision() == "0123456789abcdef0123456789abcdef01234567+dirty"


def test_environment_records_the_inputs_and_settings_that_change_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from robench import runner

    env = runner.environment(torch.device("cpu"))
    for dist in ("mlxtend", "imagecorruptions", "safetensors", "PyYAML", "Pillow"):
        assert env.packages[dist] == metadata.version(dist)
    assert env.numerics is not None
    assert env.numerics.deterministic_algorithms is torch.are_deterministic_algorithms_enabled()
    assert env.numerics.float32_matmul_precision == torch.get_float32_matmul_precision()
    assert env.numerics.cudnn_allow_tf32 is None and env.numerics.cudnn_benchmark is None  # CUDA settings: on CUDA only
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(runner, "tf32_enabled", lambda kind: kind == "conv")
    cuda = runner.numerics(torch.device("cuda"))  # the settings are read; no GPU is needed
    assert (cuda.cudnn_allow_tf32, cuda.cuda_matmul_allow_tf32, cuda.cudnn_benchmark) == (True, False, True)
    assert cuda.cudnn_deterministic is bool(torch.backends.cudnn.deterministic)


def test_model_provenance_is_recorded_only_when_given(tiny_threat: Path) -> None:
    """A checkpoint robench trained says where it came from; a user's claims nothing."""
    kwargs = {"progress": False, "batch_size": 16, "data_root": tiny_threat.parent / "data", "only": ["clean"]}
    plain = robench.evaluate(QuadrantNet(), tiny_threat, **kwargs)
    assert plain.model.provenance is None and plain.model.provenance_text() is None
    told = robench.evaluate(QuadrantNet(), tiny_threat, model_provenance={"trained_by": "robench demo", "seed": 0, "trained_with_torch": None}, **kwargs)
    assert told.model.provenance == {"trained_by": "robench demo", "seed": 0, "trained_with_torch": None}
    assert told.model.provenance_text() == "trained_by robench demo; seed 0; trained_with_torch unknown"


def test_device_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    from robench.runner import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu:0") == torch.device("cpu:0")
    for bad, message in [("tpu", "unknown device 'tpu'"), ("meta", "unsupported device 'meta'")]:
        with pytest.raises(ConfigError, match=message):
            resolve_device(bad)
    # cuda:7 on a one-GPU machine was accepted and failed at the first tensor moved there
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ConfigError, match=r"--device cuda:7 asked for, but this machine has 1 CUDA device\(s\): cuda:0 to cuda:0"):
        resolve_device("cuda:7")
