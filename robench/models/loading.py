"""Safe checkpoint loading and architecture resolution.

Checkpoints are untrusted. Supported, in order of detection:

- ``.safetensors``: tensors only, needs ``arch``;
- ``.pt2``: a ``torch.export`` program;
- TorchScript archives (``torch.jit.save``);
- ``torch.save`` files read with ``weights_only=True``: a state_dict (or a dict holding one under
  ``state_dict``/``model_state_dict``/``model``/``net``), needs ``arch``.

A pickle that holds Python objects (a whole ``nn.Module``, or worse) is refused unless
``trust_checkpoint=True``: unpickling runs arbitrary code.

Architecture specs: ``<name>`` or ``robench:<name>`` (registry kind ``arch``), ``module:callable``,
``torchvision:<name>``, ``timm:<name>``, ``robustbench:<dataset>/<threat>/<name>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import torch
from torch import nn

from robench._errors import CheckpointError, ConfigError, UnavailableError, first_line
from robench.models.wrapper import ModelHandle, Normalize, PassCounter, PixelModel
from robench.registry import registry
from robench.results import ModelInfo
from robench.threat_model import Preprocessing

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "state")
_STRIP_PREFIXES = ("module.", "_orig_mod.")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def module_sha256(module: nn.Module) -> str:
    """sha256 of a module's class and state (every parameter and buffer: names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def build_arch(spec: str, num_classes: int | None = None) -> nn.Module:
    """Instantiate an architecture from its spec (see the module docstring).

    Raises:
        ConfigError: malformed or unknown spec.
        UnavailableError: the spec needs a package that is not installed.
    """
    scheme, sep, rest = spec.partition(":")
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if not sep or scheme == "robench":
        name = rest if sep else spec
        return registry.get("arch", name)(**kwargs)
    if scheme == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(rest, weights=None, **kwargs)
        except ValueError:
            raise ConfigError(f"unknown torchvision architecture {rest!r} in --arch {spec!r}") from None
    if scheme == "timm":
        try:
            import timm
        except ImportError:
            raise UnavailableError(f"--arch {spec!r} needs the timm package (pip install timm)") from None
        try:
            return timm.create_model(rest, pretrained=False, **kwargs)
        except RuntimeError as exc:
            raise ConfigError(f"timm cannot build {rest!r}: {first_line(exc)}") from None
    if scheme == "robustbench":
        return _robustbench_arch(rest, spec)
    return _callable_arch(scheme, rest, spec)


def _callable_arch(module_name: str, attr: str, spec: str) -> nn.Module:
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise ConfigError(
            f"--arch {spec!r} is not a valid spec; expected NAME, module:callable, torchvision:NAME, "
            "timm:NAME or robustbench:DATASET/THREAT/NAME"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--arch {spec!r}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - importing the user's module runs its code, which can raise anything
        raise ConfigError(f"--arch {spec!r}: importing module {module_name!r} failed: {_raised_at(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"--arch {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
        except Exception as exc:  # noqa: BLE001 - a module-level __getattr__ (or a property) is the user's code too
            raise ConfigError(f"--arch {spec!r}: looking up {attr!r} in module {module_name!r} failed: {_raised_at(exc)}") from None
    try:
        model = obj()
    except Exception as exc:  # noqa: BLE001 - the user's constructor can raise anything
        raise ConfigError(f"--arch {spec!r}: calling {attr}() failed ({type(exc).__name__}: {first_line(exc, 160)})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--arch {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _raised_at(exc: Exception) -> str:
    """``file:line: Type: message`` of an exception raised while a module was imported: for a
    SyntaxError the line that does not parse, else the innermost frame of the traceback."""
    import traceback

    if isinstance(exc, SyntaxError):
        where, message = f"{exc.filename}:{exc.lineno}", exc.msg
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        where, message = (f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"), first_line(exc, 160)
    return f"{where}: {type(exc).__name__}: {message}"


def _pkg_resources_shim() -> None:
    """robustbench 1.1.1 imports ``pkg_resources`` (gone from setuptools >= 81) for one call,
    ``resource_filename``; provide just that when the real module is missing."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.resources
        import types

        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, path: str) -> str:
            return str(importlib.resources.files(package.rpartition(".")[0] or package) / path)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim


def _import_robustbench() -> Any:
    """Import robustbench, which expects a module called ``autoattack`` (pyautoattack ships it
    renamed) and ``pkg_resources`` (REFERENCE.md: both fail out of the box)."""
    _pkg_resources_shim()
    try:
        import pyautoattack

        sys.modules.setdefault("autoattack", pyautoattack)
        for sub in ("autopgd_base", "fab_pt", "square", "autoattack", "other_utils", "state"):
            try:
                sys.modules.setdefault(f"autoattack.{sub}", importlib.import_module(f"pyautoattack.{sub}"))
            except ImportError:
                pass
    except ImportError:
        pass
    try:
        return importlib.import_module("robustbench.model_zoo.models")
    except ImportError as exc:
        raise UnavailableError(f"robustbench architectures need the robustbench package ({exc})") from None


def _robustbench_arch(rest: str, spec: str) -> nn.Module:
    parts = rest.split("/")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"--arch {spec!r}: expected robustbench:DATASET/THREAT/NAME, e.g. robustbench:cifar10/Linf/Standard")
    dataset, threat, name = parts
    zoo = _import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    try:
        entries = zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat)]
    except (ValueError, KeyError):
        raise ConfigError(f"--arch {spec!r}: robustbench has no {dataset}/{threat} models") from None
    if name not in entries:
        import difflib

        close = difflib.get_close_matches(name, list(entries), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"--arch {spec!r}: robustbench has no model {name!r} for {dataset}/{threat}{hint}")
    return entries[name]["model"]()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def _find_state_dict(obj: Any, path: Path, depth: int = 0) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = dict(obj)
        if not all(isinstance(k, str) for k in state):
            raise CheckpointError(f"{path}: a state_dict's keys must be parameter names (strings)")
        # a nested tensor's layout is strided too, but it has no sizes: the shape check raised torch's RuntimeError
        strange = [k for k, v in state.items() if v.layout != torch.strided or v.is_nested or v.is_meta or v.is_quantized]
        if strange:
            raise CheckpointError(f"{path}: {strange[0]!r} is not a dense tensor with data (sparse, nested, meta or quantized)")
    elif isinstance(obj, Mapping) and depth < 4:
        for key in _STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return _find_state_dict(obj[key], path, depth + 1)
        raise CheckpointError(
            f"{path}: no state_dict found; top-level keys are {sorted(map(str, obj))[:8]}, expected tensors "
            f"or one of {list(_STATE_DICT_KEYS)}"
        )
    else:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a state_dict of tensors")
    return strip_wrapper_prefixes(state)


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the key prefixes that wrappers add to every parameter name: ``module.``
    (DataParallel / DistributedDataParallel) and ``_orig_mod.`` (``torch.compile``), in either
    order and nested, as long as every key has the prefix."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _STRIP_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state


def _load_state_dict(net: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    ignored = tuple(getattr(net, "ignored_checkpoint_keys", ()))  # see robench.models.archs.WideResNet
    if ignored:
        state = {k: v for k, v in state.items() if not k.startswith(ignored)}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    # load_state_dict casts silently: complex into real drops the imaginary part, bool into float
    # turns weights into 0/1. Integer buffers (BatchNorm's num_batches_tracked) stay integers.
    mismatched += [
        f"{k} {state[k].dtype} vs {own[k].dtype}"
        for k in own
        if k in state
        and (state[k].is_complex() != own[k].is_complex() or (state[k].dtype == torch.bool) != (own[k].dtype == torch.bool))
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape or dtype mismatches (e.g. {'; '.join(mismatched[:2])})")
    if problems:
        raise CheckpointError(f"{path} does not fit --arch {arch}: {', '.join(problems)}")
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        detail = first_line(exc, 160)
        raise CheckpointError(f"{path} does not load into --arch {arch}: {detail}") from None


class _RefusedPickle(pickle.UnpicklingError):
    """A pickle that only trusted loading may read."""


@contextlib.contextmanager
def _no_code_unpickling() -> Iterator[None]:
    """While ``torch.export.load`` runs: every ``torch.load`` with ``weights_only=True`` and no plain
    ``pickle.load(s)``. torch 2.14 unpickles some archive entries without that guard (sample inputs
    after a failed safe load, weights flagged ``use_pickle``, opaque constants)."""
    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return real_load(*args, **kwargs)
        except pickle.UnpicklingError as exc:
            raise _RefusedPickle(_refusal(exc)) from None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _RefusedPickle("a plain pickle entry")

    import sympy

    real_sympify = sympy.sympify

    def checked_sympify(expression: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(expression, str):
            _check_shape_expression(expression)
        return real_sympify(expression, *args, **kwargs)

    saved = torch.load, pickle.load, pickle.loads, sympy.sympify
    torch.load, pickle.load, pickle.loads, sympy.sympify = weights_only_load, refuse, refuse, checked_sympify  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load, pickle.load, pickle.loads, sympy.sympify = saved  # type: ignore[assignment]


# Names a torch.export archive's shape expressions use: symbols (s0, u12...), numbers and the sympy
# functions torch's deserializer passes to sympify (torch/_export/serde/serialize.py, sympy_functions).
_SYMBOL_NAME = re.compile(r"[a-z]{1,4}[0-9]+\Z")
_SHAPE_FUNCTIONS = frozenset({
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural", "IntTrueDiv", "FloatTrueDiv", "BitwiseFn_bitwise_and",
    "BitwiseFn_bitwise_or", "OpaqueUnaryFn_log2", "Identity", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge",
    "And", "Or", "Not", "Piecewise", "Integer", "Rational", "Float", "oo", "zoo", "nan", "true", "false", "True",
    "False", "ceiling", "floor", "sqrt", "Pow", "Mul", "Add",
    # Symbol('s77', positive=True, integer=True): how torch 2.14 writes a dynamic dimension
    "Symbol", "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero", "nonzero",
})  # fmt: skip
_SHAPE_OPERATORS = frozenset({"+", "-", "*", "/", "//", "%", "**", "(", ")", ",", "<", ">", "<=", ">=", "==", "!=", "&", "|", "~", "="})


def _check_shape_expression(text: str) -> None:
    """torch's export loader evaluates each shape expression of the archive with ``sympy.sympify``,
    which is ``eval``: a crafted ``.pt2`` ran ``os.system`` through one. Only symbols, numbers,
    arithmetic, the shape functions and ``Symbol('s0', integer=True)`` pass; anything else (a keyword,
    an attribute, a builtin, another string) is refused like a pickle."""
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        raise _RefusedPickle(f"a shape expression that does not parse: {text[:80]!r}") from None
    for token in tokens:
        kind, value = token.type, token.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER) or kind == tokenize.NUMBER and "j" not in value.lower():
            continue
        if kind == tokenize.NAME and (_SYMBOL_NAME.match(value) or value in _SHAPE_FUNCTIONS):
            continue
        if kind == tokenize.OP and value in _SHAPE_OPERATORS:
            continue
        if kind == tokenize.STRING and len(value) > 2 and value[0] == value[-1] and value[0] in "'\"" and _SYMBOL_NAME.match(value[1:-1]):
            continue  # a symbol's name
        raise _RefusedPickle(f"a shape expression with {value!r}, which a shape needs not: {text[:80]!r}")


def _refusal(exc: BaseException) -> str:
    """The line of a weights_only refusal that says what was refused (``Trying to load unsupported
    GLOBAL posix.system ...``), not torch's preamble about the changed default."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return ((named or lines or [type(exc).__name__])[0])[:160]


def _looks_pickled(path: Path) -> bool:
    """Whether ``path`` is a zip archive (torch's format) or starts like a pickle (``PROTO``)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep torch's own reports of a bad file (warnings; torch.export logs a traceback at warning
    level) off stderr: robench says what went wrong in one line."""
    logger = logging.getLogger("torch.export")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled


def _torch_load(path: Path, trust: bool) -> tuple[Any, bool]:
    """``torch.load`` with ``weights_only=True``; unpickle code only when trusted."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as exc:
        if not _looks_pickled(path):  # random bytes fail as an "unpickling" error too
            raise CheckpointError(f"{path}: corrupt or not a checkpoint (neither a zip archive nor a pickle stream)") from None
        if not trust:
            first = _refusal(exc)
            raise CheckpointError(
                f"{path} contains pickled Python objects that weights_only loading refuses ({first}); "
                "unpickling can run arbitrary code. Save a state_dict, TorchScript, torch.export or "
                "safetensors file, or pass --trust-checkpoint if you trust its origin"
            ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails anywhere in torch's parser (KeyError, TypeError...)
        detail = first_line(exc, 160)
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {detail})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False), True
    except Exception as exc:  # noqa: BLE001 - trusted unpickling can raise anything
        raise CheckpointError(f"{path}: trusted unpickling failed ({type(exc).__name__}: {first_line(exc, 160)})") from None


def _check_archive(path: Path) -> None:
    """A zip-format checkpoint (``torch.save``, TorchScript, ``torch.export``) whose members fail
    their CRC-32 is damaged: torch reads the tensors without checking, so a flipped bit in a weight
    loaded silently.

    Raises:
        CheckpointError: a member fails its CRC check, or the archive cannot be read.
    """
    if not zipfile.is_zipfile(path):
        return
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.CRC == 0 and member.file_size:  # written without CRCs (torch.serialization.set_crc32_options(False))
                    continue
                with archive.open(member) as handle:  # reading to the end checks the CRC
                    while handle.read(1 << 24):
                        pass
    except zipfile.BadZipFile as exc:
        if member is not None and "CRC" in str(exc):
            raise CheckpointError(
                f"{path}: corrupt checkpoint: archive member {member.filename!r} fails its CRC-32 check (a damaged copy?)"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint archive ({exc})") from None
    except (OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint archive ({type(exc).__name__}: {exc})") from None


class _Inert:
    """What :class:`_StorageLister` builds for every object a pickle names: nothing runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _StorageLister(pickle.Unpickler):
    """Reads a TorchScript pickle without importing or calling anything, only to list the tensor
    storages it refers to: ``(key, storage class name, element count)``."""

    def __init__(self, data: bytes) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.storages: list[tuple[str, str, int]] = []

    def find_class(self, module: str, name: str) -> Any:
        return type(name, (_Inert,), {"qualified": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage":
            self.storages.append((str(pid[2]), getattr(pid[1], "qualified", ""), pid[4]))
        return _Inert()


def _check_torchscript_records(path: Path) -> None:
    """A TorchScript archive whose tensor record is shorter than its pickle says: ``torch.jit.load``
    does not check (``torch.load`` does), it reads past the record and the weights are whatever
    memory follows. Only a crafted file gets here (a damaged copy fails its CRC first).

    Raises:
        CheckpointError: a weight or constant record is shorter than the tensor it holds.
    """
    with zipfile.ZipFile(path) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        for name in sizes:
            prefix, _, leaf = name.rpartition("/")
            if leaf not in ("data.pkl", "constants.pkl") or "/" in prefix:  # the module's weights and constants
                continue
            lister = _StorageLister(archive.read(name))
            try:
                lister.load()
            except Exception:  # noqa: BLE001, S112 - a pickle this lister cannot follow is left to torch's own checks
                continue
            folder = f"{prefix}/{leaf[: -len('.pkl')]}"
            for key, storage, count in lister.storages:
                dtype = getattr(torch, storage.removeprefix("torch."), None) if storage.startswith("torch.") else None
                itemsize = getattr(getattr(dtype, "dtype", None), "itemsize", None)
                record = sizes.get(f"{folder}/{key}")
                if record is None or not isinstance(itemsize, int) or not isinstance(count, int):
                    continue
                if record < count * itemsize:
                    raise CheckpointError(
                        f"{path}: corrupt TorchScript archive: the record {folder}/{key} holds {record} bytes, "
                        f"but its tensor needs {count * itemsize} ({count} x {storage.removeprefix('torch.')})"
                    )


def _load_net(path: Path, arch: str | None, num_classes: int | None, trust: bool) -> tuple[nn.Module, str, bool]:
    """Return ``(module, format, trusted_pickle)``."""
    _check_archive(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
        return _with_arch(strip_wrapper_prefixes(state), path, arch, num_classes, "safetensors"), "safetensors", False
    if suffix == ".pt2":
        _refuse_arch(arch, f"a torch.export checkpoint ({path})")
        try:
            with contextlib.nullcontext() if trust else _no_code_unpickling():
                program = torch.export.load(str(path))
        except _RefusedPickle as exc:
            raise CheckpointError(
                f"{path}: the torch.export archive holds pickled Python objects or code to evaluate ({exc}); loading it "
                "can run arbitrary code. Pass --trust-checkpoint if you trust its origin"
            ) from None
        except Exception as exc:  # noqa: BLE001 - torch.export raises many types on bad files
            raise CheckpointError(f"{path}: not a loadable torch.export program ({type(exc).__name__}: {exc})") from None
        return _ExportedModule(program.module()), "torch.export", trust
    if _is_torchscript(path):
        _refuse_arch(arch, f"a TorchScript checkpoint ({path})")
        _check_torchscript_records(path)
        try:
            return torch.jit.load(str(path), map_location="cpu"), "torchscript", False
        except Exception as exc:  # noqa: BLE001 - a damaged archive fails anywhere in the TorchScript reader
            raise CheckpointError(f"{path}: corrupt TorchScript archive ({type(exc).__name__}: {first_line(exc, 160)})") from None
    obj, trusted = _torch_load(path, trust)
    if isinstance(obj, nn.Module):
        _refuse_arch(arch, f"a pickled whole module ({path})")
        return obj, "pickled-module", trusted
    state = _find_state_dict(obj, path)
    return _with_arch(state, path, arch, num_classes, "state_dict"), "state_dict", trusted


def _refuse_arch(arch: str | None, what: str) -> None:
    """A model that holds its own architecture (TorchScript, torch.export, a whole module) does not
    use --arch: refused, rather than ignored and recorded in the results as if it were used.

    Raises:
        ConfigError: ``arch`` is given.
    """
    if arch is not None:
        raise ConfigError(f"--arch is not used with {what}, which holds its own architecture; drop --arch {arch}")


class _ExportedModule(nn.Module):
    """Holds a ``torch.export`` graph module, whose ``eval()``/``train()`` raise: the train/eval
    behaviour was fixed when it was exported. Its parameters are frozen here and hidden from
    ``.eval()`` recursion."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        for parameter in graph.parameters():
            parameter.requires_grad_(False)
        self._graph = [graph]  # a list: not a registered child

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._graph[0](x)

    def _apply(self, fn: Any, recurse: bool = True) -> _ExportedModule:
        self._graph[0]._apply(fn)
        return super()._apply(fn, recurse)


def _with_arch(state: dict[str, torch.Tensor], path: Path, arch: str | None, num_classes: int | None, fmt: str) -> nn.Module:
    if arch is None:
        raise ConfigError(f"{path} is a {fmt} of weights only; name the architecture with --arch")
    net = build_arch(arch, num_classes)
    _load_state_dict(net, state, path, arch)
    return net


def load_model(
    checkpoint: str | Path | nn.Module,
    *,
    arch: str | None = None,
    preprocessing: Preprocessing | None = None,
    device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
    num_classes: int | None = None,
) -> ModelHandle:
    """Load a model for evaluation in pixel space.

    Args:
        checkpoint: Path of a checkpoint file, or an ``nn.Module`` already in memory.
        arch: Architecture spec, needed for state_dict and safetensors files (refused for the others).
        preprocessing: Mean/std applied inside the wrapper (identity when ``None``).
        device: Where to put the model.
        trust_checkpoint: Allow unpickling Python objects (runs code from the file).
        num_classes: Passed to the architecture builder, when it takes it.

    Returns:
        A :class:`ModelHandle` in eval mode with frozen parameters.

    Raises:
        CheckpointError: missing, corrupt, unsafe or mismatched checkpoint.
        ConfigError: bad architecture spec, or one given for a model that holds its own.
    """
    preprocessing = preprocessing or Preprocessing()
    if isinstance(checkpoint, nn.Module):
        _refuse_arch(arch, f"a model given in memory ({type(checkpoint).__name__})")
        net, fmt, trusted, digest, source = checkpoint, "module", False, None, type(checkpoint).__name__
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else f"{path} is not a file")
        with _quiet():
            net, fmt, trusted = _load_net(path, arch, num_classes, trust_checkpoint)
        digest, source = file_sha256(path), str(path)
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    counter = PassCounter()
    module = PixelModel(net, Normalize(preprocessing.mean, preprocessing.std), counter)
    device = torch.device(device)
    module = module.to(device).eval()
    info = ModelInfo(
        source=source,
        format=fmt,
        sha256=digest,
        arch=arch,
        num_classes=num_classes,
        num_parameters=sum(p.numel() for p in net.parameters()),
        trusted_pickle=bool(trusted),
    )
    return ModelHandle(module=module, info=info, device=device, counter=counter)
