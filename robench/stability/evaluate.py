"""The ``stability`` section: flip probability and top-5 distance under perturbation sequences.

For each declared perturbation, sequences are generated on the device from the evaluation
examples (or read from a released CIFAR-10-P style set), every frame is classified, and the flip
probability FP and top-5 distance T5D are computed with the official semantics
(:mod:`robench.stability.functional`). With a baseline (AlexNet's FP per perturbation, given in the
threat model), the flip rate ``FR = FP / FP_baseline`` and ``mFR = mean FR`` are recorded too
(Hendrycks & Dietterich 2019). Intervals (:func:`mean_interval`) treat sequences as the
independent units (frames of one sequence are not): the hull of a percentile bootstrap over
sequences and the Fay-Feuer gamma interval, or an exact bound where every sequence has the same value.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from robench.context import EvalContext, EvaluationOutput, shortfall_warning
from robench.data.base import Dataset
from robench.registry import register, registry
from robench.results import ConditionValue, MetricRecord
from robench.stability.functional import comparison_pairs, flip_probability, top5_distance, top5_distance_max
from robench.stability.params import SequenceParams, noise_level, resolve_table, sequence_params
from robench.stability.released import open_released
from robench.stats import clopper_pearson, weighted_sum_interval
from robench.threat_model import StabilitySpec, ThreatModel

EVALUATION = "stability"
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_INTERVAL = f"bootstrap-percentile over sequences ({BOOTSTRAP_RESAMPLES} resamples)"
STRIP_FRAMES = 11
STRIP_SIZE = 64
FRAME_BUDGET = 2**26  # 256 MiB of float32 frames per batch
SEQUENCE_BLOCK = 32  # generated sequences per random stream (see EvalContext.blockwise)


def bootstrap_mean_interval(values: torch.Tensor, generator: torch.Generator, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values``.

    ``values`` is ``(N,)`` (one value per sequence) or ``(P, N)`` (P perturbations of the same N
    sequences: the statistic is the mean over perturbations of the per-perturbation means, and
    the sequences are resampled jointly, keeping the pairing).
    """
    values = values.double().reshape(-1, values.shape[-1]).cpu()
    n = values.shape[1]
    if n < 2:
        mean = float(values.mean())
        return mean, mean
    draws = torch.randint(0, n, (resamples, n), generator=generator)
    stats = values[:, draws].mean(dim=2).mean(dim=0)
    low, high = torch.quantile(stats, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(low), float(high)


def mean_interval(
    values: torch.Tensor, generator: torch.Generator, support_max: float
) -> tuple[tuple[float, float], str]:
    """95% interval of the mean of per-sequence values in ``[0, support_max]``, and how it was made.

    The percentile bootstrap (:func:`bootstrap_mean_interval`) collapses to a point when every
    sequence has the same value ``c`` (no flip anywhere, or exactly one flip in every sequence),
    which would claim certainty. Then the share ``q`` of sequences whose value differs from ``c``
    is at most ``u``, the Clopper-Pearson upper bound for 0 such sequences in ``n``, and the mean
    ``c (1 - q) + q E[value | value != c]`` lies in ``[c (1 - u), c (1 - u) + support_max u]``
    (a conservative exact bound; ``[0, support_max u]`` when nothing flipped).

    Otherwise the bootstrap interval is widened to hold :func:`robench.stats.weighted_sum_interval`
    (Fay-Feuer, values bounded by ``support_max``) too. The bootstrap alone misses high when a few
    sequences carry most of the mean: with 2-10 nonzero sequences (a stable model) it covered
    86-90% in simulation; with 55 of 100 sequences flipping once and 2 on every frame, 87%, and
    93% at n = 1000 with 0.5% flipping on every frame (sequences near a decision boundary). The
    union covered at least 97% in each case; it is about 40% wider for a top-5 distance, whose
    bound (18) is far above its typical values.
    """
    flat = values.double().reshape(-1, values.shape[-1])
    n = int(flat.shape[1])
    per_sequence = flat.mean(dim=0)
    if n and bool((per_sequence == per_sequence[0]).all()):
        c, u = float(per_sequence[0]), clopper_pearson(0, n)[1]
        what = "no nonzero value" if c == 0 else f"every value {c:.4g}"
        return (c * (1 - u), min(support_max, c * (1 - u) + support_max * u)), f"exact bound: {what} in {n} sequences (Clopper-Pearson)"
    low, high = bootstrap_mean_interval(values, generator)
    gamma_low, gamma_high = weighted_sum_interval(per_sequence.clamp(0, support_max).tolist(), support_max)
    return (min(low, gamma_low), max(high, gamma_high)), f"{BOOTSTRAP_INTERVAL} joined with the Fay-Feuer gamma interval"


def _predict_frames(model: Any, frames: torch.Tensor, chunk: int) -> torch.Tensor:
    """Logits ``(B, T, K)`` of frames ``(B, T, C, H, W)``, classified ``chunk`` frames at a time."""
    flat = frames.reshape(-1, *frames.shape[2:])
    logits = torch.cat([model.predict_logits(flat[i : i + chunk]).float() for i in range(0, flat.shape[0], chunk)])
    return logits.reshape(frames.shape[0], frames.shape[1], -1)


def _png_uri(image: torch.Tensor) -> str:
    """A ``(C, H, W)`` uint8 image as an inline PNG data URI."""
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumbnails(frames: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Up to :data:`STRIP_FRAMES` evenly spaced frames of ``(1, T, C, H, W)``, at most 64 px, uint8."""
    count = frames.shape[1]
    picks = sorted({round(i * (count - 1) / (STRIP_FRAMES - 1)) for i in range(STRIP_FRAMES)}) if count > STRIP_FRAMES else list(range(count))
    chosen = frames[0, picks]
    size = max(chosen.shape[-2:])
    if size > STRIP_SIZE:
        chosen = F.interpolate(chosen, scale_factor=STRIP_SIZE / size, mode="area")
    return picks, (chosen.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(0)


def _sequences(
    spec: StabilitySpec, data: Dataset, name: str, params: SequenceParams, level: int, n: int | None,
    data_home: str | None = None,
) -> tuple[Dataset, int, Callable[[torch.Tensor, torch.Generator], torch.Tensor]]:
    """What to iterate and how a batch becomes frames ``(B, T, C, H, W)``: released sequences are
    read as they are; generated ones come from the evaluation images and the perturbation."""
    if spec.source == "released":
        sequences = open_released(
            str(spec.released_manifest), None, name, params.noise, level, n, data_home=data_home
        )
        return sequences, sequences.frames, lambda x, generator: x
    perturb = registry.get("perturbation", name)

    def generate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return perturb(x, generator, params=params, level=level)

    return data.subset(n), params.frames, generate


@register("evaluation", "stability")
def evaluate_stability(model: Any, data: Dataset, threat: ThreatModel, spec: StabilitySpec | None, ctx: EvalContext) -> EvaluationOutput:
    """Flip probability, top-5 distance and (with a baseline) flip rate per perturbation, and their means."""
    spec = spec or StabilitySpec()
    baseline = dict(spec.baseline or {})  # flip probabilities in (0, 1], checked by StabilitySpec
    # Released sequences are CIFAR-10-P's; generated ones take the table of the image size.
    table = "cifar10" if spec.source == "released" else resolve_table("auto", int(max(data.input_shape[1:])))
    difficulty, level = spec.difficulty, noise_level(spec.difficulty)
    output = EvaluationOutput(resolved={**spec.model_dump(mode="json"), "table": table, "noise_level": level})
    if spec.source == "generated":
        output.resolved["random_draws_on"] = ctx.device.type if spec.rng == "device" else "cpu"
    else:
        from robench.data.released import released_provenance

        output.resolved["released"] = released_provenance(str(spec.released_manifest), data_home=ctx.data_home)
    # As in the corruptions section: the section's n_examples, else as many as the run evaluates
    # (dataset.n_examples / --n-examples); released files must hold that many sequences.
    n = spec.n_examples or len(data)
    top5_support = 18.0  # the largest top-5 distance, set from the classes of the sequences below
    if spec.source == "generated":  # released sequences come from their own file, which may hold more
        if (short := shortfall_warning(spec.n_examples, len(data))) is not None:
            output.warnings.append(short)
        n = min(n, len(data))
    output.resolved["n_examples"] = n  # the sequences evaluated (None said "the run's", not how many)
    if ctx.shared.get("randomized"):
        output.warnings.append("the model's outputs are random: flip probabilities include its own randomness, not only the perturbations'")
    unknown = sorted(set(baseline) - set(spec.perturbations))
    if unknown:
        output.warnings.append(f"baseline flip probabilities given for perturbations that were not evaluated: {unknown}")

    per_sequence: dict[str, dict[str, torch.Tensor]] = {}
    summaries: list[dict[str, Any]] = []
    for name in spec.perturbations:
        params = sequence_params(name, table)
        if params.noise and difficulty > level:
            output.warnings.append(f"{name}: noise sequences have 3 strengths; difficulty {difficulty} uses strength {level}")
        sequences, n_frames, frames_of = _sequences(spec, data, name, params, level, n, data_home=ctx.data_home)
        pairs = comparison_pairs(n_frames, params.noise, difficulty)
        top5_support = top5_distance_max(sequences.num_classes)  # the model's outputs are checked against it

        on_device = spec.rng == "device" and spec.source == "generated"
        # Sequences per batch: about FRAME_BUDGET float32 values of frames held at once. Generated
        # sequences draw one random stream per block of SEQUENCE_BLOCK (fewer for large images),
        # whatever --batch-size, and a batch holds whole blocks: a sequence's frames do not depend
        # on the batch size, sharding or n_examples (the last block is padded, at most
        # SEQUENCE_BLOCK - 1 extra sequences).
        budget = max(1, FRAME_BUDGET // (n_frames * math.prod(sequences.input_shape)))
        block = min(SEQUENCE_BLOCK, budget)
        per_batch = budget // block * block if spec.source == "generated" else min(ctx.batch_size, budget)

        def frames(x: torch.Tensor, generator: torch.Generator, sequences: Dataset = sequences, frames_of: Any = frames_of,
                   name: str = name, on_device: bool = on_device, block: int = block) -> torch.Tensor:  # fmt: skip
            if spec.source == "released":
                return frames_of(x, generator)
            return ctx.blockwise(name, sequences, x, frames_of, block, on_device)

        def batch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, frames: Any = frames, noise: bool = params.noise) -> dict[str, torch.Tensor]:
            shown = frames(x, generator)
            logits = _predict_frames(model, shown, ctx.batch_size)
            predictions = logits.argmax(dim=2)
            # sequence 0 as it was scored, for the report's strip (zero rows from every other batch)
            keep = 1 if ctx.batch_offset == 0 else 0
            picks, thumbs = _thumbnails(shown[:1])
            return {
                "flip_probability": flip_probability(predictions, noise, difficulty),
                "top5_distance": top5_distance(logits, noise, difficulty),
                "strip_predictions": predictions[:keep].cpu(), "strip_thumbnails": thumbs[:keep].cpu(),
                "strip_picks": torch.tensor([picks])[:keep],
            }  # fmt: skip

        out = ctx.map_batches(name, sequences, batch, model.counter, batch_size=per_batch, desc=f"stability {name}", rng_on_device=on_device)
        per_sequence[name] = out
        shown = {"picks": out["strip_picks"], "thumbnails": out["strip_thumbnails"], "predictions": out["strip_predictions"]}
        condition = {"perturbation": name, "difficulty": difficulty, "source": spec.source}
        fp, t5d = out["flip_probability"], out["top5_distance"]
        fp_interval, fp_method = mean_interval(fp, ctx.generator("bootstrap", name, "fp"), 1.0)
        t5d_interval, t5d_method = mean_interval(t5d, ctx.generator("bootstrap", name, "t5d"), top5_support)
        count = int(fp.numel())
        output.records.append(_record("flip_probability", float(fp.mean()), count, fp_interval, condition, "probability", fp_method))
        output.records.append(_record("top5_distance", float(t5d.mean()), count, t5d_interval, condition, "rank distance", t5d_method))
        summary: dict[str, Any] = {
            "perturbation": name, "noise": params.noise, "frames": n_frames, "comparisons": int(pairs.shape[0]),
            "flip_probability": float(fp.mean()), "flip_probability_ci": list(fp_interval),
            "top5_distance": float(t5d.mean()), "n": count,
            "strip": {
                "frame_indices": shown["picks"][0].tolist(),
                "images": [_png_uri(image) for image in shown["thumbnails"][0]],
                "predictions": shown["predictions"][0].tolist(),
            },
        }  # fmt: skip
        if name in baseline:
            scale = 1.0 / baseline[name]
            flip_rate = float(fp.mean()) * scale
            output.records.append(
                _record("flip_rate", flip_rate, count, (fp_interval[0] * scale, fp_interval[1] * scale),
                        {**condition, "baseline_flip_probability": baseline[name]}, "ratio", fp_method)
            )  # fmt: skip
            summary["flip_rate"] = flip_rate
        summaries.append(summary)

    _summary_records(output, per_sequence, baseline, spec, ctx, top5_support)
    output.artifacts = {
        "table": table, "difficulty": difficulty, "noise_level": level, "perturbations": summaries, "top5_distance_max": top5_support,
    }  # fmt: skip
    return output


def _record(
    name: str, value: float, n: int, interval: tuple[float, float], condition: dict[str, Any], unit: str,
    method: str = BOOTSTRAP_INTERVAL,
) -> MetricRecord:
    return MetricRecord(
        evaluation=EVALUATION, name=name, value=value, n=n, ci_low=interval[0], ci_high=interval[1],
        condition=condition, unit=unit, interval=method,
    )  # fmt: skip


def _summary_records(
    output: EvaluationOutput, per_sequence: dict[str, dict[str, torch.Tensor]], baseline: dict[str, float], spec: StabilitySpec,
    ctx: EvalContext, top5_support: float,
) -> None:
    """Means over perturbations: mFP, mT5D and, when every perturbation has a baseline, mFR."""
    names = list(per_sequence)
    if not names:
        return
    condition: dict[str, ConditionValue] = {"difficulty": spec.difficulty, "source": spec.source, "perturbations": len(names)}
    sizes = {int(per_sequence[name]["flip_probability"].numel()) for name in names}
    paired = len(sizes) == 1
    for metric, record_name, unit, support_max in (
        ("flip_probability", "mean_flip_probability", "probability", 1.0),
        ("top5_distance", "mean_top5_distance", "rank distance", top5_support),
    ):
        means = [float(per_sequence[name][metric].mean()) for name in names]
        value = sum(means) / len(means)
        if paired:
            stacked = torch.stack([per_sequence[name][metric] for name in names])
            interval, method = mean_interval(stacked, ctx.generator("bootstrap", "mean", metric), support_max)
            output.records.append(_record(record_name, value, min(sizes), interval, condition, unit, method))
        else:
            output.records.append(MetricRecord(evaluation=EVALUATION, name=record_name, value=value, condition=condition, unit=unit))
    missing = [name for name in names if name not in baseline]
    if baseline and missing:
        output.warnings.append(f"mFR not computed: no baseline flip probability for {missing}")
    if baseline and not missing:
        rates = torch.stack([per_sequence[name]["flip_probability"] / baseline[name] for name in names]) if paired else None
        value = sum(float(per_sequence[name]["flip_probability"].mean()) / baseline[name] for name in names) / len(names)
        if rates is not None:
            # a sequence's mean over perturbations of FP / baseline is at most the mean of 1 / baseline
            support = sum(1 / baseline[name] for name in names) / len(names)
            interval, method = mean_interval(rates, ctx.generator("bootstrap", "mean", "flip_rate"), support)
            output.records.append(_record("mean_flip_rate", value, min(sizes), interval, condition, "ratio", method))
        else:
            output.records.append(MetricRecord(evaluation=EVALUATION, name="mean_flip_rate", value=value, condition=condition, unit="ratio"))
