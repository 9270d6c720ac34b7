"""Fixtures shared by the report tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The matplotlib figures the sections draw, kept open instead of rendered (closed afterwards)."""
    import matplotlib.pyplot as plt

    from robench.report import plots
    from robench.report.sections import attacks, calibration, certification, corruptions

    drawn: list[Any] = []

    def keep(fig: Any, dpi: int = 110) -> str:
        drawn.append(fig)
        return "data:image/png;base64,"

    for module in (attacks, calibration, certification, corruptions, plots):
        monkeypatch.setattr(module, "figure_data_uri", keep)
    yield drawn
    for fig in drawn:
        plt.close(fig)
