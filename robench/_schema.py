"""Strict scalars for every pydantic model robench reads from a file (threat models, dataset
manifests, results.json): a ``true``/``false`` is not a number, and a number or a string is not
a ``true``/``false``.

pydantic's lax mode read YAML/JSON ``true`` as 1 in an ``int`` or ``float`` field (``steps: true``
ran one PGD step, a manifest's ``num_classes: true`` ...) and ``1``, ``"yes"``, ``"on"`` as true
in a ``bool`` field (``clean: "no"`` turned clean accuracy off). :class:`StrictScalars` checks each
field's annotation before pydantic converts the value; its subclasses (``threat_model.Schema``,
the manifest's and the results' models) keep their own configuration.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationInfo, field_validator

from robench._errors import short_repr


def takes_bool(annotation: Any) -> bool:
    """Whether a field of type ``annotation`` means a ``true``/``false`` as such: not an ``int``, a
    ``float`` or a ``Literal`` of numbers, which pydantic's lax mode reads it as 1 or 0."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return takes_bool(args[0])
    if annotation in (int, float, type(None)):
        return False
    if origin is Literal:
        return any(isinstance(arg, bool) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return any(takes_bool(arg) for arg in args)
    return True  # bool, str (which refuses it itself), Any, models (checked field by field), containers


def only_bool(annotation: Any) -> bool:
    """Whether ``annotation`` takes nothing but ``true``/``false`` (and ``None`` where optional): a
    ``bool``, ``bool | None``; pydantic's lax mode reads ``1``, ``"yes"``, ``"on"`` into it."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return only_bool(args[0])
    if annotation is bool:
        return True
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        return bool(members) and all(only_bool(arg) for arg in members)
    return False


def _items(annotation: Any, value: Any) -> Iterable[tuple[Any, Any]] | None:
    """``(annotation, value)`` of each item of a list, tuple or mapping ``value`` of a container type."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (tuple, list) and isinstance(value, (list, tuple)) and args:
        items = [args[0]] * len(value) if origin is list or args[-1] is Ellipsis else list(args)
        return zip(items, value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return ((args[1], item) for item in value.values())
    return None


def scalar_mismatch(annotation: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``annotation`` as a scalar, or ``None``: a ``true``/``false`` where
    a number is wanted, or anything else where only ``true``/``false`` is (also inside a list or a
    mapping: ``severities: [true]``). Other mismatches are left to pydantic."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return scalar_mismatch(args[0], value)
    if isinstance(value, bool):
        if not takes_bool(annotation):
            return f"expected a number, got the boolean {str(value).lower()}"
    elif value is not None and only_bool(annotation):
        return f"expected true or false, got {short_repr(value)}"
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, (list, tuple, dict)):
            return next((found for arg in args if (found := scalar_mismatch(arg, value)) is not None), None)
        return None
    pairs = _items(annotation, value)
    if pairs is None:
        return None
    return next((found for item, item_value in pairs if (found := scalar_mismatch(item, item_value)) is not None), None)


class StrictScalars(BaseModel):
    """A model whose fields take no ``true``/``false`` for a number and nothing but ``true``/``false``
    for a ``bool`` (see the module docstring); each error names the field, as pydantic's do."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        problem = None if field is None else scalar_mismatch(field.annotation, value)
        if problem is not None:
            raise ValueError(problem)
        return value


def error_message(error: Any) -> str:
    """The message of one of pydantic's errors (an item of ``ValidationError.errors()``) without the
    ``"Value error, "`` pydantic puts before a validator's own message."""
    return str(error["msg"]).removeprefix("Value error, ")
