"""Orchestration: threat model -> model + data -> evaluations -> results.json.

The runner owns all I/O. It writes ``results.json`` when the run starts, after every evaluation and
at the end; an error or an interrupt leaves a valid file with status ``error`` and every finished
evaluation in it.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench._errors import ConfigError, ModelError, RobenchError, first_line, message
from robench._numerics import tf32_enabled
from robench.context import EvalContext, derive_seed, seeded_global_rngs
from robench.data import load_dataset
from robench.journal import Journal
from robench.models import load_model, module_sha256
from robench.models.wrapper import PixelModel
from robench.registry import registry
from robench.results import DIRTY_SUFFIX, Environment, EvaluationResult, Numerics, Results, load_results
from robench.threat_model import (
    SECTION_KIND,
    SECTION_ORDER,
    ThreatModel,
    ThreatModelError,
    _param_errors,
    computation_sha256,
    load_threat_model,
)

_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pydantic", "pyautoattack", "foolbox", "timm", "robustbench",
             "mlxtend", "imagecorruptions", "safetensors", "PyYAML", "Pillow")  # fmt: skip
"""Distributions whose versions a run records (by distribution name: PyYAML is ``yaml``, Pillow ``PIL``): those
that compute its numbers, read its data (mlxtend's embedded MNIST, imagecorruptions' corruptions, Pillow's
decoding and resizing) or its inputs (safetensors checkpoints, YAML threat models)."""
_DEFAULT_BATCH = {"cpu": 128, "cuda": 512}


def robench_version() -> str:
    """Installed robench version."""
    try:
        return metadata.version("robench")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def git_revision() -> str | None:
    """The git commit robench runs from, with ``+dirty`` (:data:`DIRTY_SUFFIX`) for local changes, when it is a checkout."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        revision = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,  # a failed status printed nothing: that is not a clean checkout
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + (DIRTY_SUFFIX if dirty else "")


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numerics(device: torch.device) -> Numerics:
    """The torch settings of this process that change the numbers (:class:`Numerics`); the CUDA ones on CUDA only."""
    try:
        matmul_precision: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and per-backend settings mixed: torch refuses to answer
        matmul_precision = None
    record = Numerics(deterministic_algorithms=torch.are_deterministic_algorithms_enabled(), float32_matmul_precision=matmul_precision)
    if device.type == "cuda":
        record = record.model_copy(update={
            "cuda_matmul_allow_tf32": tf32_enabled("matmul"), "cudnn_allow_tf32": tf32_enabled("conv"),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark), "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        })  # fmt: skip
    return record


def environment(device: torch.device) -> Environment:
    """Versions, git revision and hardware of this run."""
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return Environment(
        robench_version=robench_version(),
        python=platform.python_version(),
        packages=packages,
        git_revision=git_revision(),
        hostname=socket.gethostname(),
        platform=platform.platform(),
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        device=str(device),
        device_name=device_name,
        numerics=numerics(device),
    )


def resolve_device(device: str | None) -> torch.device:
    """``cuda`` when available unless told otherwise.

    Raises:
        ConfigError: CUDA asked for but not available (or no device of that index), or an unknown
            device string.
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; expected cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} asked for, but CUDA is not available on this machine")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= (count := torch.cuda.device_count()):
        # cuda:7 on a one-GPU machine failed at the first tensor moved there, after loading
        raise ConfigError(f"--device {device} asked for, but this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}; expected cpu or cuda")
    return resolved


def check_out_dir(out: Path) -> None:
    """Refuse an output folder that cannot be one, before any work is done for it.

    Raises:
        ConfigError: ``out`` is a file, or lies under one; or it holds a folder (or a FIFO...) where the
            run writes one of its files (:func:`_output_names`): removing the earlier run's outputs
            raised IsADirectoryError, an internal error, once the run had started.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder for results.json, report.html and the journal")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {out}: {parent} is a file, not a folder")
    for name in _output_names() if out.is_dir() else ():
        path = out / name
        if path.exists() and not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise ConfigError(f"--out {out}: {path} is {what}, where the run writes its {name}")


def process_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process under ``torchrun`` (``(0, 1)`` otherwise)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _init_distributed(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """Join the process group ``torchrun`` set up: gloo on CPU, NCCL on CUDA (one GPU per rank).

    Returns:
        ``(rank, world_size, device, created)``; ``created`` tells whether this call initialised it.
    """
    _, world = process_rank()  # the rank is the process group's (below)
    if world <= 1:
        return 0, 1, device, False
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), device, created


MAX_SEED = 2**63
"""Seeds are 63-bit (torch generators take 64-bit seeds; robench derives its streams from them)."""


def _plan(threat: ThreatModel, only: list[str] | None) -> list[tuple[str, str, str, Any]]:
    """``(section, key, name, spec)`` for each evaluation to run, in order (the sections' order;
    within attacks the declared order, with ``gradient_masking`` entries after the others)."""
    sections = threat.evaluations.sections()
    if only is not None:
        unknown = [s for s in only if s not in SECTION_ORDER]
        if not only or unknown:
            raise ConfigError(f"--only: {f'unknown sections {unknown}' if only else 'no section named'}; expected {', '.join(SECTION_ORDER)}")
        selected = [s for s in sections if s in only]
        if not selected:  # names the threat model does not declare are skipped, but one must be declared
            raise ConfigError(f"--only {','.join(only)}: the threat model declares none of these sections (it declares {', '.join(sections)})")
        sections = selected
    plan: list[tuple[str, str, str, Any]] = []
    for section in sections:
        value = getattr(threat.evaluations, section)
        if isinstance(value, tuple):
            if section == "attacks":
                # the masking checks compare the attacks run before them with their own PGD: declared
                # first, they had nothing to compare (a model scaling its logits by 1e4 passed them
                # while AutoAttack found 0% robust)
                value = tuple(sorted(value, key=lambda s: s.name == "gradient_masking"))
            plan += [(section, f"{section}/{s.key}", s.name, s) for s in value]
        else:
            plan.append((section, section, section, value if not isinstance(value, bool) else None))
    return plan


def _preflight(plan: list[tuple[str, str, str, Any]], model: Any, data: Any, threat: ThreatModel, ctx: EvalContext) -> None:
    """Each planned attack's and certifier's optional ``preflight(model, data, threat, spec, params,
    ctx)``, before any section runs: the checks that need the model or the data (an unsupported
    layer, a randomized model a method refuses, too few classes) fail the run at its start, not
    after the sections before them (a CROWN run on a max-pooling CNN failed after 7 minutes of
    attacks, corruptions and smoothing)."""
    for section, key, name, spec in plan:
        kind = SECTION_KIND.get(section)
        check = getattr(registry.get(kind, name), "preflight", None) if kind is not None else None
        if check is not None:
            with seeded_global_rngs(derive_seed(ctx.seed, "preflight", key), ctx.device):  # as in every batch
                check(model, data, threat, spec, threat.resolved_params(section, spec), ctx)


def _declared(spec: Any) -> dict[str, Any]:
    if spec is None:
        return {}
    return spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)


def _drop_earlier_outputs(out: Path) -> None:
    """A fresh run into a folder of an earlier run removes that run's results, report and exports
    (the CLI writes the latter two after a run) once it starts: its data and model loaded, the plan
    checked against them (preflight), its journal open. A run that fails before (a typo in --arch
    or --checkpoint) leaves the earlier run's files as they were; one that fails after leaves its
    own results.json with status error, not the earlier "status: success" files."""
    for name in _output_names():
        (out / name).unlink(missing_ok=True)


def _output_names() -> tuple[str, ...]:
    """The files a run leaves in its ``--out`` folder: results.json, and the report and exports the CLI writes."""
    from robench.report.exports import CSV_NAME, MARKDOWN_NAME

    return ("results.json", "report.html", CSV_NAME, MARKDOWN_NAME)


def _journal_path(out: Path, rank: int) -> Path:
    """The journal rank ``rank`` writes in ``out``."""
    return out / ("journal.bin" if rank == 0 else f"journal.rank{rank}.bin")


def _journals(out: Path) -> dict[int, Path]:
    """The journals in ``out`` by the rank that wrote them, in rank order: this run's ranks', and
    those of ranks an earlier run of another process count had."""
    found = {0: _journal_path(out, 0)} if _journal_path(out, 0).exists() else {}
    for path in out.glob("journal.rank*.bin"):
        rank = path.name.removeprefix("journal.rank").removesuffix(".bin")
        if rank.isascii() and rank.isdigit() and _journal_path(out, int(rank)) == path:
            found[int(rank)] = path
    return dict(sorted(found.items()))


def _drop_stale_journals(out: Path, world: int) -> None:
    """A fresh run removes the journals of ranks it does not have (an earlier run with more
    processes): a later ``--resume`` reads every journal in the folder and would refuse them (they
    are another run's). A resume keeps them: its ranks take the batches they hold."""
    for rank, path in _journals(out).items():
        if rank >= world:
            path.unlink(missing_ok=True)


def _finished_before(path: Path, results: Results) -> dict[str, EvaluationResult]:
    """The finished evaluations in the results file a resumed run finds, when it is of the same run
    (model, threat model, data, seed): they stay in ``results.json`` until the run re-produces
    them from its journal, so an interrupted resume loses nothing that had finished."""
    if not path.is_file():
        return {}
    try:
        previous = load_results(path)
    except ConfigError:
        return {}
    # the file holds no weights hash for a module handed over in memory: nothing to match it by
    same = previous.model.sha256 is not None and _run_identity(previous, previous.model.sha256) == _run_identity(results, results.model.sha256)
    return {e.key: e for e in previous.evaluations if e.status == "success"} if same else {}


def _run_identity(results: Results, checkpoint_sha256: str | None) -> dict[str, Any]:
    """What of a run its numbers depend on, read from its results: the journal's identity
    (:class:`robench.journal.Journal`), and what a resume whose journal is gone compares with the
    results file it finds (:func:`_finished_before`)."""
    env = results.environment
    return {
        # a module handed over in memory has no file to hash: its class and weights stand for it
        "checkpoint_sha256": checkpoint_sha256,
        "arch": results.options.get("arch"),
        "device": torch.device(env.device).type,
        "torch_threads": env.torch_threads,  # CPU reductions (and so the numbers) depend on it
        # TF32, deterministic kernels, cuDNN autotuning: a resumed batch must round as the journalled ones did
        "numerics": None if env.numerics is None else env.numerics.model_dump(mode="json"),
        # all but its description and claims (computation_sha256): free text changes no number
        "threat_model_computation_sha256": computation_sha256(results.threat_model),
        "dataset_manifest_sha256": results.dataset.manifest_sha256,
        "n_examples": results.dataset.n_examples,
        "seed": results.seed,
        "batch_size": results.options.get("batch_size"),
        "randomized": results.model.randomized,  # EOT and pass means, or single passes
        "robench_version": env.robench_version,
        "git_revision": env.git_revision,
    }


def _with_kept(current: list[EvaluationResult], kept: dict[str, EvaluationResult], plan: list[tuple[str, str, str, Any]]) -> list[EvaluationResult]:
    """The evaluations to write, in plan order: this run's finished ones, else the earlier run's
    finished ones, else this run's unfinished ones."""
    done = {e.key: e for e in current}
    out = []
    for _, key, _, _ in plan:
        evaluation = done.get(key)
        if evaluation is not None and evaluation.status == "success":
            out.append(evaluation)
        elif key in kept:
            out.append(kept[key])
        elif evaluation is not None:
            out.append(evaluation)
    return out


def evaluate(
    model: str | Path | nn.Module,
    threat_model: str | Path | ThreatModel,
    *,
    arch: str | None = None,
    out_dir: str | Path | None = None,
    n_examples: int | None = None,
    only: list[str] | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    resume: bool = False,
    trust_checkpoint: bool = False,
    data_root: str | Path | None = None,
    data_home: str | Path | None = None,
    progress: bool = True,
    randomized: bool = False,
    model_provenance: dict[str, Any] | None = None,
) -> Results:
    """Evaluate a model under a declared threat model.

    Args:
        model: Checkpoint path or an ``nn.Module`` taking [0,1] pixels (before the threat model's
            normalisation, which robench applies).
        threat_model: A :class:`ThreatModel`, a YAML path or a shipped name.
        arch: Architecture spec for weights-only checkpoints.
        out_dir: Where ``results.json`` and the journal go (``None``: nothing is written).
        n_examples: Overrides ``dataset.n_examples``.
        only: Run only these sections.
        device: ``cpu``, ``cuda``, ``cuda:N`` (default: CUDA when available).
        batch_size: Examples per batch (default 512 on CUDA, 128 on CPU).
        seed: Run seed; all randomness derives from it.
        resume: Continue from the journals in ``out_dir`` (every rank's, of any earlier process
            count: finished batches are taken from whichever holds them).
        trust_checkpoint: Allow unpickling code from the checkpoint.
        data_root: Folder of the dataset's files (overrides the data home).
        data_home: Folder holding datasets by their manifest's directory name.
        progress: Show progress bars.
        randomized: Treat the model as randomized (EOT attacks, pass-mean accuracies) even if the
            probe's repeated passes agreed: for randomness that shows only on real images or on
            rare calls (docs/randomized_models.md). A model the probe finds random is always so.
        model_provenance: Where the checkpoint came from, recorded as ``model.provenance``, for a
            model robench trained itself (the demo's: :func:`robench.demo.demo_checkpoint`); JSON
            values. ``None`` (a user's checkpoint): nothing is claimed.

    Returns:
        The results; status ``success``.

    Raises:
        RobenchError: bad input. When ``out_dir`` is given and the run had started, ``results.json``
            there has status ``error`` and keeps every finished evaluation.
    """
    threat = threat_model if isinstance(threat_model, ThreatModel) else load_threat_model(threat_model)
    errors = _param_errors(threat)
    if errors:
        raise ThreatModelError(threat.name, errors)
    declared = threat
    if n_examples is not None:
        if n_examples <= 0:
            raise ConfigError(f"--n-examples must be > 0, got {n_examples}")
        threat = threat.model_copy(update={"dataset": threat.dataset.model_copy(update={"n_examples": n_examples})})
    plan = _plan(threat, only)
    for section, _, _, _ in plan:
        registry.entry("evaluation", section)
    if batch_size is not None and batch_size <= 0:
        raise ConfigError(f"--batch-size must be > 0, got {batch_size}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise ConfigError(f"--seed must be an integer in [0, 2**63), got {seed!r}")
    torch_device = resolve_device(device)
    rank, world, torch_device, created_group = _init_distributed(torch_device)
    try:
        return _evaluate(
            threat, declared, plan, model, arch=arch, out_dir=out_dir,
            n_examples=n_examples, only=only, torch_device=torch_device, batch_size=batch_size, seed=seed, resume=resume,
            trust_checkpoint=trust_checkpoint, data_root=data_root, data_home=data_home, progress=progress,
            rank=rank, world=world, randomized=randomized, model_provenance=model_provenance,
        )
    finally:
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _as_model_error(exc: BaseException, key: str) -> BaseException:
    """An exception raised inside the model, in its forward pass (eager or compiled) or in the backward
    pass through it, as the :class:`ModelError` it is (bad input: one line and exit 2); any other
    exception unchanged."""
    if isinstance(exc, (RobenchError, KeyboardInterrupt, SystemExit)):  # GeneratorExit and the like from the model count
        return exc
    forward, backward = PixelModel.forward.__code__, torch.autograd.graph._engine_run_backward.__code__
    frame = exc.__traceback__
    while frame is not None:
        code = frame.tb_frame.f_code
        # torch.compile runs a rewritten copy of forward: same file, name and first line, other code object
        # (PixelModel.compiled runs the compiled network from its own inner forward)
        if code is forward or (code.co_filename, code.co_name, code.co_firstlineno) == (
            forward.co_filename, forward.co_name, forward.co_firstlineno
        ) or (code.co_filename == forward.co_filename and code.co_qualname == "PixelModel.compiled.<locals>.forward"):
            where = ""
            break
        if code is backward:
            where = " in a backward pass"
            break
        frame = frame.tb_next
    else:
        return exc
    message = first_line(exc)
    return ModelError(f"the model failed{where} during {key}: {type(exc).__name__}: {message}")


def _evaluate(
    threat: ThreatModel,
    declared: ThreatModel,
    plan: list[tuple[str, str, str, Any]],
    model: str | Path | nn.Module,
    *,
    arch: str | None,
    out_dir: str | Path | None,
    n_examples: int | None,
    only: list[str] | None,
    torch_device: torch.device,
    batch_size: int | None,
    seed: int,
    resume: bool,
    trust_checkpoint: bool,
    data_root: str | Path | None,
    data_home: str | Path | None,
    progress: bool,
    rank: int,
    world: int,
    randomized: bool = False,
    model_provenance: dict[str, Any] | None = None,
) -> Results:
    """:func:`evaluate` after argument checks, in one process of ``world``."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        check_out_dir(out)
    data, data_info = load_dataset(threat.dataset, root=data_root, data_home=data_home)
    problem = threat.adversary.box_error(data.input_shape) if threat.adversary is not None else None
    if problem is not None:  # the manifest may not say the inputs' shape: validation could not tell
        raise ThreatModelError(threat.name, [f"adversary.eps: {problem}"])
    channels, given = data.input_shape[0], len(threat.dataset.preprocessing.mean)
    if given not in (1, channels) and not (given == 3 and channels == 1):  # grayscale to a 3-channel stem broadcasts
        raise ConfigError(
            f"dataset.preprocessing: mean and std have {given} values, but the data have {channels} channel(s) "
            "(give one value per channel, or one for all)"
        )
    handle = load_model(
        model,
        arch=arch,
        preprocessing=threat.dataset.preprocessing,
        device=torch_device,
        trust_checkpoint=trust_checkpoint,
        num_classes=data.num_classes,
    )
    probe_gen = torch.Generator().manual_seed(seed)
    with seeded_global_rngs(derive_seed(seed, "probe"), torch_device):  # a model's own randomness, as in every batch
        handle.probe(data.input_shape, data.num_classes, probe_gen)
    if model_provenance is not None:
        handle.info = handle.info.model_copy(update={"provenance": dict(model_provenance)})
    if randomized and not handle.info.randomized:  # declared: randomness the probe's passes did not show
        handle.info = handle.info.model_copy(update={"randomized": True, "randomized_declared": True})
    batch = batch_size or _DEFAULT_BATCH[torch_device.type]
    results = Results(
        seed=seed,
        threat_model=declared.model_dump(mode="json"),
        threat_model_sha256=declared.sha256,
        model=handle.info,
        dataset=data_info,
        environment=environment(torch_device),
        options={
            "n_examples": n_examples, "only": only, "batch_size": batch, "resume": resume, "arch": arch, "world_size": world,
            "randomized": randomized,
        },
    )  # fmt: skip
    ctx = EvalContext(
        device=torch_device, seed=seed, batch_size=batch, progress=progress, rank=rank, world_size=world,
        data_home=None if data_home is None else str(data_home),
    )
    if handle.info.randomized:
        ctx.shared["randomized"] = True
    _preflight(plan, handle, data, threat, ctx)  # the run starts (and writes) only once the plan fits the model and data
    if out is not None:
        identity = _run_identity(results, handle.info.sha256 or module_sha256(handle.module))
        own = _journal_path(out, rank)
        # a resume takes finished batches from every journal of the run, whichever process count wrote
        # them (a batch's numbers do not depend on the rank that computed it)
        siblings = [path for path in _journals(out).values() if path != own] if resume else []
        ctx.journal = Journal(own, identity, resume, siblings)
        if not resume and rank == 0:
            _drop_stale_journals(out, world)
            _drop_earlier_outputs(out)
    writer = out if rank == 0 else None  # one process writes results.json
    kept = _finished_before(writer / "results.json", results) if writer is not None and resume else {}

    def save() -> None:
        if writer is not None:
            shown = results.model_copy(update={"evaluations": _with_kept(results.evaluations, kept, plan)}) if kept else results
            shown.save(writer / "results.json")

    save()
    try:
        for section, key, name, spec in plan:
            evaluation = EvaluationResult(key=key, section=section, name=name, declared=_declared(spec))
            results.evaluations.append(evaluation)
            ctx.begin(key)
            try:
                produced = registry.get("evaluation", section)(handle, data, threat, spec, ctx)
            except BaseException as exc:  # robench's errors, an interrupt, or anything else (torch, a bug)
                failure = _as_model_error(exc, key)
                evaluation.status, evaluation.error = "error", message(failure)
                if failure is not exc:
                    raise failure from exc
                raise
            evaluation.status = "success"
            evaluation.cost = ctx.finish()
            evaluation.records = produced.records
            evaluation.checks = produced.checks
            evaluation.warnings = produced.warnings
            evaluation.artifacts = produced.artifacts
            evaluation.outcomes = produced.outcomes
            evaluation.resolved = produced.resolved
            save()
    except BaseException as exc:  # finished evaluations stay in results.json, whatever stopped the run
        results.status = "error"
        results.error = message(exc) if isinstance(exc, (RobenchError, KeyboardInterrupt)) else f"{type(exc).__name__}: {message(exc)}"
        results.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        save()
        if writer is not None and isinstance(exc, KeyboardInterrupt):
            exc.results_path = writer / "results.json"  # type: ignore[attr-defined]  # what the CLI tells the user
        raise
    finally:
        if ctx.journal is not None:
            ctx.journal.close()
    results.status = "success"
    results.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    save()
    return results


