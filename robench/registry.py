"""One registry for every named, pluggable thing in robench.

Entries are registered by decorator next to their definition and looked up by ``(kind, name)``::

    @register("attack", "pgd", params=PGDParams)
    class PGD(Attack): ...

    registry.get("attack", "pgd")

Kinds: ``attack``, ``corruption``, ``perturbation``, ``certifier``, ``metric``, ``dataset``
(on-disk format loaders), ``arch`` (built-in architectures) and ``evaluation`` (the runner's
per-section evaluators: ``clean``, ``attacks``, ``corruptions``...). Unknown names raise a
:class:`~robench.ConfigError` with a "did you mean" hint; duplicate names raise at import.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from robench._errors import ConfigError

KINDS: tuple[str, ...] = (
    "attack",
    "corruption",
    "perturbation",
    "certifier",
    "metric",
    "dataset",
    "arch",
    "evaluation",
)

# Modules whose import fills the registry. Optional heavy dependencies are imported lazily
# inside the entries themselves, so importing these is cheap.
_BUILTIN_MODULES: tuple[str, ...] = (
    "robench.evaluations",
    "robench.attacks",
    "robench.corruptions",
    "robench.stability",
    "robench.calibration",
    "robench.certify",
    "robench.data",
    "robench.models",
)

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered object.

    Attributes:
        kind: One of :data:`KINDS`.
        name: Unique name within the kind.
        obj: The registered function or class.
        params: Pydantic model validating the entry's parameters (``None``: takes none).
        doc: First line of the object's docstring.
        tags: Free-form labels (e.g. ``("benchmark",)`` for the 15 benchmark corruptions).
    """

    kind: str
    name: str
    obj: Any
    params: type[BaseModel] | None = None
    doc: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def summary_line(doc: str | None) -> str:
    """The first paragraph of a docstring as plain text: lines joined, reStructuredText roles and
    literals unwrapped, references to other functions dropped (what ``robench ls`` prints)."""
    paragraph = " ".join(line.strip() for line in (doc or "").strip().split("\n\n", 1)[0].splitlines())
    paragraph = re.sub(r"\s*\(see :\w+:`[^`]+`\)", "", paragraph)
    paragraph = re.sub(r":\w+:`~?([^`]+)`", r"\1", paragraph)
    return paragraph.replace("``", "")


class Registry:
    """A mapping ``kind -> name -> Entry`` with helpful errors."""

    def __init__(self, kinds: tuple[str, ...] = KINDS) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in kinds}
        self._loaded = False

    def register(
        self,
        kind: str,
        name: str,
        *,
        params: type[BaseModel] | None = None,
        tags: tuple[str, ...] = (),
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` as ``(kind, name)``.

        Raises:
            ValueError: if the kind is unknown or the name is already taken (a programming error).
        """
        if kind not in self._entries:
            raise ValueError(f"Unknown registry kind {kind!r}; expected one of {sorted(self._entries)}")

        def decorator(obj: T) -> T:
            if name in self._entries[kind]:
                raise ValueError(f"Duplicate registration of {kind} {name!r}")
            self._entries[kind][name] = Entry(kind, name, obj, params, summary_line(getattr(obj, "__doc__", None)), tags)
            return obj

        return decorator

    def load_builtins(self) -> None:
        """Import robench's own modules so that their entries are registered."""
        if self._loaded:
            return
        self._loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)

    def entry(self, kind: str, name: str) -> Entry:
        """Return the entry ``(kind, name)``.

        Raises:
            ConfigError: if the kind or the name is unknown, with close matches.
        """
        self.load_builtins()
        if kind not in self._entries:
            raise ConfigError(f"unknown registry kind {kind!r}; expected one of {', '.join(self._entries)}")
        entries = self._entries[kind]
        if name not in entries:
            close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(entries)) or "none"
            raise ConfigError(f"unknown {kind} {name!r}{hint} (known: {known})")
        return entries[name]

    def get(self, kind: str, name: str) -> Any:
        """Return the registered object ``(kind, name)`` (see :meth:`entry`)."""
        return self.entry(kind, name).obj

    def names(self, kind: str, tag: str | None = None) -> list[str]:
        """Sorted names registered under ``kind`` (optionally only those carrying ``tag``)."""
        self.load_builtins()
        if kind not in self._entries:
            raise ConfigError(f"unknown registry kind {kind!r}; expected one of {', '.join(self._entries)}")
        return sorted(n for n, e in self._entries[kind].items() if tag is None or tag in e.tags)

    def entries(self, kind: str | None = None) -> list[Entry]:
        """All entries, or those of one kind, sorted by kind then name."""
        kinds = [kind] if kind is not None else list(self._entries)
        return [self.entry(k, n) for k in kinds for n in self.names(k)]

    def validate_params(self, kind: str, name: str, params: dict[str, Any]) -> BaseModel | None:
        """Validate ``params`` against the entry's parameter model.

        Raises:
            ConfigError: unknown name, or parameters given to an entry that takes none.
            pydantic.ValidationError: invalid parameters (the caller prefixes the field path).
        """
        entry = self.entry(kind, name)
        if entry.params is None:
            if params:
                raise ConfigError(f"{kind} {name!r} takes no parameters, but got {sorted(params)}")
            return None
        return entry.params.model_validate(params)


registry = Registry()
register = registry.register
