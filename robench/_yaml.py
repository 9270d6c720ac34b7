"""The YAML robench reads (threat models, dataset manifests): safe, without aliases or duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml

from robench._errors import first_line


class StrictLoader(yaml.SafeLoader):
    """Safe YAML without anchors/aliases (they buy nothing here and enable expansion bombs) and
    without duplicated keys (YAML keeps the last one silently: ``eps: 0.1`` then ``eps: 0.9`` ran
    at 0.9)."""

    what = "these files"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"YAML aliases are not allowed in {self.what}", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicated key {key!r} (YAML would keep only the last one)", key_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)


def where_and_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    """``("line L, column C: ", problem)`` of a YAML error, for one-line messages (``""`` when it
    carries no position)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where, getattr(exc, "problem", None) or first_line(exc)


def load(text: str | bytes, what: str) -> Any:
    """Parse ``text`` with :class:`StrictLoader`; ``what`` names the kind of file in its errors.

    Raises:
        yaml.YAMLError: malformed YAML, an alias or a duplicated key.
        RecursionError: nesting too deep.
    """
    loader = type("Loader", (StrictLoader,), {"what": what})
    return yaml.load(text, Loader=loader)  # a SafeLoader subclass
