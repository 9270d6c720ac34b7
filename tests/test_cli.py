"""The command line: documented commands, one-line errors, exit codes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robench.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_via_console_script() -> None:
    proc = subprocess.run([sys.executable, "-m", "robench.cli", "evaluate", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for option in ("--checkpoint", "--arch", "--threat-model", "--out", "--n-examples", "--only", "--device",
                   "--batch-size", "--seed", "--resume", "--trust-checkpoint"):
        assert option in proc.stdout


def test_validate_ok_and_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", "mnist-linf-0.3")
    assert code == 0 and "ok" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\ndataset: {manifest: mnist5k}\nadversary: {norm: Linf, eps: 8/0}\n"
                   "evaluations: {attacks: [{name: pgd, params: {steps: many}}]}\n")
    code, out, err = _run(capsys, "validate", str(bad))
    assert code == 2
    lines = err.strip().splitlines()
    assert any("adversary.eps:" in line for line in lines), err
    assert all(line.startswith(str(bad)) for line in lines)
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("name: [x\n")
    code, _, err = _run(capsys, "validate", str(malformed))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_ls(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ls")
    assert code == 0
    for word in ("attack", "pgd", "fgsm", "dataset", "npz", "threat_model", "mnist-linf-0.3"):
        assert word in out
    code, out, _ = _run(capsys, "ls", "attack")
    assert code == 0 and "pgd" in out and "npz" not in out
    code, _, err = _run(capsys, "ls", "atack")
    assert code == 2 and err.startswith("robench: error:") and "did you mean 'attack'?" in err
    code, _, err = _run(capsys, "ls", "")  # listed every kind, as if none were named
    assert code == 2 and err.startswith("robench: error: unknown kind ''") and err.count("\n") == 1, err
    code, plural, _ = _run(capsys, "ls", "attacks")  # the plural, as --only and the README write it
    assert code == 0 and plural == _run(capsys, "ls", "attack")[1]
    # entry lines are plain text: no reStructuredText literals or roles, whole first sentences
    code, out, _ = _run(capsys, "ls")
    assert "``" not in out and ":func:" not in out and ":class:" not in out
    assert "classwise_ece" in out and "(see [calibration]" not in out


def test_summary_line_joins_the_first_paragraph_and_drops_markup() -> None:
    from robench.registry import summary_line

    doc = """Shrink towards the mean: ``(x - m) * c + m``, as
    :func:`~robench.corruptions.contrast` does (see :func:`_helper`).

    Details that ls does not print."""
    assert summary_line(doc) == "Shrink towards the mean: (x - m) * c + m, as robench.corruptions.contrast does."
    assert summary_line(None) == ""


def test_closed_pipe_is_not_an_error() -> None:
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m robench ls | head -1", shell=True, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "threat_model" and "error" not in proc.stderr


def test_data_verify(tmp_path: Path, tiny_manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "data", "verify", str(tiny_manifest), "--root", str(tiny_manifest.parent))
    assert code == 0 and "ok" in out
    (tiny_manifest.parent / "tiny.npz").write_bytes(b"tampered")
    code, _, err = _run(capsys, "data", "verify", str(tiny_manifest), "--root", str(tiny_manifest.parent))
    assert code == 2 and "tiny.npz" in err and len(err.strip().splitlines()) == 1


def test_data_freeze_then_verify_checks_contents(
    tmp_path: Path, tiny_manifest: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest that lists a file without checksums: freezing records its size and sha256, so that
    verifying against the frozen copy catches a same-size edit the original manifest cannot."""
    import yaml

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))

    root = tiny_manifest.parent
    loose = tmp_path / "loose.yaml"
    loose.write_text(yaml.safe_dump({**yaml.safe_load(tiny_manifest.read_text()), "files": [{"path": "tiny.npz"}]}))
    frozen = tmp_path / "frozen" / "my.yaml"
    code, out, _ = _run(capsys, "data", "freeze", str(loose), "--root", str(root), "--out", str(frozen))
    assert code == 0 and f"wrote {frozen}" in out
    entry = yaml.safe_load(frozen.read_text())["files"][0]
    raw = (root / "tiny.npz").read_bytes()
    assert entry == {"path": "tiny.npz", "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    code, out, _ = _run(capsys, "data", "verify", str(frozen), "--root", str(root))
    assert code == 0 and "size sha256" in out
    tampered = bytearray(raw)
    tampered[len(raw) // 2] ^= 1
    (root / "tiny.npz").write_bytes(bytes(tampered))
    assert _run(capsys, "data", "verify", str(loose), "--root", str(root))[0] == 0
    code, _, err = _run(capsys, "data", "verify", str(frozen), "--root", str(root))
    assert code == 2 and "sha256" in err and str(frozen) in err and len(err.strip().splitlines()) == 1


def test_data_freeze_refuses_files_that_fail_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import yaml

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))

    from tests.data.fixtures import write_cifar_c, write_imagenet_val

    tree = write_imagenet_val(tmp_path / "val")
    out = tmp_path / "frozen-val.yaml"
    code, stdout, _ = _run(capsys, "data", "freeze", str(tree), "--root", str(tree.parent), "--out", str(out))
    assert code == 0
    files = yaml.safe_load(out.read_text())["files"]
    assert [{k: v for k, v in f.items() if k != "listing_sha256"} for f in files] == [{"path": "val/*", "count": 3}, {"path": "val/*/*", "count": 9}]
    assert all(len(f["listing_sha256"]) == 64 for f in files)
    assert "recorded by their number of entries and a digest of their names and sizes" in stdout  # not "size + sha256"
    # the count alone let a replaced image through: the listing names and sizes find it
    image = sorted((tree.parent / "val" / "n01440764").iterdir())[0]
    original = image.read_bytes()
    image.write_bytes(original + b"\0")
    code, _, err = _run(capsys, "data", "verify", str(out), "--root", str(tree.parent))
    assert code == 2 and "names or sizes of its 9 entries differ" in err and str(out) in err and len(err.strip().splitlines()) == 1
    image.write_bytes(original)
    image.rename(image.with_name("renamed.JPEG"))
    assert _run(capsys, "data", "verify", str(out), "--root", str(tree.parent))[0] == 2
    image.with_name("renamed.JPEG").rename(image)
    assert _run(capsys, "data", "verify", str(out), "--root", str(tree.parent))[0] == 0
    next((tree.parent / "val" / "n01440764").iterdir()).unlink()
    out.unlink()
    code, _, err = _run(capsys, "data", "freeze", str(tree), "--root", str(tree.parent), "--out", str(out))
    assert code == 2 and "8 entries match" in err and not out.exists()
    cifar_c = write_cifar_c(tmp_path / "c")
    np.save(cifar_c["folder"] / "fog.npy", np.zeros((100, 32, 32, 1), np.uint8))
    code, _, err = _run(capsys, "data", "freeze", str(cifar_c["manifest"]), "--root", str(tmp_path / "c"), "--out", str(out))
    assert code == 2 and "fog.npy" in err and "expects uint8[100, 32, 32, 3]" in err and not out.exists()


def test_data_freeze_refuses_to_write_over_a_file_of_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--out`` naming one of the files the manifest lists (or a match of its image-folder pattern)
    replaced the data with the manifest's YAML: the frozen copy then recorded data that no longer existed."""
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))

    from tests.conftest import write_npz_dataset
    from tests.data.fixtures import write_imagenet_val

    manifest = write_npz_dataset(tmp_path / "npz")
    data = manifest.parent / "tiny.npz"
    raw = data.read_bytes()
    code, _, err = _run(capsys, "data", "freeze", str(manifest), "--root", str(manifest.parent), "--out", str(data))
    assert code == 2 and "tiny.npz" in err and len(err.strip().splitlines()) == 1 and data.read_bytes() == raw
    tree = write_imagenet_val(tmp_path / "val")
    image = sorted((tree.parent / "val" / "n01440764").iterdir())[0]
    original = image.read_bytes()
    code, _, err = _run(capsys, "data", "freeze", str(tree), "--root", str(tree.parent), "--out", str(image))
    assert code == 2 and "val/*/*" in err and len(err.strip().splitlines()) == 1 and image.read_bytes() == original


def test_evaluate_then_report(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path, tiny_manifest: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, err = _run(
        capsys, "evaluate", "--checkpoint", str(quadrant_checkpoint), "--arch", "tests.conftest:QuadrantNet",
        "--threat-model", str(tiny_threat), "--out", str(out), "--batch-size", "16", "--no-progress",
        "--data-root", str(tiny_manifest.parent),
    )
    assert code == 0, err
    assert "robust accuracy: " in stdout and "95% CI" in stdout
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "success"
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    target = tmp_path / "again.html"
    code, _, _ = _run(capsys, "report", str(out / "results.json"), "--out", str(target))
    assert code == 0 and "<html" in target.read_text()
    # each example's outcome is kept: the same run compared with itself is a paired test with no discordant example
    clean = next(e for e in data["evaluations"] if e["key"] == "clean")
    assert set(clean["outcomes"]) == {"accuracy"}
    code, stdout, _ = _run(capsys, "compare", str(out / "results.json"), str(out / "results.json"))
    assert code == 0 and "McNemar" in stdout and "p = 1.00 (0 vs 0)" in stdout


@pytest.mark.parametrize(
    ("argv_tail", "needle"),
    [
        (["--checkpoint", "CORRUPT"], "corrupt"),
        (["--checkpoint", "MISSING"], "does not exist"),
        (["--checkpoint", "GOOD", "--device", "tpu"], "device"),
        (["--checkpoint", "GOOD", "--only", "atacks"], "--only"),
        (["--checkpoint", "GOOD", "--arch", "nosuch"], "nosuch"),
    ],
)
def test_evaluate_errors_are_one_line(tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path,
                                      capsys: pytest.CaptureFixture[str], argv_tail: list[str], needle: str) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04garbage")
    paths = {"CORRUPT": str(corrupt), "MISSING": str(tmp_path / "missing.pt"), "GOOD": str(quadrant_checkpoint)}
    argv = ["evaluate", "--threat-model", str(tiny_threat), "--out", str(tmp_path / "o"), "--no-progress",
            "--data-root", str(tiny_threat.parent / "data")]
    argv += [paths.get(a, a) for a in argv_tail]
    if "--arch" not in argv:
        argv += ["--arch", "tests.conftest:QuadrantNet"]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("robench: error:") and needle in err and len(err.strip().splitlines()) == 1


def test_bad_results_file_and_argparse_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{")
    code, _, err = _run(capsys, "report", str(bad))
    assert code == 2 and "not valid JSON" in err
    code, _, err = _run(capsys, "evaluate", "--checkpoint", "x", "--threat-model", "y", "--n-examples", "-3")
    # one line, like every other error (argparse printed its usage first)
    assert code == 2 and err.strip().splitlines() == ["robench: error: argument --n-examples: expected a positive integer, got '-3' (see `robench evaluate --help`)"]
    assert _run(capsys, "evaluate", "--help")[0] == 0


def test_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import robench.cli as cli

    def boom(args: object) -> int:
        raise ZeroDivisionError("x")

    monkeypatch.setattr(cli, "cmd_ls", boom)
    monkeypatch.delenv("ROBENCH_DEBUG", raising=False)
    code, _, err = _run(capsys, "ls")
    assert code == 1 and err.startswith("robench: internal error: ZeroDivisionError") and len(err.strip().splitlines()) == 1


def test_a_rerun_that_fails_before_it_starts_keeps_the_earlier_outputs(
    tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in --arch or --checkpoint (or a plan the model cannot run) deleted the earlier run's
    results.json, report and exports before the model failed to load; they stay until a rerun starts,
    and a rerun that starts and then fails replaces them with its own results.json (status error)."""
    import robench.runner as runner

    outputs = ("results.json", "report.html", "metrics.csv", "summary.md")
    out = tmp_path / "run"
    argv = ["evaluate", "--threat-model", str(tiny_threat), "--out", str(out), "--no-progress",
            "--data-root", str(tiny_threat.parent / "data")]  # fmt: skip
    arch = ("--arch", "tests.conftest:QuadrantNet")
    assert _run(capsys, *argv, *arch, "--checkpoint", str(quadrant_checkpoint))[0] == 0
    earlier = {name: (out / name).read_bytes() for name in outputs}
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04garbage")

    def rerun_fails_and_keeps(*wrong: str) -> None:
        code, _, err = _run(capsys, *argv, *wrong)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert {name: (out / name).read_bytes() for name in outputs} == earlier, wrong

    rerun_fails_and_keeps("--arch", "tests.conftest:QuadrantNte", "--checkpoint", str(quadrant_checkpoint))
    rerun_fails_and_keeps(*arch, "--checkpoint", str(tmp_path / "typo.pt"))
    rerun_fails_and_keeps(*arch, "--checkpoint", str(corrupt))

    def refuse(*args: object) -> None:
        raise runner.ConfigError("the plan does not fit the model (simulated preflight)")

    monkeypatch.setattr(runner, "_preflight", refuse)  # CROWN on a max-pooling network, say
    rerun_fails_and_keeps(*arch, "--checkpoint", str(quadrant_checkpoint))
    monkeypatch.undo()
    from robench.attacks import pgd

    def broken(*args: object, **kwargs: object) -> object:
        raise runner.ModelError("the model failed in the attack (simulated)")

    monkeypatch.setattr(pgd.FGSM, "run", broken)
    assert _run(capsys, *argv, *arch, "--checkpoint", str(quadrant_checkpoint))[0] == 2
    assert sorted(p.name for p in out.iterdir()) == ["journal.bin", "results.json"]
    assert json.loads((out / "results.json").read_text())["status"] == "error"


def test_out_below_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_threat: Path,
                                      quadrant_checkpoint: Path) -> None:
    """--out under a regular file ended in an internal error (NotADirectoryError)."""
    code, _, err = _run(capsys, "evaluate", "--checkpoint", str(quadrant_checkpoint), "--arch", "tests.conftest:QuadrantNet",
                        "--threat-model", str(tiny_threat), "--data-root", str(tiny_threat.parent / "data"),
                        "--out", str(quadrant_checkpoint / "sub"), "--no-progress")  # fmt: skip
    assert code == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1


def test_a_model_calling_exit_is_one_line_and_keeps_the_results(
    tmp_path: Path, tiny_threat: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """sys.exit() inside the model ended robench with that code and no message at all."""
    import robench.runner as runner
    from tests.conftest import QuadrantNet

    class ExitsLater(QuadrantNet):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            type(self).calls += 1
            if type(self).calls > 20:  # after the probe and the clean pass: inside the attacks
                sys.exit(0)
            return super().forward(x)

    real = runner.load_model
    monkeypatch.setattr(runner, "load_model", lambda model, **kwargs: real(ExitsLater(), **kwargs))
    out = tmp_path / "run"
    code, _, err = _run(capsys, "evaluate", "--checkpoint", "unused", "--threat-model", str(tiny_threat), "--out", str(out),
                        "--no-progress", "--batch-size", "4", "--data-root", str(tiny_threat.parent / "data"))  # fmt: skip
    assert code == 2 and err.strip().splitlines() == [
        "robench: error: the run was stopped by a call to exit(0) from the model or code it ran"
    ]
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "error" and data["error"] == "SystemExit: 0"
    assert [e["status"] for e in data["evaluations"]][:1] == ["success"]  # the clean section had finished


def test_resume_without_a_journal_says_it_starts_afresh(
    tmp_path: Path, quadrant_checkpoint: Path, tiny_threat: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume into a folder with no journal (a mistyped --out) started afresh without a word."""
    argv = ["evaluate", "--checkpoint", str(quadrant_checkpoint), "--arch", "tests.conftest:QuadrantNet", "--threat-model",
            str(tiny_threat), "--no-progress", "--data-root", str(tiny_threat.parent / "data"), "--resume"]  # fmt: skip
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "typo"))
    assert code == 0 and f"robench: --resume: no journal in {tmp_path / 'typo'}, so nothing to continue; starting afresh" in err
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "typo"))  # now there is one: no notice
    assert code == 0 and "no journal" not in err


def test_commands_that_compute_nothing_do_not_import_the_heavy_libraries() -> None:
    # torchvision pulls in torch._dynamo (about 3 s) and scipy.stats costs about 1.5 s; validate and
    # ls need neither, so a user checking a threat model does not wait for them
    script = ("import sys, contextlib, io\nfrom robench.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    codes = [main(['validate', 'mnist-linf-0.3']), main(['ls'])]\n"
              "heavy = [m for m in ('torchvision', 'scipy.stats', 'torch._dynamo') if m in sys.modules]\n"
              "print(codes, heavy)\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 0] []", proc.stdout


def test_an_interrupted_command_says_what_is_true_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted `robench demo` told the user to rerun with --resume, which the demo does not have."""
    import robench.cli
    import robench.demo

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(robench.demo, "run_demo", interrupted)
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path / "demo"), "--no-progress")
    assert code == 130 and len(err.strip().splitlines()) == 1, err
    assert "--resume to continue" not in err and "no --resume" in err and str(tmp_path / "cache" / "demo") in err
    monkeypatch.setattr(robench.cli, "cmd_evaluate", interrupted)
    code, _, err = _run(capsys, "evaluate", "--checkpoint", "m.pt", "--threat-model", "mnist-linf-0.3")
    # before the run started (loading, pre-run checks) it said "finished evaluations are in results.json"
    assert code == 130 and err == "robench: interrupted before the run started (loading, checks): no results were written\n"

    def interrupted_run(*args: object, **kwargs: object) -> int:
        exc = KeyboardInterrupt()
        exc.results_path = tmp_path / "run" / "results.json"  # type: ignore[attr-defined]  # as the runner marks it
        raise exc

    monkeypatch.setattr(robench.cli, "cmd_evaluate", interrupted_run)
    code, _, err = _run(capsys, "evaluate", "--checkpoint", "m.pt", "--threat-model", "mnist-linf-0.3")
    assert code == 130 and f"finished evaluations are in {tmp_path / 'run' / 'results.json'}, rerun with --resume to continue" in err
    monkeypatch.setattr(robench.cli, "cmd_ls", interrupted)
    assert _run(capsys, "ls")[::2] == (130, "robench: interrupted\n")


def test_data_freeze_help_names_the_listing_digest(capsys: pytest.CaptureFixture[str]) -> None:
    """The help said a frozen image-folder pattern records its count; it records a digest of its listing too."""
    code, out, _ = _run(capsys, "data", "--help")
    assert code == 0 and "`listing_sha256`, a digest of their entries' names and sizes" in " ".join(out.split())


@pytest.mark.parametrize(
    "argv",
    [["export", "results.json", "--csv", ""], ["export", "results.json", "--markdown", " "], ["report", "results.json", "--out", ""],
     ["evaluate", "--checkpoint", "", "--threat-model", "mnist-linf-0.3"], ["data", "verify", "mnist5k", "--root", ""],
     ["compare", "results.json", "--snapshot", ""], ["compare", "results.json", ""], ["leaderboard", "sync", "--from", ""],
     ["evaluate", "--checkpoint", "m.pt", "--threat-model", ""], ["report", ""], ["export", " "], ["validate", ""]],
    ids=["csv", "markdown", "report-out", "checkpoint", "root", "snapshot", "compare-other", "sync-from", "threat-model",
         "report-results", "export-results", "validate-file"],
)
def test_an_empty_path_option_is_refused_not_taken_as_not_given(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """``--csv ""`` wrote the default metrics.csv instead, ``--root ""`` verified the default folder;
    ``compare a.json --snapshot ""`` ranked the run on the shipped snapshot and ``compare a.json ""``
    did so instead of comparing two runs, ``leaderboard sync --from ""`` read the working folder."""
    code, _, err = _run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "expected a path, got an empty string" in err, err


def test_the_cli_keeps_torchs_cuda_home_notice_off_stderr(capsys) -> None:
    """torch.compile on a CPU machine with a CUDA toolkit logged 'No CUDA runtime is found, using
    CUDA_HOME=...' between the progress bars (yardstick probe)."""
    import logging

    from robench.cli import main

    main(["ls"])
    assert logging.getLogger("torch.utils.cpp_extension").getEffectiveLevel() >= logging.ERROR


@pytest.mark.parametrize("where", ["device", "out"])
def test_demo_refuses_a_bad_device_or_out_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """`robench demo --device tpu` (or an --out under a file) trained a model, minutes on a CPU,
    before the first evaluation refused the device."""
    import robench.demo

    def no_training(*args: object, **kwargs: object) -> object:
        raise AssertionError("the demo trained before checking its options")

    monkeypatch.setattr(robench.demo, "demo_checkpoint", no_training)
    (tmp_path / "a-file").write_text("x")
    argv = ["demo", "--no-progress"] + (["--device", "tpu", "--out", str(tmp_path / "demo")] if where == "device"
                                       else ["--device", "cpu", "--out", str(tmp_path / "a-file" / "demo")])  # fmt: skip
    code, out, err = _run(capsys, *argv)
    assert code == 2 and err.startswith("robench: error:") and err.count("\n") == 1, err
    assert ("unknown device 'tpu'" if where == "device" else "is a file, not a folder") in err and "Training" not in out
