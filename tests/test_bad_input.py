"""The bad-input corpus: every case ends in exit code 2, one line on stderr, and nothing written
except a results.json with status "error" when the run had started."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from robench.cli import main
from tests.conftest import QuadrantNet, write_npz_dataset

CORPUS = Path(__file__).parent / "corpus"
ARCH = "tests.conftest:QuadrantNet"
GOOD_THREAT = {
    "schema_version": 1,
    "name": "good",
    "dataset": {"manifest": "DATA", "split": "test"},
    "adversary": {"eps": 0.1},
    "evaluations": {"attacks": [{"name": "fgsm"}]},
}


class _NaNNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 4), float("nan"))


class _SevenNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :7]


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/robench-pwned",))


def _checkpoints(folder: Path) -> dict[str, tuple[Path, str | None]]:
    """Bad checkpoints: (path, --arch)."""
    good = QuadrantNet().state_dict()
    paths: dict[str, tuple[Path, str | None]] = {}

    def save(name: str, obj: object, arch: str | None = ARCH) -> None:
        path = folder / name
        torch.save(obj, path)
        paths[name] = (path, arch)

    save("missing_keys.pt", {})
    save("unexpected_keys.pt", {**good, "extra.weight": torch.ones(2)})
    save("wrong_shape.pt", {"scale": torch.ones(3)})
    save("evil_pickle.pt", {"state_dict": _Evil()})
    save("whole_module.pt", QuadrantNet(), None)
    truncated = folder / "truncated.pt"
    torch.save(good, truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    paths["truncated.pt"] = (truncated, ARCH)
    (folder / "empty.pt").write_bytes(b"")
    paths["empty.pt"] = (folder / "empty.pt", ARCH)
    for name, net in (("nan_outputs.ts", _NaNNet()), ("seven_classes.ts", _SevenNet())):
        torch.jit.save(torch.jit.script(net), str(folder / name))
        paths[name] = (folder / name, None)
    torch.jit.save(torch.jit.script(QuadrantNet()), str(folder / "torchscript_with_arch.ts"))  # --arch was ignored, and recorded
    paths["torchscript_with_arch.ts"] = (folder / "torchscript_with_arch.ts", ARCH)
    paths["directory"] = (folder, ARCH)
    paths["missing.pt"] = (folder / "missing.pt", ARCH)
    (folder / "text.pt").write_text("not a checkpoint\n" * 20)  # torch's legacy parser: KeyError
    paths["text.pt"] = (folder / "text.pt", ARCH)
    (folder / "garbage.pt").write_bytes(bytes(range(7, 250)) * 4)  # "unpickling" fails on random bytes too
    paths["garbage.pt"] = (folder / "garbage.pt", ARCH)
    (folder / "truncated.pt2").write_bytes(b"PK\x03\x04 truncated")  # torch.export logs a traceback
    paths["truncated.pt2"] = (folder / "truncated.pt2", None)
    return paths


def _npy_with_shape(array: np.ndarray, shape: bytes) -> bytes:
    """``array`` saved as .npy with its header's shape replaced by ``shape`` (a damaged or lying header)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    length = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + length].replace(str(array.shape).encode(), shape).rstrip(b" \n")
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return raw[:8] + len(header).to_bytes(2, "little") + header + raw[10 + length :]


def _datasets(folder: Path) -> dict[str, Path]:
    """Bad datasets: manifest paths."""
    out = {}
    tampered = write_npz_dataset(folder / "tampered")
    with (tampered.parent / "tiny.npz").open("ab") as handle:
        handle.write(b"x")
    out["checksum_mismatch"] = tampered
    missing = write_npz_dataset(folder / "missing")
    (missing.parent / "tiny.npz").unlink()
    out["missing_file"] = missing
    for name, x, y in (
        ("wrong_shape", np.zeros((48, 8, 8, 3), np.uint8), np.arange(48) % 4),
        ("labels_out_of_range", np.zeros((48, 8, 8, 1), np.uint8), np.arange(48) % 9),
        ("labels_beyond_int64", np.zeros((48, 8, 8, 1), np.uint8), np.full(48, 2**63 + 5, np.uint64)),
        ("float_out_of_range", np.full((48, 1, 8, 8), 7.0, np.float32), np.arange(48) % 4),
    ):
        manifest = write_npz_dataset(folder / name)
        np.savez(manifest.parent / "tiny.npz", x=x, y=y)
        data = yaml.safe_load(manifest.read_text())
        data["files"] = [{"path": "tiny.npz"}]  # no hash: the content check must catch it
        data["splits"]["test"].pop("label_counts")
        manifest.write_text(yaml.safe_dump(data))
        out[name] = manifest
    for name, arrays in (
        ("object_arrays", {"x": np.array([object()] * 48, dtype=object), "y": np.arange(48) % 4}),
        ("labels_short", {"x": np.zeros((48, 8, 8, 1), np.uint8), "y": np.arange(40) % 4}),
        ("five_channels", {"x": np.zeros((48, 8, 8, 5), np.uint8), "y": np.arange(48) % 4}),
    ):
        manifest = write_npz_dataset(folder / name)
        np.savez(manifest.parent / "tiny.npz", allow_pickle=True, **arrays)
        data = yaml.safe_load(manifest.read_text())
        data["files"] = [{"path": "tiny.npz"}]
        data["splits"]["test"].pop("label_counts")
        manifest.write_text(yaml.safe_dump(data))
        out[name] = manifest
    for name, shape in (("npy_header_cut", b"(99999999999,"), ("npy_header_claims_terabytes", b"(48, 100000000000, 8, 1)")):
        # numpy's header parser let a TokenError out; allocating the claimed array, a MemoryError
        manifest = write_npz_dataset(folder / name)
        with zipfile.ZipFile(manifest.parent / "tiny.npz", "w") as archive:
            archive.writestr("x.npy", _npy_with_shape(np.zeros((48, 8, 8, 1), np.uint8), shape))
            archive.writestr("y.npy", _npy_with_shape(np.arange(48) % 4, b"(48,)"))
        data = yaml.safe_load(manifest.read_text())
        data["files"] = [{"path": "tiny.npz"}]
        data["splits"]["test"].pop("label_counts")
        manifest.write_text(yaml.safe_dump(data))
        out[name] = manifest
    escape = write_npz_dataset(folder / "escape")
    data = yaml.safe_load(escape.read_text())
    data["files"] = [{"path": "../escape/tiny.npz"}]
    escape.write_text(yaml.safe_dump(data))
    out["path_escape"] = escape
    root_itself = write_npz_dataset(folder / "root_itself")  # Path(".").parts is (): verifying it raised IndexError
    data = yaml.safe_load(root_itself.read_text())
    data["files"] = [{"path": "."}]
    root_itself.write_text(yaml.safe_dump(data))
    out["path_is_the_root"] = root_itself
    return out


def _cases(tmp: Path) -> list[tuple[str, list[str]]]:
    good_manifest = write_npz_dataset(tmp / "good")
    good_root = str(good_manifest.parent)
    good_ckpt = tmp / "good.pt"
    torch.save(QuadrantNet().state_dict(), good_ckpt)

    def threat(name: str, text: str) -> Path:
        path = tmp / f"tm-{name}.yaml"
        path.write_bytes(text.replace("DATA", str(good_manifest)).encode("utf-8", "surrogateescape"))
        return path

    good_threat = threat("good", yaml.safe_dump(GOOD_THREAT))
    cases: list[tuple[str, list[str]]] = []

    def evaluate(name: str, checkpoint: Path, tm: Path, arch: str | None = ARCH, root: str = good_root,
                 extra: tuple[str, ...] = ()) -> None:
        argv = ["evaluate", "--checkpoint", str(checkpoint), "--threat-model", str(tm), "--out", str(tmp / "out" / name),
                "--data-root", root, "--no-progress", *extra]
        cases.append((name, argv + (["--arch", arch] if arch else [])))

    for path in sorted((CORPUS / "threat_models").glob("*.yaml")):
        raw = path.read_bytes().decode("utf-8", "surrogateescape")
        evaluate(f"yaml/{path.stem}", good_ckpt, threat(path.stem, raw))
        cases.append((f"validate/{path.stem}", ["validate", str(threat(path.stem, raw))]))
    big = tmp / "tm-huge.yaml"
    big.write_text("schema_version: 1\n" + "# padding\n" * 200_000)
    evaluate("yaml/huge", good_ckpt, big)
    for name, (path, arch) in _checkpoints(tmp / "ckpt" if (tmp / "ckpt").mkdir() is None else tmp).items():
        evaluate(f"checkpoint/{name}", path, good_threat, arch)
    for name, manifest in _datasets(tmp / "datasets").items():
        tm = tmp / f"tm-data-{name}.yaml"
        tm.write_text(yaml.safe_dump({**GOOD_THREAT, "dataset": {"manifest": str(manifest), "split": "test"}}))
        evaluate(f"data/{name}", good_ckpt, tm, root=str(manifest.parent))
    for name, entry in (("smoothing_radius_beyond_the_box", {"name": "smoothing", "params": {"sigma": 0.25, "n": 10, "radii": [1e308]}}),
                        ("lipschitz_radius_beyond_the_box", {"name": "lipschitz", "params": {"radii": [0.5, 1e308]}})):
        # the L2 diameter of the box needs the inputs' shape: the run refuses it before any section, validate does not
        tm = tmp / f"tm-{name}.yaml"
        tm.write_text(yaml.safe_dump({**GOOD_THREAT, "evaluations": {"certification": [entry]}}).replace("DATA", str(good_manifest)))
        evaluate(f"certify/{name}", good_ckpt, tm)
    evaluate("option/arch_unknown", good_ckpt, good_threat, arch="small_cn")
    evaluate("option/device", good_ckpt, good_threat, extra=("--device", "tpu"))
    evaluate("option/too_many_examples", good_ckpt, good_threat, extra=("--n-examples", "100000"))
    evaluate("option/only_unknown", good_ckpt, good_threat, extra=("--only", "atacks"))
    evaluate("option/only_undeclared", good_ckpt, good_threat, extra=("--only", "certification"))
    evaluate("option/only_empty", good_ckpt, good_threat, extra=("--only", ","))
    evaluate("option/seed_huge", good_ckpt, good_threat, extra=("--seed", "9" * 30))
    (tmp / "a-file").write_text("x")
    cases.append(("output/out_is_a_file", ["evaluate", "--checkpoint", str(good_ckpt), "--threat-model", str(good_threat),
                                           "--out", str(tmp / "a-file"), "--data-root", good_root, "--no-progress", "--arch", ARCH]))
    (tmp / "out" / "journal_folder" / "journal.bin").mkdir(parents=True)
    cases.append(("output/journal_is_a_folder", ["evaluate", "--checkpoint", str(good_ckpt), "--threat-model", str(good_threat),
                                                 "--out", str(tmp / "out" / "journal_folder"), "--data-root", good_root,
                                                 "--no-progress", "--arch", ARCH, "--resume"]))
    for name in ("results.json", "report.html", "metrics.csv"):  # removing the earlier run's file raised IsADirectoryError
        (tmp / "out" / f"{name}_folder" / name).mkdir(parents=True)
        cases.append((f"output/{name}_is_a_folder", ["evaluate", "--checkpoint", str(good_ckpt), "--threat-model", str(good_threat),
                                                    "--out", str(tmp / "out" / f"{name}_folder"), "--data-root", good_root,
                                                    "--no-progress", "--arch", ARCH]))
    from tests.report import fixtures

    results_file = fixtures.strong().save(tmp / "strong.json")
    cases.append(("output/report_into_a_folder", ["report", str(results_file), "--out", str(tmp)]))
    cases.append(("output/export_into_a_folder", ["export", str(results_file), "--csv", str(tmp)]))
    if hasattr(os, "mkfifo"):  # the atomic rename replaced it (as root, `--out /dev/null` replaced /dev/null)
        os.mkfifo(tmp / "fifo")
        cases.append(("output/report_onto_a_fifo", ["report", str(results_file), "--out", str(tmp / "fifo")]))
    for name, text in (("forward_passes", '{"clean_acc": "90", "autoattack_acc": "50", "eps": "8/255", "number_forward_passes": "abc"}'),
                       ("deep", "[" * 100_000 + "]" * 100_000), ("bool_accuracy", '{"clean_acc": true, "eps": "8/255"}'),
                       # float() of a JSON integer beyond a float raised OverflowError, an internal error
                       ("huge_accuracy", '{"clean_acc": 1' + "0" * 400 + ', "autoattack_acc": "50", "eps": "8/255"}'),
                       ("huge_forward_passes", '{"clean_acc": "90", "autoattack_acc": "50", "eps": "8/255", "number_forward_passes": 1' + "0" * 400 + "}")):
        board = tmp / "model_info" / name / "cifar10" / "Linf"
        board.mkdir(parents=True)
        (board / "M.json").write_text(text)
        cases.append((f"leaderboard/{name}", ["leaderboard", "sync", "--from", str(board.parents[1]), "--out", str(tmp / "lb.json")]))
    for name, text in (("boards_list", '{"schema_version": 1, "source": {}, "boards": []}'),
                       ("accuracy_text", '{"schema_version": 1, "source": {}, "boards": {"cifar10/Linf": {"dataset": "cifar10", "threat": "Linf", '
                                         '"metric": "robust_accuracy", "entries": [{"id": "M", "name": "", "venue": "", "architecture": "", '
                                         '"additional_data": false, "clean_accuracy": 0.9, "robust_accuracy": "abc", "robust_source": "autoattack"}]}}}')):
        (tmp / f"snap-{name}.json").write_text(text)
        cases.append((f"leaderboard/snapshot_{name}", ["compare", str(results_file), "--snapshot", str(tmp / f"snap-{name}.json")]))
    for name, text in (("deep", "[" * 100_000 + "]" * 100_000),  # json's RecursionError was an internal error
                       ("huge_integer", '{"schema_version": 1, "source": {}, "boards": {}, "x": ' + "9" * 5000 + "}")):  # a ValueError
        (tmp / f"snap-{name}.json").write_text(text)
        cases.append((f"leaderboard/snapshot_{name}", ["compare", str(results_file), "--snapshot", str(tmp / f"snap-{name}.json")]))
    cases.append(("report/not_json", ["report", str(tmp / "tm-good.yaml")]))
    cases.append(("data/unknown_manifest", ["data", "verify", "cifar11", "--root", good_root]))
    cut = tmp / "datasets" / "npy_header_cut"  # a listed .npy with a shape is opened by verify
    (cut / "labels.npy").write_bytes(_npy_with_shape(np.arange(48) % 4, b"(99999999999,"))
    (cut / "labels.yaml").write_text(yaml.safe_dump({**yaml.safe_load((cut / "tiny.yaml").read_text()),
                                                     "files": [{"path": "labels.npy", "shape": [48]}]}))
    cases.append(("data/verify_npy_header_cut", ["data", "verify", str(cut / "labels.yaml"), "--root", str(cut)]))
    root_itself = tmp / "datasets" / "root_itself"
    cases.append(("data/verify_path_is_the_root", ["data", "verify", str(root_itself / "tiny.yaml"), "--root", str(root_itself)]))
    cases.append(("data/freeze_path_is_the_root", ["data", "freeze", str(root_itself / "tiny.yaml"), "--root", str(root_itself),
                                                   "--out", str(tmp / "frozen.yaml")]))
    return cases


def test_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = Path("/tmp/robench-pwned")
    marker.unlink(missing_ok=True)
    failures = []
    cases = _cases(tmp_path)
    assert len(cases) > 45
    for name, argv in cases:
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) >= 1 and "Traceback" not in err
        if argv[0] != "validate":
            ok = ok and lines[-1].startswith("robench: error:")
        if name.startswith("data/"):  # a data error names the file or the manifest
            ok = ok and any(word in err for word in ("manifest", ".npz", ".yaml"))
        if argv[0] == "evaluate" and not name.startswith("output/"):
            ok = ok and len(lines) == 1
            folder = Path(argv[argv.index("--out") + 1])
            written = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
            if written:
                status = json.loads((folder / "results.json").read_text())["status"]
                ok = ok and status == "error" and set(written) <= {"results.json", "journal.bin"}
        if not ok:
            failures.append(f"{name}: exit {code}: {err.strip()[:300]}")
    assert not marker.exists(), "a hostile input ran code"
    assert not failures, "\n".join(failures)


def test_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = dict(_cases(tmp_path))
    for name, hint in (("yaml/attack_unknown", "pgd"), ("option/arch_unknown", "small_cnn"), ("yaml/manifest_unknown", "cifar10")):
        main(cases[name])
        err = capsys.readouterr().err
        assert "did you mean" in err and hint in err, (name, err)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize("command", ["validate", "report", "export", "compare --snapshot", "leaderboard sync"])
def test_an_endless_file_is_refused_at_the_cap(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/dev/zero (and a FIFO) report size 0: the cap was checked on st_size and the file read until
    memory ran out (a leaderboard snapshot, and a model_info file linked to /dev/zero, were read
    without a cap)."""
    args = [command, "/dev/zero"] + (["--out", str(tmp_path / "x.html")] if command == "report" else [])
    if command == "compare --snapshot":
        from tests.report import fixtures

        args = ["compare", str(fixtures.strong().save(tmp_path / "strong.json")), "--snapshot", "/dev/zero"]
    elif command == "leaderboard sync":
        (tmp_path / "model_info" / "cifar10" / "Linf").mkdir(parents=True)
        (tmp_path / "model_info" / "cifar10" / "Linf" / "M.json").symlink_to("/dev/zero")
        args = ["leaderboard", "sync", "--from", str(tmp_path / "model_info"), "--out", str(tmp_path / "lb.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    endless = "M.json" if command == "leaderboard sync" else "/dev/zero"
    assert f"{endless}: more than" in err and len(err.splitlines()) == 1, err


def test_labels_beyond_int64_are_quoted_as_they_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """uint64 labels of 2**63 and more were cast to int64 first: the error quoted wrapped negative labels."""
    manifest = _datasets(tmp_path)["labels_beyond_int64"]
    threat = tmp_path / "t.yaml"
    threat.write_text(yaml.safe_dump({**GOOD_THREAT, "dataset": {"manifest": str(manifest), "split": "test"}}))
    checkpoint = tmp_path / "m.pt"
    torch.save(QuadrantNet().state_dict(), checkpoint)
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--arch", ARCH, "--threat-model", str(threat), "--out", str(tmp_path / "out"),
                 "--data-root", str(manifest.parent), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(2**63 + 5) in err and "-922" not in err, err
