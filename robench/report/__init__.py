"""The HTML audit report, its best-practice checklist and the CSV/Markdown exports, rendered from
results.json alone."""

from robench.report.checklist import checklist
from robench.report.exports import write_exports
from robench.report.render import render_html, render_report

__all__ = ["checklist", "render_html", "render_report", "write_exports"]
