"""Section evaluators that belong to no single subpackage (clean accuracy)."""

from robench.evaluations import clean as _clean  # noqa: F401
