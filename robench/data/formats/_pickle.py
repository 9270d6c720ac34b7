"""A restricted unpickler for the CIFAR python batches.

The official CIFAR-10/100 "python version" files are pickles written by Python 2's cPickle: dicts
of byte strings, lists of ints and numpy arrays. Unpickling runs arbitrary callables named in the
stream, so this unpickler resolves only the globals needed to rebuild those objects: the builtins
dict/list/bytes/str/int and numpy's array reconstruction. Anything else raises :class:`DataError`
before it is called.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from robench._errors import DataError


def _numpy_global(submodule: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; old pickles (all official CIFAR files) name the former.
    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


_ALLOWED: dict[tuple[str, str], Any] = {
    **{(module, name): obj for module in ("builtins", "__builtin__")
       for name, obj in (("dict", dict), ("list", list), ("bytes", bytes), ("str", str), ("int", int))},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 pickles of bytes at protocol <= 2 rebuild them as _codecs.encode(text, "latin1").
    ("_codecs", "encode"): codecs.encode,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _numpy_global("multiarray", "_reconstruct")
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _numpy_global("numeric", "_frombuffer")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle: Any, path: Path) -> None:
        super().__init__(handle, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refused to unpickle {module}.{name}; a CIFAR batch holds only dicts, lists, "
                "bytes, str, int and numpy arrays (the file is not an official batch, or was tampered with)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._path}: refused a persistent id in the pickle; not an official CIFAR batch")


def load_restricted_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only builtin containers/scalars and numpy arrays.

    Byte-string keys (``b"data"``) are decoded, so both Python 2 and Python 3 pickles give ``str`` keys.

    Raises:
        DataError: the file is missing, unreadable, not a pickle, or names a forbidden global.
    """
    try:
        with path.open("rb") as handle:
            obj = _RestrictedUnpickler(handle, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file missing") from None
    except (
        OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
        OverflowError, LookupError, MemoryError, RecursionError,
    ) as exc:  # fmt: skip
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        obj = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in obj.items()}
    return obj
