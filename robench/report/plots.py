"""Figures for the report: matplotlib (Agg) rendered to inline PNG data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first

# Okabe & Ito's colour-blind-safe palette (Wong, Nature Methods 2011), black last; lines also differ
# in marker and dash so that they stay apart in grey print and for every colour vision.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES: tuple[str, ...] = ("-", "--", "-.", ":")


def line_style(index: int) -> dict[str, Any]:
    """Colour, marker and dash of the ``index``-th line of a figure (no two of the first 32 are alike)."""
    return {
        "color": PALETTE[index % len(PALETTE)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": DASHES[(index // len(PALETTE)) % len(DASHES)],
    }


def figure_data_uri(fig: Any, dpi: int = 110) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,...`` URI and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float = 6.0, height: float = 3.6) -> tuple[Any, Any]:
    """A figure with one axes in the report's style."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def interval_bars(labels: list[str], values: list[float], lows: list[float], highs: list[float], ylabel: str) -> str:
    """Bar chart of proportions with their 95% intervals as error bars."""
    fig, ax = new_figure(max(4.0, 0.7 * len(labels) + 2), 3.4)
    errors = [[v - lo for v, lo in zip(values, lows)], [hi - v for v, hi in zip(values, highs)]]
    ax.bar(labels, values, yerr=errors, capsize=4, color=PALETTE[0])
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)
    return figure_data_uri(fig)
