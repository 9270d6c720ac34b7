"""Certification: randomized smoothing, interval bound propagation, CROWN, Lipschitz bounds.

Importing this package registers the certifiers (kind ``certifier``: ``smoothing``, ``ibp``,
``crown``, ``lipschitz``) and the ``certification`` section evaluator. CROWN's functions live in
:mod:`robench.certify.crown` (their names parallel IBP's).
"""

from robench.certify import certifiers as _certifiers  # noqa: F401  (registers the certifiers)
from robench.certify import crown
from robench.certify import evaluate as _evaluate  # noqa: F401  (registers the section)
from robench.certify.ibp import Box, input_box, interval_bounds, margin_lower_bounds, verified
from robench.certify.lipschitz import certified_l2_radius, lipschitz_bound
from robench.certify.smoothing import ABSTAIN, Certificate, certify_from_counts, predict_from_counts

__all__ = [
    "ABSTAIN", "Box", "Certificate", "certified_l2_radius", "certify_from_counts", "crown", "input_box", "interval_bounds",
    "lipschitz_bound", "margin_lower_bounds", "predict_from_counts", "verified",
]  # fmt: skip
