"""Coverage of the calibration metrics' 95% intervals, by simulation; writes docs/calibration_intervals.md.

Synthetic K-class models with known truth: logits ``4 * N(0, I)``, labels drawn from
``softmax(logits / T)`` and the model scored at ``softmax(logits)``. At ``T = 1`` every class
probability is calibrated, so the true ECE, adaptive ECE, classwise ECE and MCE are exactly 0; at
``T = 2`` the model is over-confident and the truth is taken from one sample of 4,000,000 (its own
estimation error is about 0.001). For each setting, ``--trials`` independent test sets of ``n``
examples; the table gives how often each interval holds the truth, for robench's intervals
(:func:`robench.calibration.bootstrap.bootstrap_intervals`) and for the percentile bootstrap of the
plug-in estimate that robench used before (quantiles 2.5% and 97.5% of the resampled metric).

Usage: ``python scripts/calibration_interval_coverage.py [--trials 100] [--out docs/calibration_intervals.md]``
(a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

import torch

from robench.calibration import calibration_metrics
from robench.calibration import functional as F
from robench.calibration.bootstrap import DEFAULT_RESAMPLES, bootstrap_draws, bootstrap_intervals

METRICS = ("ece", "adaptive_ece", "classwise_ece", "mce")
K, BINS, RESAMPLES = 10, 15, DEFAULT_RESAMPLES  # robench's default


CONFIDENT = "confident"
"""The third model: top confidence ``0.1 + 0.9 Beta(50, 1)`` (mean 0.98), correct with probability
``confidence - 0.03`` (3 points over-confident), the other classes sharing the rest evenly. Its errors
are rare: a small test set often has none in the top bins, which the bootstrap cannot see."""


def sample(n: int, temperature: float | str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probs float32, labels)`` of the synthetic model (see the module's docstring), or of the
    :data:`CONFIDENT` one."""
    gen = torch.Generator().manual_seed(seed)
    if temperature == CONFIDENT:
        top = 0.1 + 0.9 * torch.rand(n, generator=gen, dtype=torch.float64) ** (1 / 50)  # Beta(50, 1) by its inverse CDF
        correct = torch.rand(n, generator=gen, dtype=torch.float64) < (top - 0.03).clamp(0, 1)
        probs = ((1 - top) / (K - 1))[:, None].repeat(1, K)
        probs[:, 0] = top
        labels = torch.where(correct, 0, torch.randint(1, K, (n,), generator=gen))
        return probs.float(), labels
    logits = torch.randn(n, K, generator=gen, dtype=torch.float64) * 4
    labels = torch.multinomial((logits / temperature).softmax(1), 1, replacement=True, generator=gen).squeeze(1)
    return logits.softmax(1).float(), labels


def percentile_intervals(probs: torch.Tensor, labels: torch.Tensor, seed: int) -> dict[str, tuple[float, float]]:
    """The former intervals: the 2.5% and 97.5% quantiles of the metric recomputed on each resample
    (all resamples at once: a resample is its multiplicity weights, so its per-bin sums are one
    matrix product; the adaptive ECE re-bins every resample, batched)."""
    n = len(labels)
    draws = bootstrap_draws(n, RESAMPLES, torch.Generator().manual_seed(seed))
    weights = torch.zeros(RESAMPLES, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones(RESAMPLES, n, dtype=torch.float64))
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).double()
    onehot = torch.nn.functional.one_hot(F.bin_index(confidence, BINS), BINS).double()
    counts, gaps = weights @ onehot, (weights * (correct - confidence.double())) @ onehot
    cells = (F.bin_index(probs, BINS) + BINS * torch.arange(K)).reshape(n, K)
    contributions = torch.zeros(n, K * BINS, dtype=torch.float64).scatter_(1, cells, torch.nn.functional.one_hot(labels, K).double() - probs.double())
    values = {
        "ece": gaps.abs().sum(1) / n,
        "mce": torch.where(counts > 0, gaps.abs() / counts.clamp(min=1), torch.zeros_like(gaps)).amax(1),
        "adaptive_ece": F._adaptive_values(confidence[draws], correct[draws], BINS),
        "classwise_ece": (weights @ contributions).abs().sum(1) / (n * K),
    }
    levels = torch.tensor([0.025, 0.975], dtype=torch.float64)
    return {m: tuple(torch.quantile(v, levels).tolist()) for m, v in values.items()}  # type: ignore[misc]


def truth(temperature: float | str) -> dict[str, float]:
    if temperature == 1.0:
        return {m: 0.0 for m in METRICS}
    probs, labels = sample(4_000_000, temperature, 12345)
    if temperature == CONFIDENT:  # class 0 is always the top class, right with probability top - 0.03: every bin's gap is 0.03
        # (exactly; a sample's MCE would be the noise of its sparsest bins, 14 draws in (0.73, 0.8] of 4,000,000)
        return {"ece": 0.03, "classwise_ece": F.classwise_calibration_error(probs, labels, BINS), "mce": 0.03}
    return {
        "ece": F.expected_calibration_error(probs, labels, BINS),
        "classwise_ece": F.classwise_calibration_error(probs, labels, BINS),
        "mce": F.max_calibration_error(probs, labels, BINS),
    }  # adaptive ECE: its bins depend on the sample, no single truth at T != 1


def _model(temperature: float | str) -> str:
    return temperature if isinstance(temperature, str) else f"T = {temperature:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "calibration_intervals.md"))
    args = parser.parse_args()
    rows = []
    notes: list[str] = []
    for temperature, sizes in ((1.0, (50, 200, 1000, 10000)), (2.0, (50, 200, 1000, 10000)), (CONFIDENT, (30, 100, 1000))):
        true = truth(temperature)
        for n in sizes:
            hits = {m: 0 for m in true}
            naive_hits = {m: 0 for m in true}
            widths = {m: 0.0 for m in true}
            estimates = {m: 0.0 for m in true}
            trivial = {m: 0 for m in true}
            for trial in range(args.trials):
                probs, labels = sample(n, temperature, 1000 * n + trial + (7 if temperature == CONFIDENT else int(100 * temperature)))
                ours = bootstrap_intervals(probs, labels, BINS, torch.Generator().manual_seed(trial))
                metrics = calibration_metrics(probs, labels, BINS)
                naive = percentile_intervals(probs, labels, trial)
                for m, value in true.items():
                    # no MCE interval when no bin holds the minimum count (small n): the trivial [0, 1], counted
                    low, high = ours[m] if ours[m] is not None else (0.0, 1.0)
                    trivial[m] += ours[m] is None
                    hits[m] += low <= value <= high
                    widths[m] += (high - low) / args.trials
                    estimate = getattr(metrics, m)
                    estimates[m] += (0.0 if estimate != estimate else estimate) / args.trials  # NaN: no bin to take it over
                    naive_hits[m] += naive[m][0] <= value <= naive[m][1]
            for m, value in true.items():
                rows.append((temperature, n, m, value, estimates[m], naive_hits[m] / args.trials, hits[m] / args.trials, widths[m]))
                if trivial[m]:
                    print(f"{_model(temperature)} n={n} {m}: no interval in {trivial[m]} of {args.trials} test sets (taken as [0, 1])", flush=True)
                    notes.append(f"{m} at {_model(temperature)}, n = {n:,}: no bin of {F.DEFAULT_MCE_MIN_COUNT} examples in "
                                 f"{trivial[m]} of {args.trials} test sets, whose interval is taken as [0, 1] and MCE as 0")
            print(f"{_model(temperature)} n={n} done", flush=True)
    lines = [
        "# Coverage of the calibration metrics' 95% intervals",
        "",
        "Produced by `python scripts/calibration_interval_coverage.py` "
        f"({datetime.date.today().isoformat()}, {platform.machine()}, torch {torch.__version__}). "
        f"Synthetic {K}-class models, {BINS} bins, {RESAMPLES} resamples; T = 1: calibrated (every true error is 0); "
        "T = 2: over-confident, truth from 4,000,000 draws; confident: top confidence 0.1 + 0.9 Beta(50, 1) (mean 0.98), "
        "3 points over-confident in every bin (ECE and MCE exactly 0.03; classwise ECE from 4,000,000 draws), rare errors. Coverage = share of test sets whose interval holds "
        f"the truth ({args.trials} test sets per row).",
        "",
        "The plug-in binned errors are biased upwards, and the percentile bootstrap inherits the bias: its interval "
        "almost never holds a calibrated model's true error of 0. robench's intervals bound the estimate's error "
        "instead (ECE, adaptive and classwise ECE: a bootstrap bound on the deviation of the per-bin gaps, from 0 "
        "when simultaneous exact intervals of the cells' frequencies are consistent with a calibrated model, its upper end "
        "raised by an exact bound on how far the cells whose examples all hit or all missed, which no resample changes, "
        "may be from their observed frequencies, pooled over them: about 3 / n; MCE: "
        f"simultaneous exact intervals of the accuracies of the bins of at least {F.DEFAULT_MCE_MIN_COUNT} examples, the bins "
        "the MCE is taken over); see `robench/calibration/bootstrap.py`.",
        "",
        "| model | n | metric | true value | mean estimate | coverage, percentile bootstrap (before) | coverage, robench | mean width, robench |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for temperature, n, m, value, estimate, naive, ours, width in rows:
        lines.append(f"| {_model(temperature)} | {n:,} | {m} | {value:.4f} | {estimate:.4f} | {naive:.0%} | {ours:.0%} | {width:.4f} |")
    short = [f"{m} at {_model(t)}, n = {n:,} ({ours:.0%})" for t, n, m, _, _, _, ours, _ in rows if ours < 0.9]
    if notes:
        lines += ["", "No MCE: " + "; ".join(notes) + "."]
    lines += ["", "Below 90% (beyond the simulation's own error of about 2 points): " + ("; ".join(short) if short else "none") + "."]
    lines.append(
        "Without the exact lower bound, the bootstrap bound alone covered a calibrated model's 0 in 83% of test sets "
        "(classwise ECE, n = 1,000, this table's previous version), and in another simulation (confidences uniform "
        "on [0.2, 1]) in 86% (ECE) and 46% (classwise ECE) at n = 50: sparse class x bin cells, where a cell without "
        "an example of its class cannot gain one in a resample. Without the room for unseen outcomes, the confident "
        "model's ECE was covered in 81% of 300 test sets of 30 examples (a review's simulation, 2026-12-04): 30 correct "
        "examples in the top bin resample to the same gap. That room costs width at small n (ECE at T = 1, n = 50: 0.32 before, "
        "0.40 now; 0.077 and 0.078 at n = 1,000)."
    )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
