"""The one-line detail of an exception that robench's errors carry."""

from __future__ import annotations

import torch

from robench._errors import first_line


def test_first_line_skips_blank_lines_and_falls_back_to_the_type() -> None:
    # str(exc).splitlines()[0] raised IndexError on an empty message and gave "" on a leading newline
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(RuntimeError("\n  \n  the detail  \nmore")) == "the detail"
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10


def test_first_line_of_a_torchscript_failure_is_its_error() -> None:
    @torch.jit.script
    def fails(x: torch.Tensor) -> torch.Tensor:
        return x @ x

    try:
        fails(torch.ones(2, 3))
    except RuntimeError as exc:
        assert str(exc).startswith("The following operation failed in the TorchScript interpreter")
        assert first_line(exc).startswith("mat1 and mat2 shapes cannot be multiplied")
    else:  # pragma: no cover
        raise AssertionError("the scripted function should fail")
