"""Records every certifier writes: certified accuracy along a grid, at the threat model's eps, ACR."""

from __future__ import annotations

import math
from typing import Any

import torch

from robench.certify.curves import table_points
from robench.certify.smoothing import past_ceiling
from robench.context import EvaluationOutput
from robench.results import ConditionValue, MetricRecord, pack_outcomes
from robench.threat_model import ThreatModel


def add_curve(
    output: EvaluationOutput,
    key: str,
    grid_key: str,
    grid: tuple[float, ...],
    certified_at: Any,
    condition: dict[str, ConditionValue],
    ceiling: float | None = None,
) -> list[dict[str, float | None]]:
    """``certified_accuracy`` at every grid point (condition ``{grid_key: value}``); return the curve.

    A grid radius past ``ceiling`` (smoothing's largest possible certificate) is 0 by construction:
    its record's condition holds ``certifiable: False``, as the headline's does.

    Args:
        output: Gets the records.
        key: Evaluation key.
        grid_key: ``radius`` (L2 radii) or ``eps`` (IBP's Linf radii).
        grid: Grid values.
        certified_at: ``value -> (B,) bool`` tensor of certified-and-correct flags.
        condition: Common condition (certifier, norm, sigma...).
        ceiling: The largest radius the certifier's settings can certify, where there is one.
    """
    curve = []
    for value in grid:
        flags = certified_at(value)
        at = {**condition, grid_key: value, **({"certifiable": False} if past_ceiling(value, ceiling) else {})}
        record = MetricRecord.proportion(key, "certified_accuracy", int(flags.sum()), int(flags.numel()), at)
        output.records.append(record)
        curve.append({grid_key: value, "value": record.value, "ci_low": record.ci_low, "ci_high": record.ci_high})
    return curve


def add_table_points(
    output: EvaluationOutput,
    key: str,
    curve: list[dict[str, Any]],
    examples: list[dict[str, Any]],
    condition: dict[str, ConditionValue],
    ceiling: float | None = None,
) -> None:
    """``certified_accuracy`` at the radii the report's table adds to the grid
    (:func:`robench.certify.curves.table_points`: the largest certified radius, the ceiling, round
    radii where the grid lies above every certificate), from the per-example records, with the
    condition ``{"radius": r, "point": why}``: every number of the table is then a record."""
    for row in table_points(curve, examples, ceiling):
        if "k" not in row or row["value"] is None:  # a grid row (recorded by add_curve), or past the ceiling
            continue
        at = {**condition, "radius": float(row["radius"]), "point": row["note"]}
        output.records.append(MetricRecord.proportion(key, "certified_accuracy", int(row["k"]), int(row["n"]), at))


def record_certified_outcomes(output: EvaluationOutput, flags: torch.Tensor) -> None:
    """Keep the per-example flags behind a deterministic certifier's certified accuracy at the threat
    model's eps (``outcomes["certified_accuracy"]``), so that the report can check that no attack of
    the run broke a certified example (:func:`robench.report.checklist.certified_but_broken`).
    Smoothing does not: it certifies the smoothed classifier, which the attacks do not attack."""
    output.outcomes["certified_accuracy"] = pack_outcomes(flags.bool())


NOT_CERTIFIABLE = "not certifiable with these settings"
"""How the warning of :func:`add_headline_l2` starts (before a colon)."""


def threat_radius_l2(threat: ThreatModel, input_numel: int) -> float | None:
    """The L2 radius whose certificate implies the threat model's ball, or ``None`` without adversary.

    ``||d||_2 <= sqrt(d) ||d||_inf`` and ``||d||_2 <= ||d||_1``: an L2 certificate of radius
    ``sqrt(d) eps`` covers the Linf ball of radius ``eps``, one of radius ``eps`` the L1 ball.
    """
    adversary = threat.adversary
    if adversary is None:
        return None
    if adversary.norm == "Linf":
        return adversary.eps * math.sqrt(input_numel)
    return adversary.eps


def add_headline_l2(
    output: EvaluationOutput,
    key: str,
    threat: ThreatModel,
    radius: torch.Tensor,
    correct: torch.Tensor,
    input_numel: int,
    condition: dict[str, ConditionValue],
    ceiling: float | None = None,
) -> torch.Tensor | None:
    """``certified_accuracy`` at the threat model's eps, from per-example certified L2 radii; return
    its per-example flags (``None`` without an adversary).

    The L2 radius it needs (:func:`threat_radius_l2`) goes to ``output.artifacts["threat_radius_l2"]``.
    When the certifier can never certify that far (``ceiling``, e.g. smoothing's
    :func:`~robench.certify.smoothing.max_certified_radius`), the headline is 0 by construction and a
    warning says so, and the record's condition holds ``certifiable: False``
    (:func:`robench.results.not_certifiable`: every summary writes it "n/a: not certifiable with these
    settings", with no interval): it measures the settings, not the model. The record itself keeps
    its value 0 and its interval.
    """
    needed = threat_radius_l2(threat, input_numel)
    if needed is None:
        return None
    assert threat.adversary is not None
    adversary = threat.adversary
    flags = correct & (radius >= needed)
    beyond = ceiling is not None and needed > ceiling
    headline = {**condition, "threat_norm": adversary.norm, "threat_eps": adversary.eps, **({"certifiable": False} if beyond else {})}
    output.records.append(MetricRecord.proportion(key, "certified_accuracy", int(flags.sum()), int(flags.numel()), headline))
    output.artifacts["threat_radius_l2"] = needed
    if ceiling is not None:
        output.artifacts["max_certified_radius"] = ceiling
        if beyond:
            implied = f"√{input_numel}·ε = {needed:.4g}" if adversary.norm == "Linf" else f"{needed:.4g}"
            output.warnings.append(
                f"{NOT_CERTIFIABLE}: the threat model's {adversary.norm} ε = {adversary.eps:.4g} needs a "
                f"certified L2 radius of {implied}, and no certificate can exceed {ceiling:.4g} with these parameters, so "
                f"certified accuracy at ε is 0 by construction; read the L2 curve instead (up to {ceiling:.4g})"
            )
    return flags


def add_acr(output: EvaluationOutput, key: str, radius: torch.Tensor, correct: torch.Tensor, condition: dict[str, ConditionValue]) -> float:
    """``average_certified_radius`` = mean of ``radius * 1[correct]`` over all examples."""
    value = float((radius.double() * correct.double()).mean()) if radius.numel() else 0.0
    output.records.append(
        MetricRecord(evaluation=key, name="average_certified_radius", value=value, n=int(radius.numel()), condition=condition, unit="l2")
    )
    return value
