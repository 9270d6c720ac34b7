"""The ``corruptions`` section: accuracy under every corruption x severity, CE, mCE, examples.

Generated mode corrupts each batch on the device with the batch's generator, stores it as the
released sets stored theirs when the threat model's ``quantize`` says so
(:func:`robench.corruptions._quantize.quantize_as_released`; ``none``: floating point) and predicts;
released mode reads, from CIFAR-10-C-style or ImageNet-C-style files, the rows of each cell that
hold the evaluation examples (:func:`robench.data.released.load_matching_cell`: same label set,
image shape, labels and file names as the clean data). Either way every (corruption, severity)
is one :meth:`EvalContext.map_batches` stage (``"<name>/<severity>"``), so it is journalled and
resumable; when the threat model declares calibration under corruptions, its probabilities are
handed to calibration as ``corruptions/<name>/<severity>`` (kept until the run ends, so only then).
"""

from __future__ import annotations

from typing import Any

import torch

from robench._errors import ConfigError
from robench.context import EvalContext, EvaluationOutput, shortfall_warning
from robench.corruptions._base import GROUPS
from robench.corruptions._examples import example_grid
from robench.corruptions._quantize import quantize_as_released
from robench.corruptions.metrics import SEVERITIES, mean_corruption_errors
from robench.corruptions.params import ALEXNET_ERRORS, CorruptionTable, resolve_table
from robench.data.base import Dataset
from robench.evaluations.clean import predictions, wants_log_probs
from robench.models.wrapper import ModelHandle
from robench.registry import register, registry
from robench.results import MetricRecord
from robench.stats import mean_interval
from robench.threat_model import BENCHMARK_CORRUPTIONS, CorruptionsSpec, ThreatModel

SECTION = "corruptions"


RNG_BLOCK = 128
"""Examples per random stream of a generated corruption (:meth:`EvalContext.blockwise`): an
example's corrupted image does not depend on the batch size, an out-of-memory back-off or sharding."""


def _corrupt_then_predict(
    model: ModelHandle, data: Dataset, name: str, severity: int, table: CorruptionTable, ctx: EvalContext, on_device: bool,
    log_probs: bool = False, quantize: str = "none",
) -> Any:
    corrupt = registry.get("corruption", name)
    predict = predictions(model, log_probs)

    def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        corrupted = ctx.blockwise(
            f"{name}/{severity}", data, x, lambda images, generator: corrupt(images, severity, table, generator), RNG_BLOCK, on_device
        )
        corrupted = quantize_as_released(corrupted, quantize)  # as the released sets stored their images
        # the evaluated image of example 0, for the report's grid (an empty tensor from every other batch)
        first = corrupted[:1] if ctx.batch_offset == 0 else corrupted[:0]
        return {**predict(corrupted, y, generator), "first": first.float().cpu()}

    return batch


def _clean_error(model: ModelHandle, data: Dataset, ctx: EvalContext) -> tuple[float, str]:
    """Clean error on ``data``: from the clean section's hand-off when it covers it, else measured."""
    shared = ctx.shared.get("clean")
    n = len(data)
    if shared is not None and shared["labels"].numel() >= n and torch.equal(shared["labels"][:n].cpu(), data.labels[:n].cpu()):
        correct = shared["probs"][:n].argmax(dim=1) == shared["labels"][:n]
        return 1.0 - float(correct.float().mean()), "clean section"
    out = ctx.map_batches("clean", data, predictions(model), model.counter, desc="corruptions clean")
    return 1.0 - float((out["probs"].argmax(dim=1) == out["labels"]).float().mean()), "measured here"


def _mean_over_cells(name: str, rows: list[torch.Tensor], condition: dict[str, Any]) -> MetricRecord:
    """Accuracy averaged over cells that share their examples, with an interval over examples
    (:func:`robench.stats.mean_interval`); ``n`` is the number of examples, not of predictions."""
    scores = torch.stack(rows).float().mean(dim=0)
    low, high = mean_interval(scores.tolist())
    return MetricRecord(
        evaluation=SECTION, name=name, value=float(scores.mean()), n=int(scores.numel()), ci_low=low, ci_high=high,
        condition=condition, unit="fraction", interval="clopper-pearson over examples (mean score per example; cells share their examples)",
    )


def _mean_corruption_accuracy(hits: dict[str, list[torch.Tensor]], spec: CorruptionsSpec) -> MetricRecord:
    """The headline mean over the cells of the declared benchmark corruptions (the CIFAR-10-C /
    ImageNet-C convention; the 4 held-out extras keep their own rows, as mCE leaves them out), or
    over the declared extras when no benchmark corruption is declared. The condition says what was
    averaged: ``benchmark_corruptions=15, severities=5`` is the published benchmark mean."""
    benchmark = [name for name in hits if name in BENCHMARK_CORRUPTIONS]
    averaged = benchmark or list(hits)
    condition: dict[str, Any] = {"benchmark_corruptions": len(benchmark), "severities": len(spec.severities)}
    if not benchmark:
        condition["extra_corruptions"] = len(averaged)
    return _mean_over_cells("mean_corruption_accuracy", [h for name in averaged for h in hits[name]], condition)


@register("evaluation", SECTION)
def evaluate_corruptions(model: ModelHandle, data: Dataset, threat: ThreatModel, spec: CorruptionsSpec | None, ctx: EvalContext) -> EvaluationOutput:
    """Accuracy per corruption x severity (95% CI), mean corruption accuracy, CE, mCE and relative mCE."""
    spec = spec or CorruptionsSpec()
    if not isinstance(spec, CorruptionsSpec):
        raise ConfigError(f"Expected a CorruptionsSpec for the corruptions section, but got {type(spec).__name__}")
    short = shortfall_warning(spec.n_examples, len(data))
    data = data.subset(spec.n_examples)
    side = min(data.input_shape[1:])
    output = EvaluationOutput(warnings=[short] if short else [])
    table = resolve_table(spec.table, side) if spec.source == "generated" else None
    hits: dict[str, list[torch.Tensor]] = {}  # per corruption: one row of per-example correctness per severity
    calibration = threat.evaluations.calibration
    hand_off = calibration is not None and "corruptions" in calibration.conditions
    log_probs = hand_off and wants_log_probs(threat, "corruptions")
    evaluated: dict[tuple[str, int], torch.Tensor] = {}  # example 0 as it was scored, per cell
    aligned = max(RNG_BLOCK, ctx.batch_size // RNG_BLOCK * RNG_BLOCK)  # whole random-stream blocks per batch
    for name in spec.corruptions:
        hits[name] = []
        for severity in spec.severities:
            stage = f"{name}/{severity}"
            if spec.source == "released":
                from robench.data.released import load_matching_cell

                assert spec.released_manifest is not None  # CorruptionsSpec requires it with source 'released'
                subset = load_matching_cell(
                    spec.released_manifest, name, severity, data, clean_manifest=threat.dataset.manifest, data_home=ctx.data_home
                )  # released ImageNet-C images are already resized and cropped to 224 px
                out = ctx.map_batches(stage, subset, predictions(model, log_probs), model.counter, desc=f"corruptions {stage}")
            elif table is not None:
                on_device = spec.rng == "device"
                out = ctx.map_batches(
                    stage, data, _corrupt_then_predict(model, data, name, severity, table, ctx, on_device, log_probs, spec.quantize), model.counter,
                    batch_size=aligned, desc=f"corruptions {stage}", rng_on_device=on_device,
                )
                if out["first"].numel():
                    evaluated[(name, severity)] = out["first"][:1]
            probs, labels = out["probs"], out["labels"]
            hit = probs.argmax(dim=1) == labels
            hits[name].append(hit)
            correct = int(hit.sum())
            if hand_off:
                ctx.shared[f"{SECTION}/{stage}"] = {"probs": probs, "labels": labels, **({"log_probs": out["log_probs"]} if log_probs else {})}
            output.records.append(
                MetricRecord.proportion(SECTION, "accuracy", correct, labels.numel(), {"corruption": name, "severity": severity})
            )
        output.records.append(_mean_over_cells("corruption_accuracy", hits[name], {"corruption": name}))
    for group in sorted({GROUPS.get(name, "other") for name in hits}):  # the report's per-group bars
        cells = [h for name in hits if GROUPS.get(name, "other") == group for h in hits[name]]
        output.records.append(_mean_over_cells("group_corruption_accuracy", cells, {"group": group}))
    output.records.append(_mean_corruption_accuracy(hits, spec))
    _normalised_errors(model, data, spec, table, hits, ctx, output)
    output.resolved.update({
        "source": spec.source,
        "table": table.name if table is not None else None,
        "image_size": side,
        "n_examples": len(data),
        "corruptions": list(spec.corruptions),
        "severities": list(spec.severities),
        "random_draws_on": (ctx.device.type if spec.rng == "device" else "cpu") if spec.source == "generated" else None,
        "quantize": spec.quantize if spec.source == "generated" else None,
    })
    if spec.source == "released":
        from robench.data.released import released_provenance

        assert spec.released_manifest is not None
        output.resolved["released"] = released_provenance(spec.released_manifest, data_home=ctx.data_home)
    output.artifacts.update({  # after the CE/mCE step's note
        "groups": {name: GROUPS.get(name, "other") for name in spec.corruptions},
        "table": table.name if table is not None else spec.released_manifest,
    })
    if table is not None and len(data):
        x, _ = data.load(slice(0, 1))
        output.artifacts["examples"] = example_grid(x, list(spec.corruptions), list(spec.severities), evaluated)
    return output


def _normalised_errors(
    model: ModelHandle,
    data: Dataset,
    spec: CorruptionsSpec,
    table: CorruptionTable | None,
    hits: dict[str, list[torch.Tensor]],
    ctx: EvalContext,
    output: EvaluationOutput,
) -> None:
    """AlexNet-normalised CE / mCE and relative CE / mCE, when the sweep is ImageNet-C's.

    ``n`` is the number of examples (every cell holds the same ones). CE_c and mCE are means of
    per-example errors divided by constants, so they get the interval over examples of
    :func:`robench.stats.mean_interval`, divided likewise; the relative errors subtract the clean
    error and carry no interval.
    """
    # AlexNet's errors are those of ImageNet-1k's 1000 classes: meaningless for another label set,
    # whatever the image size (a 96 px 10-class set resolves to the imagenet table too). A released
    # set shares the data's label set (load_matching_cell refuses another before any cell runs).
    imagenet_like = data.num_classes == 1000 and (table is None or table.name == "imagenet")
    if not imagenet_like or set(spec.severities) != SEVERITIES:
        # why the tables have no CE column: a note on the run's scope, not a warning about it
        output.artifacts["ce_not_computed"] = (
            "CE/mCE are normalised by AlexNet's ImageNet-C errors: reported only for an ImageNet-C sweep "
            "(1000 classes, released ImageNet-C or the imagenet table) over all five severities"
        )
        return
    if spec.source == "generated":
        output.warnings.append(
            "CE/mCE divide errors on robench-generated corruptions by AlexNet's errors on the released "
            "ImageNet-C files (JPEG-saved): compare them with published mCE with that in mind"
        )
    # Per corruption, each example's error averaged over the five severities.
    example_errors = {c: 1.0 - torch.stack(rows).float().mean(dim=0) for c, rows in hits.items() if c in ALEXNET_ERRORS}
    errors = {c: {s: 1.0 - float(row.float().mean()) for s, row in zip(spec.severities, hits[c])} for c in example_errors}
    clean_error, clean_source = _clean_error(model, data, ctx)
    summary = mean_corruption_errors(errors, clean_error)
    n = len(data)
    interval = "clopper-pearson over examples (mean error per example over the cells), divided by AlexNet's error"
    for name, value in summary["ce"].items():  # type: ignore[union-attr]
        low, high = mean_interval(example_errors[name].tolist())
        output.records.append(MetricRecord(
            evaluation=SECTION, name="corruption_error", value=value, n=n, condition={"corruption": name}, unit="ratio",
            ci_low=low / ALEXNET_ERRORS[name], ci_high=high / ALEXNET_ERRORS[name], interval=interval,
        ))  # fmt: skip
    for name, value in summary["relative_ce"].items():  # type: ignore[union-attr]
        output.records.append(MetricRecord(evaluation=SECTION, name="relative_corruption_error", value=value, n=n, condition={"corruption": name}, unit="ratio"))
    if summary["mce"] is not None:
        # mCE = mean_i (1/15) sum_c e_ic / A_c; scaled by min_c A_c every per-example score is in [0, 1].
        floor = min(ALEXNET_ERRORS[c] for c in example_errors)
        scores = torch.stack([example_errors[c] * (floor / ALEXNET_ERRORS[c]) for c in example_errors]).mean(dim=0)
        low, high = mean_interval(scores.clamp(0.0, 1.0).tolist())
        output.records.append(MetricRecord(
            evaluation=SECTION, name="mce", value=float(summary["mce"]), n=n, unit="ratio",  # type: ignore[arg-type]
            ci_low=low / floor, ci_high=high / floor, interval=interval,
        ))  # fmt: skip
    if summary["relative_mce"] is not None:
        output.records.append(MetricRecord(evaluation=SECTION, name="relative_mce", value=float(summary["relative_mce"]), n=n, unit="ratio"))  # type: ignore[arg-type]
    if summary["mce"] is None:
        output.warnings.append("mCE needs all 15 benchmark corruptions; CE is reported per corruption only")
    output.resolved["clean_error"] = clean_error
    output.resolved["clean_error_source"] = clean_source
