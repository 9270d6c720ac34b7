"""AutoAttack (Croce & Hein 2020) through ``pyautoattack``, the official code, with resume per attack.

robench runs AutoAttack's attacks one after the other exactly as ``AutoAttack.run_standard_evaluation``
does: the clean-correct examples are attacked by the first attack, the examples still robust by the
next, each in batches of ``batch_size`` over the still-robust examples in dataset order, every call
reseeded with the run seed. Each attack is a stage of :meth:`~robench.context.EvalContext.map_batches`,
so a resumed run skips finished attacks and batches (pyautoattack's own ``state_path`` restore is
broken in 0.2.0). Success is decided by robench with the model on the projected examples. On the same
model, data, seed and batch size the robust accuracy of a deterministic model equals pyautoattack's.
In fast mode (bf16 queries) an example the bf16 model calls broken while the fp32 model does not is
attacked again in fp32.

A randomized model (version ``rand``, EOT) is scored differently from pyautoattack, whose number
counts an example broken as soon as one stochastic pass misclassifies it, during its attack or at
the returned point. robench's headline is the expected per-pass accuracy at the adversary's best
point (:mod:`robench.attacks.eot`): every APGD attack runs on every example and returns its
highest-loss point (``perturb(best_loss=True)``), the point (clean or adversarial) with the lowest
pass-mean accuracy is chosen, and its accuracy is measured on fresh passes. The
``robust_accuracy_after`` records then count one pass at each attack's returned point.
pyautoattack's "any pass wrong" number is lower than both (a defence right 80% of the time at every
point of the ball would score near 0); a run warning says so.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from robench._errors import ConfigError
from robench.attacks._optional import capture_log, isolated_rng, library_seed, require
from robench.attacks._records import add_standard_records
from robench.attacks._speed import Mode, StepModel, precision_label
from robench.attacks.base import UNFOOLED_AT_CLEAN
from robench.attacks.eot import STOCHASTIC_PASSES, PassMeans, pass_mean_correct
from robench.attacks.norms import get_norm
from robench.context import EvalContext, EvaluationOutput
from robench.data.base import Dataset, SubsetDataset
from robench.evaluations.clean import softmax_outputs, wants_log_probs
from robench.models.wrapper import ModelHandle
from robench.registry import register
from robench.results import Check, ConditionValue, MetricRecord
from robench.threat_model import Adversary, EvaluationSpec, Schema, ThreatModel

AttackName = Literal["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]

# Attack lists of the versions (pyautoattack 0.2.0, autoattack.py `_set_version`).
VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
_LOG_LIMIT = 2000


class AutoAttackParams(Schema):
    """Parameters of the ``autoattack`` entry; ``None`` keeps pyautoattack's value for the version."""

    version: Literal["standard", "plus", "rand", "custom"] = "standard"
    attacks: tuple[AttackName, ...] | None = Field(default=None, description="attacks in order (version custom)")
    n_iter: int | None = Field(default=None, gt=0, le=100_000, description="APGD and FAB iterations (default 100)")
    n_restarts: int | None = Field(default=None, gt=0, le=1000, description="restarts of APGD-CE/DLR and FAB")
    n_target_classes: int | None = Field(default=None, gt=0, description="APGD-T and FAB-T target classes (default pyautoattack's, at most K-1: 9 for both, but 5 for APGD-T under L1)")
    square_queries: int | None = Field(default=None, gt=0, le=10_000_000, description="Square queries (default 5000)")
    eot_iter: int | None = Field(default=None, gt=0, le=1000, description="APGD EOT iterations (rand: 20)")
    batch_size: int | None = Field(default=None, gt=0, description="default: the run's batch size")
    mode: Mode = Field(
        default="exact",
        description="fast: the attacks query a bf16-autocast, channels_last model; success is re-checked in fp32",
    )
    compile: bool = Field(default=False, description="torch.compile the model the attacks query")

    @model_validator(mode="after")
    def _check(self) -> AutoAttackParams:
        if self.version == "custom" and not self.attacks:
            raise ValueError("version 'custom' needs a non-empty `attacks` list")
        if self.version != "custom" and self.attacks is not None:
            raise ValueError(f"`attacks` is only allowed with version 'custom', not {self.version!r}")
        if self.attacks is not None and len(set(self.attacks)) != len(self.attacks):
            raise ValueError(f"duplicate attacks in {list(self.attacks)}")
        return self

    def attack_list(self) -> tuple[str, ...]:
        """The attacks to run, in order."""
        if self.version != "custom":
            return VERSIONS[self.version]
        assert self.attacks is not None  # _check: custom has a list
        return tuple(self.attacks)


# The DLR losses read the third (untargeted) and fourth (targeted) largest logit.
_DLR_CLASSES = {"apgd-dlr": 3, "apgd-t": 4}


def _check_classes(order: tuple[str, ...], num_classes: int) -> None:
    """pyautoattack runs APGD-T on a 3-class model anyway and fails with an IndexError."""
    short = [name for name in order if num_classes < _DLR_CLASSES.get(name, 0)]
    if short:
        usable = [name for name in order if name not in short]
        raise ConfigError(
            f"autoattack: {', '.join(short)} need at least {max(_DLR_CLASSES[n] for n in short)} classes (DLR loss), the model "
            f"has {num_classes}: declare version: custom with attacks: {usable or ['apgd-ce', 'square']}"
        )


class _QueriedModel(torch.nn.Module):
    """An ``nn.Module`` face for a :class:`StepModel` (pyautoattack calls modules)."""

    def __init__(self, stepper: StepModel) -> None:
        super().__init__()
        self._stepper = stepper
        self.inner = stepper.model  # registered: .eval(), .parameters() reach the real model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._stepper(x)


def _set_iterations(apgd: Any, n_iter: int) -> None:
    # Derived schedule lengths as APGDAttack.__init__ computes them (pyautoattack 0.2.0, autopgd_base.py).
    # With use_largereps (the L1 version) perturb() takes its schedule from n_iter_orig instead.
    apgd.n_iter = n_iter
    apgd.n_iter_orig = n_iter
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def build_autoattack(
    module: torch.nn.Module, params: AutoAttackParams, *, norm: str, eps: float, num_classes: int, seed: int, device: Any
) -> Any:
    """A configured ``pyautoattack.AutoAttack`` (targets capped at ``num_classes - 1``).

    Raises:
        UnavailableError: pyautoattack is not installed.
    """
    pyautoattack = require("pyautoattack")
    version = params.version
    adversary = pyautoattack.AutoAttack(
        module,
        attacks=list(params.attack_list()) if version == "custom" else None,
        device=device,
        eps=eps,
        norm=norm,
        seed=seed,
        version=version,
    )
    targets = params.n_target_classes or adversary.apgd_targeted.n_target_classes
    adversary.apgd_targeted.n_target_classes = min(targets, num_classes - 1)
    adversary.fab.n_target_classes = min(params.n_target_classes or adversary.fab.n_target_classes, num_classes - 1)
    if params.n_iter is not None:
        _set_iterations(adversary.apgd, params.n_iter)
        _set_iterations(adversary.apgd_targeted, params.n_iter)
        adversary.fab.n_iter = params.n_iter
    if params.n_restarts is not None:
        adversary.apgd.n_restarts = params.n_restarts
        adversary.fab.n_restarts = params.n_restarts
    if params.square_queries is not None:
        adversary.square.n_queries = params.square_queries
    if params.eot_iter is not None:
        adversary.apgd.eot_iter = params.eot_iter
        adversary.apgd_targeted.eot_iter = params.eot_iter
    return adversary


def perturb(
    adversary: Any, name: str, x: torch.Tensor, y: torch.Tensor, order: tuple[str, ...], seed: int, best_loss: bool = False
) -> torch.Tensor:
    """Run AutoAttack's attack ``name`` on ``(x, y)`` as ``run_standard_evaluation`` would.

    ``best_loss`` (randomized models, APGD): the highest-loss point of every example, as APGD's
    ``perturb(best_loss=True)`` returns it. Otherwise APGD attacks only the examples one pass
    classifies right and returns ``x`` for every example no single pass saw fooled, which for a
    randomized model leaves the adversary at the clean input by chance."""
    if name in ("apgd-ce", "apgd-dlr"):
        adversary.apgd.loss = name.removeprefix("apgd-")
        adversary.apgd.seed = seed
        if best_loss:
            torch.random.manual_seed(seed)  # as perturb does on its other branch (the caller isolates the RNG)
            torch.cuda.random.manual_seed(seed)
            return adversary.apgd.perturb(x, y, best_loss=True)
        return adversary.apgd.perturb(x, y)
    if name == "apgd-t":
        adversary.apgd_targeted.seed = seed
        return adversary.apgd_targeted.perturb(x, y)
    if name in ("fab", "fab-t"):
        # run_standard_evaluation sets FAB to one restart for fab-t and never back: a later
        # untargeted fab inherits it. Derived from the order so that resume cannot change it.
        if name == "fab-t" or "fab-t" in order[: order.index(name)]:
            adversary.fab.n_restarts = 1
        adversary.fab.targeted = name == "fab-t"
        adversary.fab.seed = seed
        return adversary.fab.perturb(x, y)
    adversary.square.seed = seed
    return adversary.square.perturb(x, y)


def _own_checks(adversary: Any, model: ModelHandle, data: Dataset, order: tuple[str, ...], batch_size: int, rand: bool) -> list[str]:
    """AutoAttack's input checks (checks.py) on the first batch; notes on the ones skipped."""
    checks = require("pyautoattack.checks")
    notes = []
    x, y = data.load(slice(0, min(batch_size, len(data))))
    x, y = x.to(model.device), y.to(model.device)
    logger = adversary.logger
    if not rand:
        checks.check_randomized(adversary.get_logits, x, y, bs=batch_size, logger=logger)
    n_classes = checks.check_range_output(adversary.get_logits, x, logger=logger)
    if sys.gettrace() is None:
        checks.check_dynamic(adversary.model, x, False, logger=logger)
    else:
        notes.append("check_dynamic skipped: a tracer (debugger or coverage) is active and the check would remove it")
    checks.check_n_classes(
        n_classes, list(order), adversary.apgd_targeted.n_target_classes, adversary.fab.n_target_classes, logger=logger
    )
    return notes


@register("attack", "autoattack", params=AutoAttackParams, tags=("white-box", "ensemble"))
class AutoAttackEvaluation:
    """AutoAttack via pyautoattack (standard/plus/rand/custom), breakdown per attack, resumable."""

    @staticmethod
    def check_threat(params: AutoAttackParams, adversary: Adversary | None) -> None:
        """Raises :class:`~robench.ConfigError` for a targeted goal or bounds other than [0, 1]."""
        if adversary is None:
            return
        if adversary.goal != "untargeted":
            raise ConfigError("autoattack measures untargeted robustness; the threat model's goal is 'targeted'")
        if adversary.bounds != (0.0, 1.0):
            raise ConfigError(f"autoattack works in the bounds [0, 1], the threat model declares {list(adversary.bounds)}")

    @staticmethod
    def preflight(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: AutoAttackParams, ctx: EvalContext
    ) -> None:
        """Before any section runs: the DLR attacks need enough classes."""
        _check_classes(params.attack_list(), data.num_classes)

    @staticmethod
    def evaluate(
        model: ModelHandle, data: Dataset, threat: ThreatModel, spec: EvaluationSpec, params: AutoAttackParams, ctx: EvalContext
    ) -> EvaluationOutput:
        """Run the attacks in order on the still-robust examples; records after every attack."""
        adversary_spec = threat.adversary
        assert adversary_spec is not None  # guaranteed by ThreatModel validation
        AutoAttackEvaluation.check_threat(params, adversary_spec)
        norm = get_norm(adversary_spec.norm)
        eps = adversary_spec.eps
        order = params.attack_list()
        batch_size = params.batch_size or ctx.batch_size
        num_classes = data.num_classes
        _check_classes(order, num_classes)
        key = f"attacks/{spec.key}"
        condition: dict[str, ConditionValue] = {"attack": spec.key, "norm": norm.name, "eps": eps, "goal": "untargeted", "kind": "white-box"}
        output = EvaluationOutput(resolved={**params.model_dump(mode="json"), "attacks": list(order), "batch_size": batch_size, "seed": ctx.seed})
        if ctx.shared.get("randomized") and params.version != "rand":
            output.warnings.append("the model is randomized: use AutoAttack version 'rand' (EOT) for a reliable evaluation")
        # The model the attacks query: exact (the fp32 model itself, as pyautoattack alone) or fast
        # (bf16 autocast + channels_last, optionally compiled). Success is always re-checked with
        # the fp32 model below, so only examples that fool it count.
        stepper = StepModel(model.module, params.mode, params.compile)
        module = model.module if params.mode == "exact" and not params.compile else _QueriedModel(stepper)
        ctx.cost.precision = precision_label(params.mode, ctx.device)
        with capture_log("auto-attack") as log, isolated_rng(model.device), stepper.prepared():
            adversary = build_autoattack(
                module, params, norm=norm.name, eps=eps, num_classes=num_classes, seed=ctx.seed, device=model.device
            )
            # Fast mode: pyautoattack leaves alone every point its (bf16) model already calls broken, the
            # clean input included. Where the fp32 model disagrees, the point is attacked again by the
            # same attack querying the fp32 model, so that no example counts robust unattacked.
            exact = (
                build_autoattack(model.module, params, norm=norm.name, eps=eps, num_classes=num_classes, seed=ctx.seed, device=model.device)
                if params.mode == "fast" else None
            )  # fmt: skip
            output.resolved["n_target_classes"] = adversary.apgd_targeted.n_target_classes  # APGD-T's; FAB-T's is in the procedure
            output.resolved.update(effective_budget(adversary))  # pyautoattack's defaults, as they ran (None: "its default")
            checks_start = model.counter.snapshot()
            notes = _own_checks(adversary, model, data, order, batch_size, params.version == "rand")
            # pyautoattack's input checks run outside map_batches: their passes are part of the cost
            # (their time too, which EvalContext.finish counts with all the work outside the batches)
            ctx.cost.forward_passes += model.counter.forward - checks_start[0]
            ctx.cost.backward_passes += model.counter.backward - checks_start[1]

            randomized = bool(ctx.shared.get("randomized"))
            log_probs = wants_log_probs(threat, "attacks")

            def clean(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
                logits = model.predict_logits(x)
                out = {"correct": logits.argmax(dim=1) == y, **softmax_outputs(logits, log_probs), "labels": y}
                if randomized:
                    out["rate"] = pass_mean_correct(model.predict_logits, x, y)
                return out

            start = ctx.map_batches("clean", data, clean, model.counter, batch_size=batch_size, desc=f"{spec.key} clean")
            n = len(data)
            correct = start["correct"]
            robust = correct.clone()
            adv_probs = start["probs"].clone()
            adv_log_probs = start["log_probs"].clone() if log_probs else None
            distance = torch.zeros(n)
            # Randomized models: an example's robustness is the pass-mean accuracy at the point (the
            # clean input or an attack's output) where it is lowest, measured afresh after the attacks.
            robust_rate = start["rate"].clone() if randomized else None
            breakdown: list[dict[str, Any]] = [{"attack": "clean", "robust_accuracy": float(correct.float().mean()) if n else 0.0, "n_robust": int(correct.sum()), "n_attacked": 0}]
            log.lines.append(f"INFO: robench: initial accuracy {breakdown[0]['robust_accuracy']:.2%} (n={n})")
            redone = 0
            if randomized:  # the adversary's chosen point per example (clean until an attack finds a lower pass mean)
                picked = torch.zeros(n, dtype=torch.bool)
                chosen = torch.empty((n, *data.input_shape))
            for name in order:
                # a randomized model's examples are all attacked: one pass's verdict would exempt some by chance
                index = torch.arange(n) if randomized else robust.nonzero().squeeze(1)
                if index.numel() == 0:
                    log.lines.append(f"INFO: robench: no robust examples left, {name} not run")
                    breakdown.append({"attack": name, "robust_accuracy": 0.0, "n_robust": 0, "n_attacked": 0})
                    continue

                def attack(
                    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, name: str = name, index: torch.Tensor = index
                ) -> dict[str, torch.Tensor]:
                    # pyautoattack seeds torch with its seed in every batch, as run_standard_evaluation does;
                    # a randomized model draws its noise from that RNG: per batch, or every batch and both
                    # attacks would see the same noise
                    seed = library_seed(generator) if randomized else ctx.seed
                    with torch.enable_grad():
                        candidate = perturb(adversary, name, x, y, order, seed, randomized).detach()
                    x_adv = (x + norm.project(candidate - x, eps)).clamp(0.0, 1.0)
                    logits = model.predict_logits(x_adv)
                    redo = torch.zeros_like(y, dtype=torch.bool)
                    if exact is not None:
                        with torch.no_grad():
                            redo = (stepper(x_adv).argmax(dim=1) != y) & (logits.argmax(dim=1) == y)
                        if redo.any():
                            again = redo.nonzero().squeeze(1)
                            with torch.enable_grad():
                                candidate = perturb(exact, name, x[again], y[again], order, seed, randomized).detach()
                            x_adv[again] = (x[again] + norm.project(candidate - x[again], eps)).clamp(0.0, 1.0)
                            logits[again] = model.predict_logits(x_adv[again])
                    out = {
                        "fooled": logits.argmax(dim=1) != y,
                        **softmax_outputs(logits, log_probs),
                        "distance": norm.distance(x_adv - x),
                        "redone_in_fp32": redo,
                    }
                    if randomized:
                        assert robust_rate is not None  # set for randomized models
                        rate = pass_mean_correct(model.predict_logits, x_adv, y)
                        rows = index[ctx.batch_offset : ctx.batch_offset + len(x)]
                        lower = rate.cpu() < robust_rate[rows]
                        # only the points this stage makes the adversary's choice are kept (and journalled):
                        # every x_adv of every stage was gigabytes on ImageNet
                        out.update(rate=rate, lower=lower, x_adv_lower=x_adv[lower.to(x_adv.device)].cpu())
                    return out

                stage = ctx.map_batches(
                    f"autoattack/{name}", SubsetDataset(data, index.tolist()), attack, model.counter,
                    batch_size=batch_size, desc=f"{spec.key} {name}",
                )
                fooled = index[stage["fooled"]]
                redone += int(stage["redone_in_fp32"].sum())
                if robust_rate is not None:
                    lower = stage["lower"]  # as the batches found it against robust_rate before this stage
                    robust_rate[index[lower]] = stage["rate"][lower]
                    picked[index[lower]] = True
                    chosen[index[lower]] = stage["x_adv_lower"]
                robust[fooled] = False
                adv_probs[fooled] = stage["probs"][stage["fooled"]]
                if adv_log_probs is not None:
                    adv_log_probs[fooled] = stage["log_probs"][stage["fooled"]]
                distance[fooled] = stage["distance"][stage["fooled"]]
                accuracy = float(robust.float().mean())
                breakdown.append({"attack": name, "robust_accuracy": accuracy, "n_robust": int(robust.sum()), "n_attacked": int(index.numel())})
                log.lines.append(f"INFO: robench: robust accuracy after {name}: {accuracy:.2%} ({int(index.numel())} attacked)")
            accuracies = {row["attack"]: row["robust_accuracy"] for row in breakdown}
            require("pyautoattack.checks").check_square_sr(accuracies, logger=adversary.logger)
            passes: PassMeans | None = None
            if robust_rate is not None:
                # chosen on the passes above, measured afresh: the minimum of noisy estimates is biased low
                def measure(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
                    rows = torch.arange(ctx.batch_offset, ctx.batch_offset + len(x))
                    point = torch.where(picked[rows].view(-1, *[1] * (x.ndim - 1)).to(x.device), chosen[rows].to(x.device), x)
                    return {"rate": pass_mean_correct(model.predict_logits, point, y)}

                measured = ctx.map_batches("autoattack/measure", data, measure, model.counter, batch_size=batch_size,
                                           desc=f"{spec.key} measure")["rate"]  # fmt: skip
                passes = PassMeans(robust=measured, clean=start["rate"])
                output.warnings.append(
                    "randomized model: robust accuracy is the expected per-pass accuracy at the adversary's best point "
                    f"(chosen on {STOCHASTIC_PASSES} passes, measured on {STOCHASTIC_PASSES} fresh ones); robust_accuracy_after "
                    "counts one pass at each attack's point; pyautoattack's own rand number (an example broken once any "
                    "pass misclassifies it) is lower and not comparable"
                )
        for position, row in enumerate(breakdown[1:], start=1):
            output.records.append(
                MetricRecord.proportion(
                    key, "robust_accuracy_after", row["n_robust"], n, {**condition, "after": row["attack"], "order": position}
                )
            )
        add_standard_records(
            output, ctx, key, condition, correct=correct, robust=robust, labels=start["labels"], adv_probs=adv_probs,
            adv_log_probs=adv_log_probs, distance=distance, num_classes=num_classes, norm_unit=norm.name.lower(),
            passes=passes, attack_name=spec.name,
        )
        # pyautoattack logs per batch: a sharded run's other ranks saw the warnings of their batches
        logged = ctx.from_every_rank((log.warnings, log.lines))
        own_warnings = list(dict.fromkeys(w for warnings, _ in logged for w in warnings))
        lines = [line for _, rank_lines in logged for line in rank_lines] if len(logged) > 1 else log.lines
        output.warnings += [f"pyautoattack: {w}" for w in own_warnings]
        scope = {"n": min(batch_size, len(data)), "budget": {"pyautoattack checks on the first batch": {
            "run": ", ".join(n for n in ("randomized", "range_output", "dynamic", "n_classes")
                             if not (n == "randomized" and params.version == "rand") and not (n == "dynamic" and any("check_dynamic" in m for m in notes))),
            "then": "square_sr on the robust accuracies" if "square" in order else "nothing more"}}}  # fmt: skip
        output.checks.append(_warnings_check(own_warnings, notes, scope))
        output.artifacts = {
            "kind": "autoattack",
            "version": params.version,
            "breakdown": breakdown,
            "log": lines[-_LOG_LIMIT:],
            "resumed_log_note": "batches restored from the journal log nothing" if ctx.cost.resumed_batches else None,
            "procedure": procedure(adversary, order, eps, norm.name, randomized),
        }
        if params.mode == "fast":
            # examples the bf16 queries called broken but the fp32 model did not: attacked again in fp32
            output.resolved["fast_mode_reattacked_in_fp32"] = redone
        return output


def effective_budget(adversary: Any) -> dict[str, int]:
    """The budget parameters of :class:`AutoAttackParams` as the configured pyautoattack objects hold
    them (a parameter left ``None`` means pyautoattack's default for the version and norm, which the
    results would otherwise not state)."""
    return {"n_iter": int(adversary.apgd.n_iter), "n_restarts": int(adversary.apgd.n_restarts),
            "square_queries": int(adversary.square.n_queries), "eot_iter": int(adversary.apgd.eot_iter)}  # fmt: skip


def _budget(adversary: Any, name: str) -> str:
    """One attack's iterations (queries for Square), per example, as :func:`perturb` runs it."""
    if name in ("apgd-ce", "apgd-dlr"):
        eot = int(adversary.apgd.eot_iter)
        return f"{int(adversary.apgd.n_iter)} iterations" + (f", {eot} EOT samples each" if eot > 1 else "")
    if name == "apgd-t":
        return f"{int(adversary.apgd_targeted.n_iter)} iterations x {int(adversary.apgd_targeted.n_target_classes)} target classes"
    if name in ("fab", "fab-t"):
        return f"{int(adversary.fab.n_iter)} iterations" + (f" x {int(adversary.fab.n_target_classes)} target classes" if name == "fab-t" else "")
    return f"{int(adversary.square.n_queries)} queries"


def procedure(adversary: Any, order: tuple[str, ...], eps: float, norm: str, randomized: bool = False) -> dict[str, Any]:
    """How the attacks ran, read from the configured pyautoattack objects (see
    :meth:`robench.attacks.base.Attack.procedure`); restarts, random starts and iterations (``budget``) per attack."""
    restarts: dict[str, int] = {}
    starts: dict[str, Any] = {}
    for position, name in enumerate(order):
        if name in ("apgd-ce", "apgd-dlr"):
            restarts[name], starts[name] = int(adversary.apgd.n_restarts), True
        elif name == "apgd-t":
            restarts[name], starts[name] = int(adversary.apgd_targeted.n_restarts), True  # per target class
        elif name in ("fab", "fab-t"):
            # as perturb runs them: fab-t, and a fab after it, with one restart
            count = 1 if name == "fab-t" or "fab-t" in order[:position] else int(adversary.fab.n_restarts)
            restarts[name], starts[name] = count, "from the clean input" + (", random in later restarts" if count > 1 else "")
        else:
            restarts[name], starts[name] = int(adversary.square.n_restarts), True
    alpha = 2.0 if norm in ("Linf", "L2") else 1.0
    rules = []
    if any(name.startswith("apgd") for name in order):
        rules.append(f"APGD adaptive, from {alpha:g} x eps = {alpha * eps:.4g}, halved where the loss stalls")
    if any(name.startswith("fab") for name in order):
        rules.append("FAB its own projection steps")
    if "square" in order:
        rules.append("Square random square updates")
    early = ("each attack runs only on the examples still robust after the ones before it, and restarts only on those "
             "not yet fooled") if not randomized else "none: every attack runs on every example (randomized model)"
    unfooled = ("the point (clean or adversarial) of lowest pass-mean accuracy (randomized model)" if randomized
                else f"{UNFOOLED_AT_CLEAN} (the official AutoAttack returns an example no attack fooled unperturbed)")
    return {"step_size": None, "step_size_rule": "; ".join(rules), "random_start": starts, "restarts": restarts,
            "budget": {name: _budget(adversary, name) for name in order},
            "early_stopping": not randomized, "early_stopping_rule": early, "unfooled_at": unfooled}  # fmt: skip


def _warnings_check(warnings: list[str], notes: list[str], scope: dict[str, Any]) -> Check:
    """AutoAttack's own warnings as one pass/warn record, with the examples and checks it rests on."""
    if warnings:
        return Check(
            name="autoattack_own_checks",
            status="warn",
            message=f"AutoAttack's own checks raised {len(warnings)} warning(s): " + warnings[0],
            evidence={"warnings": warnings, "notes": notes, **scope},
        )
    return Check(name="autoattack_own_checks", status="pass", message="AutoAttack's own checks raised no warning",
                 evidence={"notes": notes, **scope})  # fmt: skip
