"""On-disk format loaders (registry kind ``dataset``). Importing this package registers them.

A loader is ``fn(manifest, root, split, spec) -> Dataset``; those tagged ``resizable`` honour the
threat model's ``resize``/``center_crop``.
"""

from robench.data.formats import arrays as _arrays  # noqa: F401
from robench.data.formats import cifar as _cifar  # noqa: F401
from robench.data.formats import folders as _folders  # noqa: F401
