"""Robust accuracy over an iterative attack's run: evidence that the attack converged.

Carlini et al. (2019, "On evaluating adversarial robustness", sec. 5) ask that an evaluation show
robust accuracy against the number of attack iterations: a curve still falling at the end of the
budget says the attack had not converged and the number is an overestimate. An attack that tracks
it (:attr:`robench.attacks.base.Attack.last_progress`) gives, per example, the iteration at which it
first found it fooled; :func:`curve` turns that into the step function of robust accuracy after
``t`` iterations of the same run (a shorter attack would differ: PGD's step size scales with its
step count).
"""

from __future__ import annotations

from typing import Any

import torch


def curve(
    first_fooled: torch.Tensor,
    correct: torch.Tensor,
    robust: torch.Tensor,
    *,
    budget: int,
    unit: str,
    restart_every: int | None = None,
    first_restart: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The robust-accuracy-vs-iterations step function of one attack run, as a results artifact.

    The attack's own bookkeeping is reconciled with the final verdict (robench's re-check of the
    returned point, which decides robust accuracy): an example the verdict calls robust was never
    fooled; one it calls fooled that the bookkeeping missed counts as fooled at the end of the budget.
    So the curve ends at the recorded robust accuracy.

    Args:
        first_fooled: Per example, the iteration it was first seen fooled (``inf``: never).
        correct: Clean-correct flags (the curve counts these only: robust accuracy counts clean errors as failures).
        robust: Final robust flags.
        budget: Iterations over the whole run (all restarts).
        unit: What an iteration is (``gradient steps``).
        restart_every: Iterations per restart, where the attack restarts.
        first_restart: Per example, the restart that first saw it fooled (-1: never), where the
            attack restarts: a break at a restart's random start is then its own, not the previous
            restart's last iterate's (both come after the same number of gradient steps).

    Returns:
        ``{"unit", "budget", "n", "n_correct", "restart_every", "iterations", "robust"}``: ``robust[i]``
        examples are robust after ``t`` iterations for ``iterations[i] <= t < iterations[i + 1]``
        (``iterations[0] == 0``: the attack's starting point, its random start for PGD). With
        ``first_restart``, also ``restart_breaks`` (per restart, the examples it broke first, its
        random start included) and ``last_breaks`` (per restart, the step within it of its last
        break, 0 for its random start; ``None`` where it broke none).
    """
    first = first_fooled.detach().double().cpu()
    correct = correct.detach().bool().cpu()
    robust = robust.detach().bool().cpu()
    if not first.shape == correct.shape == robust.shape or first.ndim != 1:
        raise ValueError(f"curve needs three (N,) tensors, got {tuple(first.shape)}, {tuple(correct.shape)}, {tuple(robust.shape)}")
    fooled_at = torch.where(first.isinf(), float(budget), first.clamp(0, budget))  # by the verdict, at least by the end
    first = torch.where(robust, torch.inf, fooled_at)
    times = first[correct]
    changes = sorted({0, *(int(t) for t in times[times.isfinite()].tolist())})
    counts = [int((times > t).sum()) for t in changes]
    out: dict[str, Any] = {
        "unit": unit,
        "budget": int(budget),
        "n": int(correct.numel()),
        "n_correct": int(correct.sum()),
        "restart_every": restart_every,
        "iterations": changes,
        "robust": counts,
    }
    if restart_every and first_restart is not None:
        if first_restart.shape != first.shape:
            raise ValueError(f"first_restart has shape {tuple(first_restart.shape)}, the others {tuple(first.shape)}")
        restarts = -(-int(budget) // int(restart_every))
        broken = correct & first.isfinite()
        # one the bookkeeping missed (the verdict's fooled) counts at the end of the budget: the last restart's
        restart = torch.where(first_fooled.detach().cpu().isinf(), restarts - 1, first_restart.detach().long().cpu())
        restart = restart.clamp(0, restarts - 1)
        within = first - restart.double() * restart_every
        out["restart_breaks"] = [int((broken & (restart == k)).sum()) for k in range(restarts)]
        out["last_breaks"] = [int(within[broken & (restart == k)].max()) if (broken & (restart == k)).any() else None for k in range(restarts)]
    return out


MAX_RESTARTS = 1000
"""The most restarts an attack that records its progress runs (PGD's ``restarts``; Square's are at most 100):
:func:`progress` refuses an artifact that claims more."""


def robust_after(artifact: dict[str, Any], iterations: float) -> int:
    """Examples still robust after ``iterations`` of the run the artifact records."""
    count = artifact["n_correct"]
    for start, value in zip(artifact["iterations"], artifact["robust"]):
        if start > iterations:
            break
        count = value
    return int(count)


def progress(artifact: dict[str, Any]) -> dict[str, Any]:
    """What the end of the run added, read off the artifact (the convergence check and the report's
    table): ``end`` (robust after the whole budget), ``tail_steps`` (the last tenth of a restart's
    steps, of the run's without restarts, at least one), ``broken_in_tail`` (examples first fooled
    in them), ``broken_by_last_restart`` (by the last restart's steps; ``None`` without restarts)
    and ``last_breaks`` (per restart, the step within it of its last break, ``None`` where it broke
    none; ``[]`` without restarts), and ``robust_after_restart`` (per restart, examples robust at its
    end, before the next one's random start; ``[]`` without restarts).

    A break at a restart's random start comes after as many gradient steps as the previous restart's
    last iterate; an artifact with ``restart_breaks`` (:func:`curve` given ``first_restart``) gives
    it to its own restart, an older one to the previous restart."""
    budget, every = int(artifact["budget"]), artifact.get("restart_every")
    if every and budget > MAX_RESTARTS * every:  # a damaged file: the loops per restart ran for hours
        raise ValueError(f"a budget of {budget} in restarts of {every} is more than the {MAX_RESTARTS} restarts any attack runs")
    end = robust_after(artifact, budget)
    tail_steps = max(1, (every or budget) // 10)
    last_breaks: list[int | None] = []
    robust_after_restart: list[int] = []
    last_restart = None
    if every and "restart_breaks" in artifact:
        last_breaks = list(artifact["last_breaks"])
        for broken in artifact["restart_breaks"]:
            robust_after_restart.append((robust_after_restart[-1] if robust_after_restart else artifact["n_correct"]) - broken)
        last_restart = int(artifact["restart_breaks"][-1])
    elif every:
        changes = [t for t, before, after in zip(artifact["iterations"][1:], artifact["robust"], artifact["robust"][1:]) if after < before]
        for start in range(0, budget, every):
            inside = [t - start for t in changes if start < t <= start + every]
            last_breaks.append(max(inside) if inside else None)
            robust_after_restart.append(robust_after(artifact, start + every))
        last_restart = robust_after(artifact, budget - every) - end
    return {
        "end": end,
        "tail_steps": tail_steps,
        "broken_in_tail": robust_after(artifact, budget - tail_steps) - end,
        "broken_by_last_restart": last_restart,
        "last_breaks": last_breaks,
        "robust_after_restart": robust_after_restart,
    }


__all__ = ["curve", "progress", "robust_after"]
