"""Error types. Every error a user can cause is a :class:`RobenchError`.

The CLI turns a ``RobenchError`` into one line on stderr and exit code 2; anything else
is a bug in robench and is reported as such.
"""

from __future__ import annotations

import re


class RobenchError(Exception):
    """Base class of all errors caused by input (files, options, models, data)."""


class ConfigError(RobenchError):
    """A threat model, option or parameter is invalid."""


class DataError(RobenchError):
    """A dataset file is missing, malformed or does not match its manifest."""


class CheckpointError(RobenchError):
    """A checkpoint cannot be loaded safely or does not fit the architecture."""


class ModelError(RobenchError):
    """The model misbehaves at run time (NaN outputs, wrong number of classes, ...)."""


class JournalError(RobenchError):
    """A resume journal is corrupt or belongs to a different run."""


class UnavailableError(RobenchError):
    """An evaluation needs an optional package or a device that is not present."""


class ResourceError(RobenchError):
    """The run cannot fit the machine (out of memory even at the smallest batch)."""


def short_repr(value: object, limit: int = 40) -> str:
    """``repr(value)`` for a one-line error: cut to half of ``limit`` (and ``...``) when longer."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit // 2] + "..."


def message(exc: BaseException) -> str:
    """``str(exc)``, or the exception type's name when that is empty or fails: a model's exception
    whose ``__str__`` raises left its evaluation at status "started" (the error about the error
    escaped the handler that records it)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - the model's own exception class can do anything in __str__
        return type(exc).__name__
    return text or type(exc).__name__


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an exception's message (at most ``limit`` characters), or its
    type's name when the message is empty: the detail a one-line error carries. A failure inside
    TorchScript code opens with a fixed preamble and its traceback; its last line is the error."""
    lines = [line.strip() for line in message(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        lines = [re.sub(r"^\w+(Error|Exception): ", "", lines[-1])]  # "RuntimeError: ...", its type said once
    return (lines[0] if lines else type(exc).__name__)[:limit]
