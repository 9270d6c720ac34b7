"""Common corruptions: accuracy heatmap (corruption x severity), per-group bars, CE/mCE, example grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robench.corruptions.metrics import is_benchmark_mean
from robench.report.plots import PALETTE, figure_data_uri, interval_bars, new_figure
from robench.results import ConditionValue, Results


def cell_label(accuracy: float) -> str:
    """A heatmap cell's accuracy in whole percent, halves rounded up (96.5% reads 97, as the tables'
    one-decimal 96.5% suggests; Python's format rounds half to even: 96)."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(f"{100 * float(accuracy):.1f}").quantize(Decimal(1), rounding=ROUND_HALF_UP))  # from the tables' text


def error_norm(values: np.ndarray, n: int | None) -> Any:
    """The heatmap's colour scale: the error ``1 - accuracy`` on a log scale between the smallest and
    the largest error of the cells (an error of 0 counts as half an example, ``0.5 / n``).

    A linear 0-1 accuracy scale saturates when most cells lie within a few points of each other (all
    but contrast at 88-98% looked alike): on a log scale of the error, 2.5% and 12.5% lie half the
    colour range apart."""
    from matplotlib.colors import LogNorm

    errors = 1.0 - values[np.isfinite(values)]
    floor = 0.5 / n if n else 1e-3
    low = max(float(errors.min()) if errors.size else floor, floor)
    high = max(float(errors.max()) if errors.size else 1.0, low * 10)  # at least a decade of colours
    return LogNorm(vmin=low, vmax=high, clip=True)


def _heatmap(names: Sequence[ConditionValue], severities: list[int], values: np.ndarray, n: int | None = None) -> str:
    """Accuracy per corruption and severity, written in every cell; coloured by :func:`error_norm`
    (the colour bar is labelled in accuracy)."""
    from matplotlib.ticker import FuncFormatter

    fig, ax = new_figure(1.1 * len(severities) + 3, 0.32 * len(names) + 1.2)
    ax.grid(False)
    norm = error_norm(values, n)
    errors = np.clip(1.0 - values, norm.vmin, None)
    image = ax.imshow(np.ma.masked_invalid(errors), norm=norm, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("severity")
    for i in range(len(names)):
        for j in range(len(severities)):
            if np.isfinite(values[i, j]):
                bright = float(norm(errors[i, j])) > 0.6  # viridis is light at the top of its scale
                ax.text(j, i, cell_label(values[i, j]), ha="center", va="center", fontsize=7, color="black" if bright else "white")
    bar = fig.colorbar(image, ax=ax, label="accuracy (%; colour: error, log scale)")
    ticks = [e for e in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if norm.vmin <= e <= norm.vmax]
    bar.set_ticks(sorted({norm.vmin, *ticks, norm.vmax}))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda e, _: f"{100 * (1 - e):.3g}"))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda e, _: ""))
    return figure_data_uri(fig)


def _mean_over(record: Any) -> str | None:
    """What the mean corruption accuracy averages, in words (``None`` for older results)."""
    if record is None or "benchmark_corruptions" not in record.condition:
        return None
    bench, severities = record.condition["benchmark_corruptions"], record.condition.get("severities")
    if not bench:
        return f"over {record.condition.get('extra_corruptions')} extra corruptions x {severities} severities (no benchmark corruption was declared)"
    if is_benchmark_mean(record.condition):
        return "over the 15 benchmark corruptions x 5 severities (the published benchmark mean)"
    which = "all 15" if bench == 15 else f"{bench} of the 15"
    return f"over {which} benchmark corruptions x {severities} severities (a subset: not comparable with the published benchmark mean)"


# The images each severity table was made for (Hendrycks & Dietterich 2019): channels, side in pixels.
_TABLE_IMAGES = {"cifar10": (3, 32), "tinyimagenet": (3, 64), "imagenet": (3, 224)}


_TABLE_BENCHMARKS = {"cifar10": "CIFAR-10-C", "tinyimagenet": "Tiny-ImageNet-C", "imagenet": "ImageNet-C"}
"""The benchmark whose severities each table holds, for short labels."""


def _other_images(resolved: dict[str, Any], input_shape: list[int]) -> tuple[tuple[int, int], str, int] | None:
    """The images (channels, side) the generated corruptions' severity table was made for, and these
    inputs' kind (``gray``, ``RGB``, ``4-channel``) and side in pixels, where the two differ; else
    ``None`` (released files, a table made for such images, an unknown table or shape)."""
    designed = _TABLE_IMAGES.get(str(resolved.get("table")))
    if resolved.get("source") != "generated" or designed is None or len(input_shape) != 3:
        return None
    channels, side = input_shape[0], min(input_shape[1:])
    if (channels, side) == designed:
        return None
    return designed, {1: "gray", 3: "RGB"}.get(channels, f"{channels}-channel"), side


def table_note(results: Results) -> str | None:
    """The corruption headline's short caveat where the severity table was made for other images than
    these (``CIFAR-10-C parameters on 28 px gray images``), from the corruptions evaluation's resolved
    parameters and the dataset's input shape; ``None`` where it was not."""
    evaluation = next((e for e in results.evaluations if e.section == "corruptions"), None)
    mismatch = None if evaluation is None else _other_images(evaluation.resolved, results.dataset.input_shape)
    if evaluation is None or mismatch is None:
        return None
    _, kind, side = mismatch
    return f"{_TABLE_BENCHMARKS[str(evaluation.resolved['table'])]} parameters on {side} px {kind} images"


def table_mismatch(
    resolved: dict[str, Any], input_shape: list[int], what: str = "corruptions", made: str = "severity table"
) -> str | None:
    """Why generated ``what`` are not the benchmark on these images (a table made for other images:
    28 px gray digits under the CIFAR-10 table), or ``None``. The corruptions and the stability
    sections share it: ``made`` names what the table holds (their severities, the sequences'
    parameters)."""
    mismatch = _other_images(resolved, input_shape)
    if mismatch is None:
        return None
    designed, kind, side = mismatch
    return (f"the {resolved.get('table')} {made} was made for {'RGB' if designed[0] == 3 else 'gray'} {designed[1]} px natural images; "
            f"on these {kind} {side} px "
            f"inputs the {what} are a stress test with the benchmark's parameters, not the benchmark itself, and "
            "their numbers are not comparable with published ones")


_table_mismatch = table_mismatch  # the corruptions section's own wording


def _labelled_grid(examples: dict[str, Any]) -> str:
    """The sweep's example grid (one row per corruption, one column per severity) redrawn with its
    row and column names on the axes; the recorded PNG as it is when it cannot be read."""
    import base64
    import io

    import matplotlib.image as mpimg

    raw = "data:image/png;base64," + examples["png_base64"]
    rows, columns = list(examples.get("rows") or []), list(examples.get("columns") or [])
    try:
        image = mpimg.imread(io.BytesIO(base64.b64decode(examples["png_base64"])), format="png")
    except (ValueError, OSError, SyntaxError):
        return raw
    if not rows or not columns:
        return raw
    height, width = image.shape[:2]
    fig, ax = new_figure(1.1 * len(columns) + 1.6, 0.5 + height / width * 1.1 * len(columns))
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * height / len(rows) for i in range(len(rows))], rows, fontsize=7)
    ax.set_xticks([(j + 0.5) * width / len(columns) for j in range(len(columns))], columns, fontsize=8)
    ax.xaxis.tick_top()
    ax.grid(False)
    ax.tick_params(length=0)
    for side in ("left", "bottom", "top", "right"):
        ax.spines[side].set_visible(False)
    return figure_data_uri(fig)


# How an older robench's sweep warned that CE/mCE were not computed (robench.corruptions.sweep
# _normalised_errors now notes it in artifacts["ce_not_computed"]).
_CE_WARNING = "CE/mCE are normalised by AlexNet's ImageNet-C errors"


def _ce_absent(warnings: list[str], has_ce: bool, artifacts: dict[str, Any]) -> tuple[list[str], str | None]:
    """The section's warnings and, when no corruption has a CE, why (said once, by the table, in the
    sweep's words: ``artifacts["ce_not_computed"]``, or the warning an older robench gave, which
    then leaves the list)."""
    if has_ce:
        return warnings, None
    said = [w for w in warnings if w.startswith(_CE_WARNING)]
    noted = artifacts.get("ce_not_computed")
    reason = noted if isinstance(noted, str) else said[0] if said else (
        "CE/mCE are normalised by AlexNet's ImageNet-C errors: reported only for an ImageNet-C sweep over all five severities"
    )
    return [w for w in warnings if w not in said], reason


def _mean_interval_note(mean: Any, resolved: dict[str, Any]) -> str | None:
    """What the interval of a mean over cells is (``None`` where the record's interval is not the
    Clopper-Pearson bound on the sum of per-example mean scores)."""
    if mean is None or mean.value is None or not mean.n or not str(mean.interval or "").startswith("clopper-pearson over examples"):
        return None
    drawn = ("the released files hold one draw of each corruption" if resolved.get("source") == "released"
             else "each corruption was drawn once (its random draws fixed by the seed)")  # fmt: skip
    return (
        f"the intervals of the means over cells are approximate: each example's score is its mean over the cells, in [0, 1], and "
        f"the Clopper-Pearson interval is applied to their sum ({mean.value * mean.n:.2f} of {mean.n} for the mean corruption "
        "accuracy), which is not an integer. For such means it is conservative (a score in [0, 1] with mean p has variance at "
        f"most p (1 − p), that of a 0/1 outcome with the same mean, for which the interval is exact). They cover the sampling of "
        f"the examples only: {drawn}, and another draw would give other numbers"
    )


def build(results: Results) -> dict[str, Any] | None:
    """Heatmap, group bars, per-corruption rows with CE, and the example grid; None if not run."""
    evaluation = next((e for e in results.evaluations if e.section == "corruptions"), None)
    if evaluation is None:
        return None
    records = evaluation.records
    cells = {(r.condition["corruption"], r.condition["severity"]): r for r in records if r.name == "accuracy"}
    names = list(dict.fromkeys(c for c, _ in cells))
    severities = sorted({int(s) for _, s in cells})  # type: ignore[arg-type]
    values = np.full((len(names), len(severities)), np.nan)
    for (name, severity), record in cells.items():
        values[names.index(name), severities.index(int(severity))] = record.value if record.value is not None else np.nan  # type: ignore[arg-type]

    def per(name: str, corruption: ConditionValue) -> Any:
        return next((r for r in records if r.name == name and r.condition.get("corruption") == corruption), None)

    rows = [
        {
            "corruption": c,
            "group": evaluation.artifacts.get("groups", {}).get(c, ""),
            "accuracy": per("corruption_accuracy", c),
            "ce": per("corruption_error", c),
            "relative_ce": per("relative_corruption_error", c),
        }
        for c in names
    ]
    groups: dict[str, list[float]] = {}
    for row, line in zip(rows, values):
        groups.setdefault(row["group"] or "other", []).extend(v for v in line if np.isfinite(v))
    group_names = sorted(groups)
    group_means = [float(np.mean(groups[g])) if groups[g] else 0.0 for g in group_names]
    group_figure = None
    # A group's interval only where a record carries one; the mean of cells that share their examples
    # has no interval that could be made up from the cells' own.
    recorded = {str(r.condition["group"]): r for r in records
                if "group" in r.condition and r.unit == "fraction" and not {"corruption", "severity"} & set(r.condition)}  # fmt: skip
    group_intervals = bool(group_names) and all(
        recorded.get(g) is not None and recorded[g].ci_low is not None and recorded[g].value is not None for g in group_names
    )
    if group_names:
        fig, ax = new_figure(max(3.5, 0.9 * len(group_names) + 1.5), 3.0)
        if group_intervals:
            shown = [float(recorded[g].value) for g in group_names]  # type: ignore[arg-type]
            lows = [v - recorded[g].ci_low for v, g in zip(shown, group_names)]  # type: ignore[operator]
            highs = [recorded[g].ci_high - v for v, g in zip(shown, group_names)]  # type: ignore[operator]
            errors = [lows, highs]
            ax.bar(group_names, shown, yerr=errors, capsize=4, color=PALETTE[0])
            ax.set_ylabel("accuracy (95% CI)")
        else:
            ax.bar(group_names, group_means, color=PALETTE[0])
            ax.set_ylabel("mean accuracy (point estimate)")
        ax.set_ylim(0, 1)
        group_figure = figure_data_uri(fig)
    corruption_bars = None
    plotted = [r for r in rows if r["accuracy"] is not None]
    if plotted:
        corruption_bars = interval_bars(
            [r["corruption"] for r in plotted],
            [r["accuracy"].value for r in plotted],
            [r["accuracy"].ci_low for r in plotted],
            [r["accuracy"].ci_high for r in plotted],
            "accuracy over severities (95% CI)",
        )
    examples = evaluation.artifacts.get("examples")

    mean = next((r for r in records if r.name == "mean_corruption_accuracy"), None)  # whatever cells it averaged

    def summary(name: str) -> Any:
        return next((r for r in records if r.name == name and not r.condition), None)

    worst = min((r for r in cells.values() if r.value is not None), key=lambda r: r.value, default=None)  # type: ignore[arg-type,return-value]
    columns = {key: any(row[key] is not None for row in rows) for key in ("ce", "relative_ce")}
    warnings, ce_absent = _ce_absent(list(evaluation.warnings), columns["ce"], evaluation.artifacts)
    return {
        "columns": columns,
        "ce_absent": ce_absent,
        "mean_interval_note": _mean_interval_note(mean, evaluation.resolved),
        "worst_cell": worst,
        "table_mismatch": _table_mismatch(evaluation.resolved, results.dataset.input_shape),
        "status": evaluation.status,
        "error": evaluation.error,
        "resolved": evaluation.resolved,
        "mean_accuracy": mean,
        "mean_over": _mean_over(mean),
        "mce": summary("mce"),
        "relative_mce": summary("relative_mce"),
        "rows": rows,
        "severities_text": ", ".join(str(s) for s in severities),
        "heatmap": _heatmap(names, severities, values, max((r.n or 0 for r in cells.values()), default=0) or None) if names else None,
        "group_figure": group_figure,
        "group_intervals": group_intervals,
        "corruption_bars": corruption_bars,
        "examples_uri": _labelled_grid(examples) if examples else None,
        "examples": examples,
        "warnings": warnings,
        "cost": evaluation.cost,
    }
