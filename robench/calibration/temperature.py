"""Temperature scaling (Guo et al., ICML 2017, Sec. 4.2): one scalar ``T > 0`` dividing the logits.

``T`` minimises the mean negative log-likelihood ``-(1/N) sum_i log softmax(z_i / T)_{y_i}`` on
held-out examples. As a function of ``1/T`` this NLL is convex (log-sum-exp of functions linear in
``1/T`` minus a linear term), hence unimodal in ``log T``; a bounded Brent search over ``log T``
finds its minimum deterministically, without learning rates or random starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robench._errors import ConfigError

LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the held-out NLL before and after."""

    temperature: float
    nll_before: float
    nll_after: float
    n: int
    at_bound: bool
    identifiable: bool = True


def logits_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities, usable as logits (softmax is invariant to a per-row constant).

    Zero probabilities are clamped to the smallest normal number of the dtype first.
    """
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


def _check_finite(logits: torch.Tensor) -> None:
    """NaN or +inf logits would make the NLL NaN, and scipy's bounded search returns a temperature
    anyway; ``-inf`` (a log-probability of 0) is a valid logit."""
    if logits.is_floating_point() and bool((logits.isnan() | (logits == math.inf)).any()):
        raise ConfigError("Expected finite logits (or -inf log-probabilities) for temperature scaling, but got NaN or +inf.")


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> TemperatureFit:
    """Fit ``T`` by minimising the NLL of ``softmax(logits / T)`` over ``log T`` in [log 0.01, log 100].

    Args:
        logits: ``(N, K)`` logits or log-probabilities of the held-out examples.
        labels: ``(N,)`` true classes.

    Returns:
        The fit; ``at_bound`` is true when the optimum hit the search bounds; ``identifiable`` is
        false when every example is classified correctly: the NLL then falls monotonically as
        ``T -> 0`` (each term ``log(1 + sum_j exp((z_j - z_y) / T))`` with ``z_j < z_y``), so it has
        no minimiser and the search only stops where float64 rounds the NLL to a constant.

    Raises:
        ConfigError: empty or mismatched inputs.
    """
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ConfigError(
            f"Expected `logits` (N, K) and `labels` (N,), but got shapes {list(logits.shape)} and {list(labels.shape)}."
        )
    if logits.shape[0] == 0:
        raise ConfigError("Expected at least one held-out example to fit the temperature, but got 0.")
    _check_finite(logits)
    from scipy.optimize import minimize_scalar

    logits = logits.detach().double().cpu()
    labels = labels.detach().long().cpu()
    result = minimize_scalar(
        lambda log_t: _nll(logits, labels, math.exp(log_t)),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-7},
    )
    log_t = float(result.x)
    temperature = math.exp(log_t)
    at_bound = min(abs(log_t - LOG_T_BOUNDS[0]), abs(log_t - LOG_T_BOUNDS[1])) < 1e-3
    identifiable = not bool((logits.argmax(dim=1) == labels).all())
    return TemperatureFit(
        temperature, _nll(logits, labels, 1.0), _nll(logits, labels, temperature), int(labels.numel()), at_bound, identifiable
    )


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities ``softmax(logits / T)``.

    Raises:
        ConfigError: ``T`` not a finite number > 0.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"Expected `temperature` to be a finite number > 0, but got {temperature!r}.")
    _check_finite(logits)
    return (logits.double() / temperature).softmax(dim=1).to(logits.dtype if logits.is_floating_point() else torch.float32)
