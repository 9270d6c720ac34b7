"""Summary metrics of a corruption sweep (Hendrycks & Dietterich 2019, Sec. 3), as pure functions.

``errors[c][s]`` is the top-1 error of the model on corruption ``c`` at severity ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping

from robench.corruptions.params import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS

Errors = Mapping[str, Mapping[int, float]]


SEVERITIES = frozenset(range(1, 6))


def _check_severities(errors: Mapping[int, float]) -> None:
    """The baseline is AlexNet's error averaged over the five severities: ``sum_s E(AlexNet, s, c)``
    over fewer of them is unknown, and dividing their mean by the five-severity mean is another
    number (severity 5 alone, or 1 alone, would give the CE of the same error at every severity)."""
    if set(errors) != SEVERITIES:
        raise ValueError(f"Expected errors at severities 1..5 (AlexNet's baseline sums all five), but got severities {sorted(errors)}")


def corruption_error(errors: Mapping[int, float], baseline_mean_error: float) -> float:
    """Normalised corruption error ``CE_c = sum_s E(f, s, c) / sum_s E(AlexNet, s, c)``.

    The baseline is given as AlexNet's error averaged over the five severities, so with all five
    severities ``CE_c = mean_s E(f, s, c) / baseline_mean_error``.

    Raises:
        ValueError: ``errors`` not at exactly the severities 1..5.
    """
    _check_severities(errors)
    return (sum(errors.values()) / len(errors)) / baseline_mean_error


def relative_corruption_error(errors: Mapping[int, float], clean_error: float, baseline_mean_error: float, baseline_clean_error: float) -> float:
    """Relative CE ``sum_s (E(f, s, c) - E_clean(f)) / sum_s (E(AlexNet, s, c) - E_clean(AlexNet))``.

    Raises:
        ValueError: ``errors`` not at exactly the severities 1..5.
    """
    _check_severities(errors)
    model_gap = sum(errors.values()) / len(errors) - clean_error
    return model_gap / (baseline_mean_error - baseline_clean_error)


def mean_corruption_errors(
    errors: Errors,
    clean_error: float | None,
    baseline: Mapping[str, float] = ALEXNET_ERRORS,
    baseline_clean_error: float = ALEXNET_CLEAN_ERROR,
) -> dict[str, dict[str, float] | float | None]:
    """CE and relative CE per corruption of ``baseline`` and their means mCE, relative mCE.

    Returns:
        ``{"ce": {c: CE_c}, "relative_ce": {c: rCE_c}, "mce": mean CE, "relative_mce": mean rCE}``;
        the relative entries are empty / ``None`` without ``clean_error``, the means ``None`` unless
        every corruption of ``baseline`` is present.

    Raises:
        ValueError: a corruption of ``baseline`` without errors at exactly the severities 1..5.
    """
    names = [c for c in baseline if c in errors]
    ce = {c: corruption_error(errors[c], baseline[c]) for c in names}
    relative = (
        {c: relative_corruption_error(errors[c], clean_error, baseline[c], baseline_clean_error) for c in names}
        if clean_error is not None
        else {}
    )
    complete = len(names) == len(baseline)
    return {
        "ce": ce,
        "relative_ce": relative,
        "mce": sum(ce.values()) / len(ce) if complete else None,
        "relative_mce": sum(relative.values()) / len(relative) if complete and relative else None,
    }


MEAN_CELL_KEYS = ("benchmark_corruptions", "severities", "extra_corruptions")
"""The condition keys of a ``mean_corruption_accuracy`` record: which cells it averages."""


def is_benchmark_mean(condition: Mapping[str, object]) -> bool | None:
    """Whether a ``mean_corruption_accuracy`` record averages the 15 benchmark corruptions x 5
    severities (the published CIFAR-10-C / ImageNet-C mean), from the condition the sweep gives it;
    ``None`` for records of an older robench, whose condition does not say."""
    if "benchmark_corruptions" not in condition:
        return None
    return condition.get("benchmark_corruptions") == 15 and condition.get("severities") == 5
