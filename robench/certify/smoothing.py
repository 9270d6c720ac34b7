"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): CERTIFY and PREDICT.

The smoothed classifier is ``g(x) = argmax_c P(f(x + e) = c)`` with ``e ~ N(0, sigma^2 I)`` in pixel
units. Its certificates hold for ``g``, not for the base classifier ``f``.

The statistics (:func:`certify_from_counts`, :func:`predict_from_counts`) are pure functions of
class counts; :class:`NoiseSampler` produces the counts. It fills every forward pass with noisy
copies of many images at once (``batch`` samples per pass), draws the noise on the model's device
from one generator per image, and keeps the counts on the device until the end, so the
throughput approaches that of bare forward passes of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from robench._errors import ConfigError, ModelError
from robench.stats import clopper_pearson_lower

ABSTAIN = -1


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer for one input.

    Attributes:
        prediction: The class ``cA`` chosen on the selection samples, or :data:`ABSTAIN`.
        radius: Certified L2 radius (0 when abstaining).
        count: ``nA``, estimation samples classified as ``cA``.
        n: Estimation samples.
        p_lower: One-sided ``(1 - alpha)`` Clopper-Pearson lower bound of ``P(f(x+e) = cA)``.
    """

    prediction: int
    radius: float
    count: int
    n: int
    p_lower: float


def certified_radius(p_lower: float, sigma: float) -> float:
    """``sigma * Phi^-1(p_lower)`` (Cohen et al. 2019, Theorem 1 with ``pB = 1 - pA``).

    Returns 0 for ``p_lower <= 0.5`` (no certificate).
    """
    from scipy.stats import norm

    return float(sigma * norm.ppf(p_lower)) if p_lower > 0.5 else 0.0


def max_certified_radius(n: int, alpha: float, sigma: float) -> float:
    """The largest radius CERTIFY can return with ``n`` estimation samples, ``sigma * Phi^-1(alpha^(1/n))``.

    It is reached when all ``n`` samples vote for ``cA``: the one-sided Clopper-Pearson bound of ``n``
    successes in ``n`` is ``B(alpha; n, 1) = alpha^(1/n)``. No example certifies beyond it, whatever
    the model (Cohen et al. 2019, section 3.2: "the maximum certifiable radius").
    """
    return certified_radius(clopper_pearson_lower(n, n, alpha), sigma)


CEILING_SHARE = 0.1
"""Share of the examples at the ceiling above which the ceiling warning is written."""
CAPPED = "capped by the Monte-Carlo budget"
"""How the ceiling warning starts."""
SUGGESTED_N = 100_000
"""Cohen et al.'s estimation budget, the one the ceiling warning suggests (10 n when n is already that large)."""


def at_ceiling(example: dict[str, Any], ceiling: float) -> bool:
    """Whether a certificate (one of smoothing's ``artifacts["examples"]``) sits at the ceiling
    :func:`max_certified_radius`: all ``n`` estimation samples voted for the certified class.

    Decided on the counts (``count == n``), which fix the radius exactly; an entry without them is at
    the ceiling when its radius equals it up to floating-point rounding. Abstentions never are, nor
    is an entry of a damaged file with neither counts nor a numeric radius (``robench export`` failed
    on it with a KeyError).
    """
    if example.get("prediction") == ABSTAIN or ceiling <= 0:
        return False
    count, n = example.get("count"), example.get("n")
    if isinstance(count, int) and isinstance(n, int) and n > 0:
        return count == n
    radius = example.get("radius")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)):
        return False
    return math.isclose(float(radius), ceiling, rel_tol=1e-9, abs_tol=1e-12)


def past_ceiling(radius: float, ceiling: float | None) -> bool:
    """Whether a radius lies beyond the ceiling :func:`max_certified_radius` (past its floating-point
    rounding): certified accuracy there is 0 for any model, by construction."""
    return ceiling is not None and radius > ceiling * (1 + 1e-9)


def capped_count(examples: list[Any], ceiling: float) -> int:
    """How many of smoothing's per-example records (entries that are not mappings are skipped) sit at
    the ceiling (:func:`at_ceiling`)."""
    return sum(isinstance(e, dict) and at_ceiling(e, ceiling) for e in examples)


def is_capped(capped: int, total: int) -> bool:
    """Whether the budget sets the curve: more than :data:`CEILING_SHARE` of ``total`` at the ceiling."""
    return total > 0 and capped > CEILING_SHARE * total


def ceiling_warning(capped: int, total: int, n: int, alpha: float, sigma: float) -> str | None:
    """The warning for a curve set by the Monte-Carlo budget (:func:`is_capped`: ``capped`` of the
    ``total`` certificates at the ceiling of ``n`` samples); ``None`` otherwise."""
    if not is_capped(capped, total):
        return None
    ceiling = max_certified_radius(n, alpha, sigma)
    more = SUGGESTED_N if n < SUGGESTED_N else 10 * n
    return (
        f"{CAPPED}: {capped} of {total} certificates ({capped / total:.0%}) sit at the ceiling "
        f"σ·Φ⁻¹(α^(1/n)) = {ceiling:.4g} (all n = {n:,} noise samples voted for the class), so the budget n, not the model, "
        f"sets the certified curve from {ceiling:.4g} on and the ACR (at most {ceiling:.4g}); n = {more:,} would raise the "
        f"ceiling to {max_certified_radius(more, alpha, sigma):.4g} at the same σ = {sigma:g} and α = {alpha:g}"
    )


def certify_from_counts(counts_selection: torch.Tensor, counts_estimation: torch.Tensor, alpha: float, sigma: float) -> Certificate:
    """CERTIFY (Cohen et al. 2019, Algorithm "certify") from the two sets of class counts.

    ``cA = argmax(counts_selection)`` (first maximum on ties, as numpy's argmax), ``nA =
    counts_estimation[cA]``, ``pA_lower = Beta.ppf(alpha; nA, n - nA + 1)``; abstain when
    ``pA_lower <= 0.5`` (the paper's rule: a class is returned only when ``pA_lower > 1/2``; the
    official code abstains only below 0.5, which certifies at radius 0 where ``pA`` may be a tie),
    else radius ``sigma * Phi^-1(pA_lower)``.

    Args:
        counts_selection: ``(K,)`` counts of the ``n0`` selection samples.
        counts_estimation: ``(K,)`` counts of the ``n`` estimation samples.
        alpha: Failure probability of the certificate.
        sigma: Noise standard deviation in pixel units.
    """
    selection = counts_selection.detach().cpu().long()
    estimation = counts_estimation.detach().cpu().long()
    top = int(torch.argmax(selection))
    n = int(estimation.sum())
    count = int(estimation[top])
    p_lower = clopper_pearson_lower(count, n, alpha)
    if p_lower <= 0.5:
        return Certificate(ABSTAIN, 0.0, count, n, p_lower)
    return Certificate(top, certified_radius(p_lower, sigma), count, n, p_lower)


def predict_from_counts(counts: torch.Tensor, alpha: float) -> tuple[int, float]:
    """PREDICT (Cohen et al. 2019): the top class unless a two-sided binomial test of the top two
    counts ``c1, c2`` against ``p = 1/2`` has p-value > ``alpha``.

    Returns:
        ``(prediction or ABSTAIN, p-value)``; the probability that a non-abstained prediction
        differs from ``g(x)`` is at most ``alpha``.
    """
    values, classes = torch.topk(counts.detach().cpu().long(), k=min(2, counts.numel()))
    first = int(values[0])
    second = int(values[1]) if values.numel() > 1 else 0
    if first + second == 0:
        return ABSTAIN, 1.0
    from scipy.stats import binomtest

    p_value = float(binomtest(first, first + second, 0.5).pvalue)
    return (int(classes[0]) if p_value <= alpha else ABSTAIN), p_value


def make_generators(seeds: torch.Tensor, device: torch.device) -> list[torch.Generator]:
    """One generator per example on ``device``, seeded from ``seeds`` (``(B,)`` int64).

    The CPU generator (mt19937) keeps only a seed's low 32 bits, so two of M examples share their noise
    with probability about M^2 / 2^33 (0.012 for 10,000): each certificate stays valid, only the
    independence of examples that the certified accuracy's interval assumes is touched (review of
    2026-12-04; drawing the seeds otherwise would change every recorded CPU stream).
    """
    generators = []
    for seed in seeds.tolist():
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
        generators.append(generator)
    return generators


class NoiseSampler:
    """Counts of ``f(x + e)`` over Gaussian noise for a batch of images, many images per pass.

    The ``B * num`` noisy samples of a batch are enumerated image after image and cut into
    chunks of ``batch`` samples; one chunk is one forward pass, whatever images it spans. Each
    image's noise comes from its own generator, so an image's counts depend only on its seed and
    on the chunking (the same for the same ``batch`` and batch of images).

    Args:
        forward: Pixel-space model returning logits (already in the wanted precision mode).
        num_classes: Number of classes ``K``.
        sigma: Noise standard deviation in pixel units.
        batch: Noisy samples per forward pass.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], num_classes: int, sigma: float, batch: int) -> None:
        if batch <= 0:
            raise ConfigError(f"Expected `batch` to be an integer > 0, but got {batch}")
        self.forward = forward
        self.num_classes = num_classes
        self.sigma = sigma
        self.batch = batch
        self.samples = 0

    @torch.no_grad()
    def counts(self, x: torch.Tensor, num: int, generators: list[torch.Generator]) -> torch.Tensor:
        """``(B, K)`` int64 counts (on ``x``'s device) of the classes of ``num`` noisy copies per image."""
        images = x.shape[0]
        total = images * num
        counts = torch.zeros(images * self.num_classes, dtype=torch.long, device=x.device)
        undefined = torch.zeros((), dtype=torch.long, device=x.device)  # noisy inputs with NaN logits, checked once at the end
        for start in range(0, total, self.batch):
            stop = min(start + self.batch, total)
            noise_parts, owners = [], []
            first, last = start // num, (stop - 1) // num
            for image in range(first, last + 1):
                lo, hi = max(start, image * num), min(stop, (image + 1) * num)
                noise_parts.append(
                    torch.randn((hi - lo, *x.shape[1:]), generator=generators[image], device=x.device, dtype=x.dtype)
                )
                owners.append(torch.full((hi - lo,), image, dtype=torch.long, device=x.device))
            owner = torch.cat(owners)
            noisy = x.index_select(0, owner) + self.sigma * torch.cat(noise_parts)
            logits = self.forward(noisy)
            if logits.ndim != 2 or logits.shape[1] != self.num_classes:
                # a wider output would count into the next image's slots (and index past the last)
                raise ModelError(f"smoothing: the model returned logits of shape {tuple(logits.shape)} for "
                                 f"{stop - start} inputs; expected ({stop - start}, {self.num_classes})")  # fmt: skip
            undefined += torch.isnan(logits).any(dim=1).sum()
            predictions = logits.argmax(dim=1)
            # index_add_, not bincount: CUDA's bincount reads the maximum back to the host every pass
            counts.index_add_(0, owner * self.num_classes + predictions, torch.ones_like(predictions))
            self.samples += stop - start
        _refuse_nan_votes(int(undefined), total, self.sigma)
        return counts.view(images, self.num_classes)


def _refuse_nan_votes(undefined: int, total: int, sigma: float) -> None:
    """Raises :class:`~robench.ModelError` when ``undefined`` of the ``total`` noisy inputs had NaN logits.

    ``argmax`` takes NaN for the maximum, so such a sample would vote for the class of its first NaN
    (class 0 when the whole row is NaN) and the certificate would be of that rule, not of the model:
    a model that is finite on [0, 1] but NaN on a negative pixel (a gamma curve ``x ** 0.5``) and
    predicts class 1 on every finite input was certified class 0 at radius 0.2. Infinite logits are
    kept: their argmax is the model's answer.
    """
    if undefined:
        raise ModelError(
            f"smoothing: the model returned NaN logits for {undefined:,} of {total:,} noisy inputs (sigma = {sigma:g}, "
            "noise not clipped to [0, 1]); their argmax is no class of the model, so no certificate is given"
        )


def cohen_reference_counts(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, num: int, sigma: float, batch: int, num_classes: int
) -> torch.Tensor:
    """A straightforward Cohen-style loop for one image: ``batch`` copies per pass, counts on the host.

    The baseline of ``benchmarks/bench_certify.py`` (the official code's ``_sample_noise`` logic,
    restated): one image at a time, global RNG, a device-to-host copy per pass.
    """
    counts = torch.zeros(num_classes, dtype=torch.long)
    remaining = num
    with torch.no_grad():
        while remaining > 0:
            size = min(batch, remaining)
            remaining -= size
            copies = x.unsqueeze(0).repeat(size, *([1] * x.ndim))
            predictions = forward(copies + torch.randn_like(copies) * sigma).argmax(1).cpu()
            counts += torch.bincount(predictions, minlength=num_classes)
    return counts


def radius_grid(max_radius: float, step: float = 0.25) -> tuple[float, ...]:
    """``0, step, 2 step, ...`` up to ``max_radius`` (inclusive), the grid of Cohen et al.'s tables."""
    count = int(math.floor(max_radius / step + 1e-9))
    return tuple(round(i * step, 10) for i in range(count + 1))

