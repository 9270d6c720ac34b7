"""Square Attack (Andriushchenko et al. 2020), score-based black-box, through ``pyautoattack``."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from robench._errors import ConfigError
from robench.attacks._optional import isolated_rng, library_seed, require
from robench.attacks.base import UNFOOLED_AT_CLEAN, Attack
from robench.attacks.losses import margin
from robench.attacks.norms import Norm
from robench.registry import register
from robench.threat_model import Adversary, Schema


class SquareParams(Schema):
    """Parameters of :class:`Square`."""

    n_queries: int = Field(default=5000, gt=0, le=10_000_000, description="queries per restart")
    restarts: int = Field(default=1, ge=1, le=100)
    p_init: float = Field(default=0.8, gt=0, le=1, description="initial share of pixels changed")


@register("attack", "square", params=SquareParams, tags=("score-based", "black-box"))
class Square(Attack):
    """Square Attack: random square updates accepted when the margin loss improves (scores only).

    The square-size schedule of ``p`` is rescaled to the query budget (``it * 10000 / n_queries``),
    as in the authors' code and pyautoattack's default; AutoAttack's own Square keeps the 5,000-query
    schedule unscaled, which at a smaller budget would leave the squares large and the attack weak.
    """

    def __init__(self, *, n_queries: int = 5000, restarts: int = 1, p_init: float = 0.8) -> None:
        self.n_queries = n_queries
        self.restarts = restarts
        self.p_init = p_init

    @staticmethod
    def check_threat(params: SquareParams | None, adversary: Adversary | None) -> None:
        """Raises :class:`~robench.ConfigError` for a norm other than Linf/L2 or bounds other than [0, 1]."""
        if adversary is not None:
            _check(adversary.norm, adversary.bounds)

    def run(self, model, x, y, *, norm: Norm, eps, bounds, target, generator):
        _check(norm.name, bounds)
        square = require("pyautoattack.square")
        seed = library_seed(generator) if generator is not None else 0
        attack = square.SquareAttack(
            model, p_init=self.p_init, n_queries=self.n_queries, eps=eps, norm=norm.name, n_restarts=self.restarts,
            seed=seed, verbose=False, device=x.device, resc_schedule=True,
        )  # fmt: skip
        if target is not None:
            attack.loss, attack.targeted = "ce", True
        with isolated_rng(x.device), torch.no_grad():
            if self.attacks_every_example:
                return self._every_example(model, attack, x, y if target is None else target, target, seed)
            if target is not None:
                return attack.perturb(x, target)
            return attack.perturb(x, y)

    def for_randomized_model(self) -> Square:
        self.attacks_every_example = True
        return self

    def procedure(self, eps: float) -> dict[str, Any]:
        return {
            "step_size": None,
            "step_size_rule": f"no gradient step: random square updates, a share of pixels from p_init {self.p_init:g} down, "
                              f"schedule rescaled to {self.n_queries:,} queries",
            "random_start": True, "restarts": self.restarts, "early_stopping": True,
            "early_stopping_rule": "an example is no longer queried once fooled (pyautoattack's Square)",
            "unfooled_at": "its final point of highest margin loss (randomized model)" if self.attacks_every_example
            else f"{UNFOOLED_AT_CLEAN} (pyautoattack's Square returns an example it did not fool unperturbed)",
        }  # fmt: skip

    def _every_example(self, model, attack, x, wanted, target, seed: int) -> torch.Tensor:
        """Every example's final point of every restart, the one of highest margin kept (a
        randomized model). ``perturb`` attacks only the examples one pass classifies right and
        returns ``x`` wherever one pass at the attack's point does: both verdicts are draws."""
        attack.init_hyperparam(x)
        torch.random.manual_seed(seed)  # as perturb does (the caller isolates the RNG)
        torch.cuda.random.manual_seed(seed)
        best, best_score = x.clone(), torch.full((len(x),), -torch.inf, device=x.device)
        for _ in range(self.restarts):
            _, candidate = attack.attack_single_run(x, wanted)
            score = margin(model(candidate).float(), wanted, target)
            better = score > best_score
            best[better], best_score[better] = candidate[better], score[better]
        return best


def _check(norm: str, bounds: tuple[float, float]) -> None:
    if norm not in ("Linf", "L2"):
        raise ConfigError(f"square supports the Linf and L2 norms, not {norm}")
    if tuple(bounds) != (0.0, 1.0):
        raise ConfigError(f"square works in the bounds [0, 1], got {list(bounds)}")
