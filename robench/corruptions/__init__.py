"""Common corruptions of Hendrycks & Dietterich (ICLR 2019) as batched torch functions.

Every corruption is registered as ``("corruption", name)`` with tags ``benchmark`` or ``extra``
plus its group (``noise``, ``blur``, ``weather``, ``digital``), and has the signature
``fn(x, severity, table, generator) -> x_corrupted`` on ``(N, C, H, W)`` floats in [0, 1] on any
device. Importing this package registers the corruptions and the ``corruptions`` evaluation::

    from robench.corruptions import resolve_table
    from robench.registry import registry
    table = resolve_table("auto", image_size=32)
    out = registry.get("corruption", "fog")(x, 3, table, torch.Generator().manual_seed(0))
"""

from robench.corruptions import blur, digital, noise, sweep, weather  # noqa: F401  (registration; sweep: of the evaluation)
from robench.corruptions._base import GROUPS
from robench.corruptions.params import CIFAR10_TABLE, IMAGENET_TABLE, TABLES, TINYIMAGENET_TABLE, CorruptionTable, resolve_table

__all__ = ["CIFAR10_TABLE", "GROUPS", "IMAGENET_TABLE", "TABLES", "TINYIMAGENET_TABLE", "CorruptionTable", "resolve_table"]

from robench.corruptions.metrics import corruption_error, relative_corruption_error
from robench.registry import registry as _registry

_registry.register("metric", "corruption_error", tags=("corruptions",))(corruption_error)
_registry.register("metric", "relative_corruption_error", tags=("corruptions",))(relative_corruption_error)
