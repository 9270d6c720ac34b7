"""Reading user-named files with a size cap that holds for pipes and devices too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robench._errors import ConfigError, RobenchError, first_line


def read_text_capped(path: Path, limit: int, what: str, error: type[RobenchError] = ConfigError) -> str:
    """The UTF-8 text of ``path``, at most ``limit`` bytes: the cap is checked on the bytes read, not
    on ``st_size`` (0 for ``/dev/zero``, a FIFO or ``<(...)``, which were read until memory ran out).

    Raises:
        ConfigError: (or ``error``) unreadable, a directory, larger than ``limit``, or not UTF-8.
    """
    if path.is_dir():
        raise error(f"{path}: is a directory, expected a {what}")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{path}: more than {limit} bytes; a {what} is at most {limit}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


def read_json_capped(path: Path, limit: int, what: str, error: type[RobenchError] = ConfigError) -> Any:
    """The JSON value in ``path``, read by :func:`read_text_capped`. Python's parser raises more than
    its ``JSONDecodeError``: a RecursionError on arrays nested some thousand deep, a ValueError on an
    integer of more than 4,300 digits; each is a one-line error here.

    Raises:
        ConfigError: (or ``error``) unreadable, a directory, larger than ``limit``, not UTF-8, not
            JSON, nested too deeply or holding an integer too long to read.
    """
    text = read_text_capped(path, limit, what, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON, line {exc.lineno}: {exc.msg}"
    except RecursionError:
        problem = "nested too deeply"
    except ValueError as exc:  # an integer of more than 4,300 digits
        problem = first_line(exc, 120)
    raise error(f"{path}: not a {what} ({problem})") from None
