"""On-disk format loaders (registry kind ``dataset``). Importing this package registers them."""

from robench.data.formats import arrays as _arrays  # noqa: F401
