"""Attacks (registry kind ``attack``) and the ``attacks`` evaluation section."""

from robench.attacks import evaluate as _evaluate  # noqa: F401  (registers the section)
from robench.attacks.base import Attack, AttackResult, is_success
from robench.attacks.norms import NORMS, L1Norm, L2Norm, LinfNorm, Norm, get_norm
from robench.attacks.pgd import FGSM, PGD

__all__ = ["FGSM", "NORMS", "PGD", "Attack", "AttackResult", "L1Norm", "L2Norm", "LinfNorm", "Norm", "get_norm", "is_success"]
