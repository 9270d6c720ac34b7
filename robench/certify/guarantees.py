"""When a certifier's settings give up its guarantee.

One rule for the run's warning, the report's certification section and the checklist, which read
it from the recorded parameters (so results written before the rule get it too). IBP and CROWN
are sound for the float model only when their margins clear the allowance for its rounding, and
CROWN only when its own arithmetic is float64 (its float32 backward products sum over fan-outs,
which the allowance for the model's rounding does not follow); Lipschitz radii are guaranteed only
with the convolution norms' upper bounds (a model without convolutions has exact norms under
either method). Randomized smoothing is probabilistic by design (each certificate is wrong with
probability at most alpha), which its method text states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def unproven(certifier: str, params: Mapping[str, Any], estimated: Sequence[str] | None = None) -> str | None:
    """Why the certificate of ``certifier`` with the recorded ``params`` is not guaranteed, or ``None``.

    Every reason that applies is given (joined by "; "), so that fixing one setting does not
    reveal another on the next run. Parameters missing from older results take the value those
    results were computed with: no ``rounding`` (before the allowance) is no allowance, and a
    CROWN without ``precision`` bounded in the model's float32.

    Args:
        certifier: The certifier's registered name.
        params: Its parameters as the run resolved them.
        estimated: Lipschitz only: the layers whose norms were power-iteration estimates (the
            convolutions under ``method: power``); ``None`` when not recorded (older results),
            taken as some.
    """
    reasons = []
    if certifier in ("ibp", "crown") and params.get("rounding", False) is not True:
        reasons.append(
            "rounding: false: the margins need not clear a bound on the float model's own rounding, so the verdicts "
            "hold in real arithmetic, not for the model as it computes (not a guaranteed certificate)"
        )
    if certifier == "crown" and params.get("precision", "model") != "float64":
        reasons.append(
            "precision: model: CROWN's own float32 rounding is not bounded (its backward products sum over fan-outs, "
            "which the allowance for the model's rounding does not follow), so the verdicts are not proven sound; "
            "precision: float64 (the default) bounds it"
        )
    if certifier == "lipschitz" and params.get("method") == "power" and (estimated is None or len(estimated) > 0):
        reasons.append(
            "method: power: the convolution norms are power-iteration estimates times (1 + power_margin), not upper "
            "bounds, so the certified radii are not guaranteed; method: bound gives guaranteed ones"
        )
    return "; ".join(reasons) or None
