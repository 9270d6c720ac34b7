"""Attacks (registry kind ``attack``) and the ``attacks`` evaluation section.

Optional packages: ``autoattack`` and ``square`` need ``pyautoattack``; ``fmn``, ``ddn``,
``hop_skip_jump`` and ``boundary`` need ``foolbox``. They are imported on first use.
"""

from robench.attacks import autoattack as _autoattack  # noqa: F401  (registers autoattack)
from robench.attacks import evaluate as _evaluate  # noqa: F401  (registers the section)
from robench.attacks import foolbox_attacks as _foolbox_attacks  # noqa: F401  (fmn, ddn, hop_skip_jump, boundary)
from robench.attacks import masking_checks as _masking_checks  # noqa: F401  (gradient_masking)
from robench.attacks.base import Attack, AttackResult, is_success
from robench.attacks.norms import NORMS, L1Norm, L2Norm, LinfNorm, Norm, get_norm
from robench.attacks.pgd import FGSM, PGD
from robench.attacks.square import Square

__all__ = [
    "FGSM", "NORMS", "PGD", "Attack", "AttackResult", "L1Norm", "L2Norm", "LinfNorm", "Norm", "Square",
    "get_norm", "is_success",
]  # fmt: skip
