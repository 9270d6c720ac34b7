"""Reading user-named files with a size cap that holds for pipes and devices too."""

from __future__ import annotations

from pathlib import Path

from robench._errors import ConfigError


def read_text_capped(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of ``path``, at most ``limit`` bytes: the cap is checked on the bytes read, not
    on ``st_size`` (0 for ``/dev/zero``, a FIFO or ``<(...)``, which were read until memory ran out).

    Raises:
        ConfigError: unreadable, a directory, larger than ``limit``, or not UTF-8.
    """
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a {what}")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: more than {limit} bytes; a {what} is at most {limit}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
