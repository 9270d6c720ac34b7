"""Every checkpoint format, the trust refusal, architecture specs and the pixel-space wrapper."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from robench._errors import CheckpointError, ConfigError, ModelError
from robench.models import load_model
from robench.models.loading import build_arch
from robench.threat_model import Preprocessing
from tests.conftest import QuadrantNet

ARCH = "tests.conftest:QuadrantNet"
X = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _reference() -> nn.Module:
    torch.manual_seed(1)
    net = QuadrantNet()
    with torch.no_grad():
        net.scale.fill_(3.5)
    return net.eval()


def _same_outputs(path: Path, arch: str | None = None, **kwargs: object) -> None:
    handle = load_model(path, arch=arch, **kwargs)  # type: ignore[arg-type]
    assert not handle.module.training
    assert all(not p.requires_grad for p in handle.module.parameters())
    torch.testing.assert_close(handle.predict_logits(X), _reference()(X))


def test_state_dict_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save(_reference().state_dict(), path)
    _same_outputs(path, ARCH)


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model", "net"])
def test_state_dict_nested_and_dataparallel_prefix(tmp_path: Path, wrapper: str) -> None:
    state = {f"module.{k}": v for k, v in _reference().state_dict().items()}
    path = tmp_path / "m.pth"
    torch.save({wrapper: state, "epoch": 3}, path)
    _same_outputs(path, ARCH)


def test_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file(_reference().state_dict(), str(path))
    _same_outputs(path, ARCH)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_stripped_from_state_dicts_and_safetensors(tmp_path: Path, prefix: str) -> None:
    """DataParallel's ``module.`` and torch.compile's ``_orig_mod.``, in either order, come off the
    keys of a torch.save state_dict and of a safetensors file alike (a safetensors file saved from a
    DataParallel model failed with 'missing keys', and ``_orig_mod.module.`` kept its ``module.``)."""
    from safetensors.torch import save_file

    state = {f"{prefix}{k}": v for k, v in _reference().state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "m.pt")
    _same_outputs(tmp_path / "m.pt", ARCH)
    save_file(state, str(tmp_path / "m.safetensors"))
    _same_outputs(tmp_path / "m.safetensors", ARCH)


def test_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(_reference()), str(path))
    _same_outputs(path)


def test_torch_export(tmp_path: Path) -> None:
    path = tmp_path / "m.pt2"
    program = torch.export.export(_reference(), (X,))
    torch.export.save(program, str(path))
    _same_outputs(path)


@pytest.mark.parametrize("kind", ["torchscript", "torch.export", "whole module", "in memory"])
def test_arch_with_a_model_that_holds_its_own_is_refused(tmp_path: Path, kind: str) -> None:
    """--arch with a TorchScript or torch.export checkpoint was ignored, and recorded in the results as if used."""
    path: Path | nn.Module = tmp_path / "m"
    if kind == "torchscript":
        torch.jit.save(torch.jit.script(_reference()), str(path))
    elif kind == "torch.export":
        path = tmp_path / "m.pt2"
        torch.export.save(torch.export.export(_reference(), (X,)), str(path))
    elif kind == "whole module":
        torch.save(_reference(), path)
    else:
        path = _reference()
    what = {"torchscript": "a TorchScript checkpoint", "torch.export": "a torch.export checkpoint",
            "whole module": "a pickled whole module", "in memory": "a model given in memory"}[kind]  # fmt: skip
    with pytest.raises(ConfigError, match=f"^--arch is not used with {what} .*, which holds its own architecture; drop --arch {ARCH}$"):
        load_model(path, arch=ARCH, trust_checkpoint=True)
    assert load_model(path, trust_checkpoint=True).info.arch is None


class _Evil:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_model(path, arch=ARCH)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        load_model(raw, arch=ARCH)
    assert not marker.exists()


def _rewrite_zip(source: Path, target: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, replace.get(info.filename, zin.read(info.filename)))


def test_torch_export_archive_with_pickled_code_is_refused(tmp_path: Path) -> None:
    """torch.export.load unpickles some entries without weights_only (sample inputs after a failed
    safe load, weights flagged use_pickle): such an archive must not run code untrusted."""
    good = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(_reference(), (X,)), str(good))
    names = zipfile.ZipFile(good).namelist()
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save(((_Evil(marker),), {}), evil)
    sample = next(n for n in names if "/sample_inputs/" in n and n.endswith(".pt"))
    _rewrite_zip(good, tmp_path / "sample.pt2", {sample: evil.getvalue()})
    config_name = next(n for n in names if n.endswith("weights/model_weights_config.json"))
    config = json.loads(zipfile.ZipFile(good).read(config_name))
    entry = config["config"][next(iter(config["config"]))]
    entry["use_pickle"] = True
    weight = io.BytesIO()
    torch.save(_Evil(marker), weight)
    _rewrite_zip(good, tmp_path / "weight.pt2", {
        config_name: json.dumps(config).encode(), config_name.rsplit("/", 1)[0] + "/" + entry["path_name"]: weight.getvalue(),
    })  # fmt: skip
    for name in ("sample.pt2", "weight.pt2"):
        with pytest.raises(CheckpointError, match="--trust-checkpoint"):
            load_model(tmp_path / name)
        assert not marker.exists(), name
    assert load_model(good).info.format == "torch.export"  # the untampered archive still loads


def test_whole_module_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(_reference(), path)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_model(path)
    handle = load_model(path, trust_checkpoint=True)
    assert handle.info.trusted_pickle and handle.info.format == "pickled-module"
    torch.testing.assert_close(handle.predict_logits(X), _reference()(X))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "corrupt"), (b"\x00garbage" * 10, "corrupt"), (b"PK\x03\x04broken zip", "corrupt")],
)
def test_corrupt_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path, arch=ARCH)


def test_truncated_safetensors_and_missing_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file(_reference().state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(path, arch=ARCH)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pt", arch=ARCH)


def test_state_dict_mismatch_and_missing_arch(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"scale": torch.ones(3), "extra": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="does not fit --arch"):
        load_model(path, arch=ARCH)
    with pytest.raises(ConfigError, match="--arch"):
        load_model(path)


def test_arch_specs() -> None:
    assert isinstance(build_arch("small_cnn"), nn.Module)
    assert isinstance(build_arch("robench:small_cnn"), nn.Module)
    assert isinstance(build_arch("torchvision:resnet18", num_classes=10), nn.Module)
    for bad in ["nosuch_arch", "torchvision:resnet9000", "no.such.module:f", "tests.conftest:Nope", "weird:thing"]:
        with pytest.raises(ConfigError):
            build_arch(bad)


def test_normalisation_inside_wrapper() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    pre = Preprocessing(mean=(0.5,), std=(0.25,))
    handle = load_model(net, preprocessing=pre)
    torch.testing.assert_close(handle.predict_logits(X), net((X - 0.5) / 0.25))


class _Noisy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return QuadrantNet.forward(self._q, x) + torch.randn(x.shape[0], 4)  # type: ignore[attr-defined]

    def __init__(self) -> None:
        super().__init__()
        self._q = QuadrantNet()


def test_probe_detects_randomness_and_bad_outputs() -> None:
    gen = torch.Generator().manual_seed(0)
    assert load_model(_Noisy()).probe((1, 8, 8), 4, gen) is True
    assert load_model(QuadrantNet()).probe((1, 8, 8), 4, gen) is False
    with pytest.raises(ModelError, match="4 logits but the dataset has 10"):
        load_model(QuadrantNet()).probe((1, 8, 8), 10, gen)

    class _NaN(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 4), float("nan"))

    with pytest.raises(ModelError, match="NaN"):
        load_model(_NaN()).probe((1, 8, 8), 4, gen)
    with pytest.raises(ModelError):
        load_model(QuadrantNet()).probe((3, 8, 9), 4, gen) if False else load_model(nn.Linear(3, 4)).probe((1, 8, 8), 4, gen)


def test_timm_arch() -> None:
    pytest.importorskip("timm")
    assert isinstance(build_arch("timm:resnet18", num_classes=10), nn.Module)
    with pytest.raises(ConfigError):
        build_arch("timm:resnet_nonexistent")


def test_robustbench_arch_with_local_checkpoint(tmp_path: Path) -> None:
    """robustbench's architecture + a local checkpoint in its layout (dict with 'state_dict',
    DataParallel 'module.' prefixes); nothing is downloaded."""
    from robench._errors import UnavailableError

    try:
        net = build_arch("robustbench:cifar10/Linf/Standard")
    except UnavailableError as exc:
        pytest.skip(f"robustbench not importable: {exc}")
    path = tmp_path / "cifar10" / "Linf" / "Standard.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    handle = load_model(path, arch="robustbench:cifar10/Linf/Standard")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(handle.predict_logits(x), net.eval()(x))
    with pytest.raises(ConfigError, match="did you mean"):
        build_arch("robustbench:cifar10/Linf/Standrd")


@pytest.mark.parametrize("name", ["wrn-28-10", "wrn-34-10"])
def test_native_wideresnet_loads_robustbench_checkpoints(tmp_path: Path, name: str) -> None:
    """robench's own WRN reads a RobustBench-layout checkpoint of robustbench's WideResNet (the
    independent reference) and computes the same logits, so such audits need no robustbench."""
    from robench._errors import UnavailableError

    entry = {"wrn-28-10": "Standard", "wrn-34-10": "Zhang2019Theoretically"}[name]
    try:
        reference = build_arch(f"robustbench:cifar10/Linf/{entry}")
    except UnavailableError as exc:
        pytest.skip(f"robustbench not importable: {exc}")
    torch.manual_seed(0)
    for module in reference.modules():  # non-trivial batch-norm statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    ours = build_arch(name)
    # TRADES-derived checkpoints also hold an unused ``sub_block1`` group, which robench's WRN skips
    assert list(ours.state_dict()) == [k for k in reference.state_dict() if not k.startswith("sub_block1.")]
    path = tmp_path / f"{entry}.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    handle = load_model(path, arch=name)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(handle.predict_logits(x), reference.eval()(x), rtol=1e-4, atol=1e-4)


def test_native_wideresnets_have_the_published_sizes() -> None:
    # Zagoruyko & Komodakis (2016), Table: WRN-28-10 has 36.5M parameters; TRADES's WRN-34-10 46.2M.
    for name, millions in [("wrn-28-10", 36.5), ("wrn-34-10", 46.2)]:
        net = build_arch(name)
        assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)
    assert build_arch("wrn-28-10", num_classes=100).eval()(torch.rand(1, 3, 32, 32)).shape == (1, 100)


def _recursive() -> dict:
    state: dict = {}
    state["state_dict"] = state
    return state


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_recursive, "expected a state_dict"),
        (lambda: {0: torch.zeros(2), 1: torch.zeros(2)}, "keys must be parameter names"),
        (lambda: {"w": torch.zeros(2, device="meta")}, "not a dense tensor"),
        (lambda: {"w": torch.zeros(2, 2).to_sparse()}, "not a dense tensor"),
        # layout strided but no sizes: the shape check raised torch's RuntimeError, an internal error
        (lambda: {"w": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])}, "not a dense tensor"),
        (lambda: {"w": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged)}, "not a dense tensor"),
    ],
    ids=["self-referencing", "int-keys", "meta-tensor", "sparse-tensor", "nested-tensor", "jagged-nested-tensor"],
)
@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")  # building the strided nested tensor
def test_strange_checkpoint_structures_are_checkpoint_errors(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "odd.pt"
    torch.save(make(), path)
    with pytest.raises(CheckpointError, match=message):
        load_model(path, arch=ARCH)


def test_arch_constructor_failure_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="calling Linear"):
        build_arch("torch.nn:Linear")


@pytest.mark.parametrize(
    ("source", "error"),
    [("def net(:\n    pass\n", "importing module '{name}' failed: {path}:1: SyntaxError: invalid syntax"),
     ("x = 1\nraise RuntimeError('no GPU')\n", "importing module '{name}' failed: {path}:2: RuntimeError: no GPU"),
     ("def __getattr__(name):\n    raise RuntimeError(f'lazy import of {name} failed')\n",
      "looking up 'net' in module '{name}' failed: {path}:2: RuntimeError: lazy import of net failed"),
     ("def __getattr__(name):\n    raise AttributeError(name)\n", "module '{name}' has no attribute 'net'")],
    ids=["syntax", "raises-at-import", "getattr-raises", "getattr-attribute-error"],
)
def test_an_arch_module_that_fails_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], source: str, error: str
) -> None:
    """A SyntaxError (or any exception) importing the module of --arch module:fn, or a module-level
    __getattr__ raising anything but AttributeError (it escaped hasattr()), was an internal error."""
    from robench.cli import main

    name = f"robench_broken_arch_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # not syspath_prepend: it trips on robench's pkg_resources shim
    expected = f"--arch '{name}:net': " + error.format(name=name, path=tmp_path / f"{name}.py")
    with pytest.raises(ConfigError) as caught:
        build_arch(f"{name}:net")
    assert str(caught.value) == expected
    checkpoint = tmp_path / "m.pt"
    torch.save(QuadrantNet().state_dict(), checkpoint)
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--arch", f"{name}:net", "--threat-model", "mnist-linf-0.3",
                 "--out", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert (code, err) == (2, f"robench: error: {expected}\n")


def test_probe_catches_fixed_batch_sizes_and_non_tensor_outputs() -> None:
    class FixedBatch(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return x.reshape(2, -1)[:, :4]

    class DictOut(nn.Module):
        def forward(self, x: torch.Tensor) -> dict:  # noqa: D102
            return {"logits": x.flatten(1)[:, :4]}

    for net, message in ((FixedBatch(), "batches of 2 and 3|for 3 inputs"), (DictOut(), "failed|tensor of logits")):
        with pytest.raises(ModelError, match=message):
            load_model(net, num_classes=4).probe((1, 8, 8), 4, torch.Generator().manual_seed(0))


class _Cast(nn.Module):
    """QuadrantNet's logits cast to ``dtype`` from the ``after``-th forward pass on (0: always)."""

    def __init__(self, dtype: torch.dtype, after: int = 0) -> None:
        super().__init__()
        self.net, self.dtype, self.after, self.calls = QuadrantNet(), dtype, after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        self.calls += 1
        logits = self.net(x)
        return logits.to(self.dtype) if self.calls > self.after else logits


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64, torch.int64])
@pytest.mark.parametrize("after", [0, 6], ids=["always", "after-the-probe"])  # the probe makes 6 passes
def test_logits_that_are_not_floating_point_are_a_model_error(tmp_path: Path, dtype: torch.dtype, after: int) -> None:
    """Bool or complex logits ended the run with argmax's RuntimeError (an internal error); integer
    ones were refused only by attacks, as "not differentiable"."""
    import yaml

    import robench
    from tests.conftest import write_npz_dataset

    manifest = write_npz_dataset(tmp_path / "data")
    threat = tmp_path / "t.yaml"
    threat.write_text(yaml.safe_dump({"schema_version": 1, "name": "t", "dataset": {"manifest": str(manifest), "split": "test"},
                                      "adversary": {"eps": 0.1}, "evaluations": {"attacks": [{"name": "fgsm"}]}}))
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ModelError, match=f"logits of dtype {name}; expected floating-point logits"):
        robench.evaluate(_Cast(dtype, after), threat, out_dir=tmp_path / "out", data_root=manifest.parent, progress=False)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool])
def test_weights_of_another_kind_are_refused(tmp_path: Path, dtype: torch.dtype) -> None:
    """load_state_dict would cast them silently (dropping the imaginary part, or weights of 0/1)."""
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _reference().state_dict().items()}
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="dtype"):
        load_model(path, arch=ARCH)


def test_compiled_model_counts_outside_the_graph_and_does_not_recompile(monkeypatch) -> None:
    # a pass counter inside the compiled graph is an int torch.compile specialises on: every new count
    # recompiled, and after torch's recompile limit the model silently ran uncompiled
    import functools

    import torch._dynamo
    from torch._dynamo.utils import counters

    from robench.attacks._speed import StepModel

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))  # dynamo's guards, no C++ build
    torch._dynamo.reset()
    counters.clear()
    handle = load_model(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)), device="cpu")
    step = StepModel(handle.module, "exact", compile=True)
    x = torch.rand(5, 1, 4, 4, requires_grad=True)
    for _ in range(12):
        step(x).sum().backward()
    assert handle.counter.snapshot() == (60, 60)
    assert counters["stats"]["unique_graphs"] <= 2
    torch._dynamo.reset()


def test_probe_detects_a_model_random_on_some_calls_only() -> None:
    # two passes compared: a model whose noise comes every third call was never detected
    class EveryThirdCall(QuadrantNet):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            out = super().forward(x)
            return out + torch.randn_like(out) if self.calls % 3 == 0 else out

    handle = load_model(EveryThirdCall())
    assert handle.probe((1, 8, 8), 4, torch.Generator().manual_seed(0)) is True
    assert handle.counter.forward == 0  # the probe's passes are not an evaluation's cost


def test_a_flipped_bit_in_a_weight_is_found_by_the_archive_crc(tmp_path: Path) -> None:
    """torch.load reads tensor bytes without checking the zip CRC: a damaged copy loaded silently."""
    import zipfile

    path = tmp_path / "w.pt"
    torch.save(_reference().state_dict(), path)
    assert load_model(path, arch=ARCH).info.format  # the intact file loads
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename)
    raw = bytearray(path.read_bytes())
    with path.open("rb") as handle:  # the member's data follow its local header
        handle.seek(member.header_offset + 26)
        name_len, extra_len = int.from_bytes(handle.read(2), "little"), int.from_bytes(handle.read(2), "little")
    raw[member.header_offset + 30 + name_len + extra_len] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        load_model(path, arch=ARCH)


class _RowsShort(torch.nn.Module):
    """Right on batches of up to 3 (the probe's), one row short on larger ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1).repeat(1, 4)
        return out[:-1] if len(x) > 3 else out


class _ReturnsDict(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x.flatten(1)[:, :4]}


def test_wrong_row_counts_and_non_tensor_outputs_are_model_errors() -> None:
    """One row short on larger batches ended in an internal error; a dict output in an AttributeError."""
    from robench._errors import ModelError

    handle = load_model(_RowsShort(), device="cpu")
    handle.probe((1, 4, 4), 4, torch.Generator().manual_seed(0))
    with pytest.raises(ModelError, match=r"shape \[7, 4\] for a batch of 8 inputs"):
        handle.predict_logits(torch.rand(8, 1, 4, 4))
    with pytest.raises(ModelError, match="must return a tensor of logits"):
        load_model(_ReturnsDict(), device="cpu").module(torch.rand(2, 1, 4, 4))


def test_an_archive_written_without_crcs_loads(tmp_path: Path) -> None:
    """torch can write zip checkpoints without CRCs (stored as 0): they are not damaged copies."""
    path = tmp_path / "nocrc.pt"
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(_reference().state_dict(), path)
    finally:
        torch.serialization.set_crc32_options(True)
    assert load_model(path, arch=ARCH).info.format


def _rewritten(path: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the zip archive at ``path`` with the members whose names end in a key of ``replace``
    rewritten (with fresh, valid CRCs: what a crafted file has, not a damaged copy)."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
        for name in source.namelist():
            new = next((data for end, data in replace.items() if name.endswith(end)), None)
            copy.writestr(name, source.read(name) if new is None else new)
    return target


def test_a_torchscript_weight_record_shorter_than_its_tensor_is_refused(tmp_path: Path) -> None:
    """torch.jit.load does not check record sizes (torch.load does): a 7-byte record for a 10-float
    tensor loaded, and the weights were whatever memory followed it (here: 2 bytes for one float)."""
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(_reference()), str(path))
    _same_outputs(path)
    with zipfile.ZipFile(path) as archive:
        record = next(n for n in archive.namelist() if "/data/" in n and not n.endswith(".pkl"))
    short = _rewritten(path, tmp_path / "short.ts", {record: b"xy"})
    with pytest.raises(CheckpointError, match=r"record \S+/data/\d+ holds 2 bytes, but its tensor needs 4 \(1 x FloatStorage\)"):
        load_model(short)


def test_a_torchscript_error_keeps_its_text(tmp_path: Path) -> None:
    """The first line of torch's message was empty for a broken code member: "corrupt TorchScript archive ()"."""
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(_reference()), str(path))
    with zipfile.ZipFile(path) as archive:
        code = next(n for n in archive.namelist() if "/code/" in n and n.endswith(".py"))
    broken = _rewritten(path, tmp_path / "broken.ts", {code: b"garbage"})
    with pytest.raises(CheckpointError, match=r"corrupt TorchScript archive \(RuntimeError: \w.+\)") as info:
        load_model(broken)
    assert "()" not in str(info.value)


def test_torch_export_archive_with_code_in_a_shape_expression_is_refused(tmp_path: Path) -> None:
    """torch's export loader hands each shape expression to sympy.sympify, which is eval: a crafted
    dynamic-batch archive (no pickle in it) ran os.system at load time without --trust-checkpoint."""
    flat = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    program = torch.export.export(flat, (torch.rand(4, 1, 28, 28),), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    good = tmp_path / "good.pt2"
    torch.export.save(program, str(good))
    assert load_model(good).info.format == "torch.export"  # a dynamic batch loads untrusted
    marker = tmp_path / "ran"
    with zipfile.ZipFile(good) as source:
        text = next(source.read(i.filename).decode() for i in source.infolist() if i.filename.endswith("models/model.json"))
        name = re.search(r"Symbol\('(\w+)', positive=True, integer=True\)", text)
        assert name is not None, "torch wrote no dynamic dimension"
        symbol = name.group(0)
        payload = f"({symbol} if __import__('pathlib').Path({str(marker)!r}).touch() is None else {symbol})"
        evil = tmp_path / "evil.pt2"
        writer = torch._C.PyTorchFileWriter(str(evil))
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("models/model.json"):
                data = data.decode().replace(symbol, payload).encode()
            writer.write_record(info.filename.split("/", 1)[1], data, len(data))
        writer.write_end_of_file()
    with pytest.raises(CheckpointError, match="code to evaluate.*--trust-checkpoint"):
        load_model(evil)
    assert not marker.exists()
