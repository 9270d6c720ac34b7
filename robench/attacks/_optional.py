"""Optional third-party attack libraries, imported on first use with a clear error when absent."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from types import ModuleType

import torch

from robench._errors import UnavailableError

# Import name -> (distribution, robench extra) for the error message.
_PACKAGES = {
    "pyautoattack": ("pyautoattack", "autoattack"),
    "foolbox": ("foolbox", "foolbox"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` (``pyautoattack``, ``foolbox`` or a submodule of one).

    Raises:
        UnavailableError: the package is not installed, naming the pip command that installs it.
    """
    top = module.split(".")[0]
    distribution, extra = _PACKAGES.get(top, (top, top))
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UnavailableError(
            f"this attack needs the optional package {distribution!r} ({exc.msg}); "
            f"install it with `pip install robench[{extra}]` or `pip install {distribution}`"
        ) from None


def library_seed(generator: torch.Generator) -> int:
    """A seed for a library that seeds torch's global RNG itself (pyautoattack, foolbox), drawn from
    a batch's generator."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Restore torch's global RNG state afterwards (pyautoattack and foolbox reseed it)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


class LogCapture(logging.Handler):
    """Collects the records of one logger (pyautoattack logs its results at DEBUG on ``auto-attack``)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.lines.append(f"{record.levelname}: {message}")
        if record.levelno >= logging.WARNING:
            self.warnings.append(message)


@contextlib.contextmanager
def capture_log(name: str) -> Iterator[LogCapture]:
    """Attach a :class:`LogCapture` to logger ``name`` at DEBUG for the duration of the block."""
    logger = logging.getLogger(name)
    handler = LogCapture()
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
