"""The HTML audit report, rendered from results.json alone."""

from robench.report.render import render_html, render_report

__all__ = ["render_html", "render_report"]
