"""Machine-readable exports of a run: a flat CSV of every metric record and a Markdown summary.

The CSV has one row per :class:`~robench.results.MetricRecord`, fixed columns first, then one
``condition.<key>`` column per condition key found in the run (sorted), so that it loads straight
into a data frame. Its ``note`` column says where a value does not mean what its name says: a
certified accuracy that is 0 by construction (:func:`robench.results.not_certifiable`: its interval
is no sampling uncertainty) and an average certified radius capped by the Monte-Carlo budget
(:func:`robench.results.capped_note`), as the report writes them. The Markdown summary (for a paper appendix or a pull request) holds the setting,
the best-practice checklist, the headline numbers with 95% intervals, the leaderboard comparison
and the cost.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from robench._errors import ConfigError
from robench.report._labels import summary_label
from robench.report.checklist import checklist, code_recorded
from robench.report.render import CARD_CAVEAT, headline, rendered_by, summary_records
from robench.results import Results, atomic_write_text, capped_note, not_certifiable
from robench.threat_model import format_eps

CSV_COLUMNS = ("threat_model", "model_sha256", "section", "evaluation", "name", "value", "n", "ci_low", "ci_high",
               "interval", "unit", "note")  # fmt: skip
CSV_NAME = "metrics.csv"
MARKDOWN_NAME = "summary.md"


def _cell(value: object) -> str:
    return "" if value is None else (repr(value) if isinstance(value, float) else str(value))


def records_csv(results: Results) -> str:
    """Every metric record of the run as CSV text (see the module docstring for the columns)."""
    sections = {e.key: e.section for e in results.evaluations}
    keys = sorted({k for r in results.records() for k in r.condition})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"condition.{k}" for k in keys)])
    for e in results.evaluations:
        for r in e.records:
            note = not_certifiable(r, e.artifacts) or capped_note(r, e.artifacts)
            row = [results.threat_model.get("name"), results.model.sha256, sections.get(r.evaluation, e.section), r.evaluation,
                   r.name, r.value, r.n, r.ci_low, r.ci_high, r.interval, r.unit, note]  # fmt: skip
            writer.writerow([_cell(v) for v in row] + [_cell(r.condition.get(k)) for k in keys])
    return buffer.getvalue()


def _md(text: object) -> str:
    """A Markdown table cell: pipes escaped, no line breaks, HTML tags neutralised."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown_summary(results: Results, with_leaderboard: bool = True) -> str:
    """A Markdown summary of the run (setting, checklist, headline numbers, leaderboard, cost)."""
    from robench.leaderboard.text import with_interval

    adversary = results.threat_model.get("adversary") or {}
    threat = (
        f"{adversary['goal']} {adversary['knowledge']} adversary, {adversary['norm']} eps {format_eps(float(adversary['eps']))}"
        if adversary
        else "no adversary (natural shift / certification)"
    )
    lines = [f"## Robustness audit: `{_md(results.threat_model.get('name'))}`", ""]
    lines += _table(
        ("", ""),
        [
            ("Model", f"`{results.model.source}` ({results.model.format}{', ' + results.model.arch if results.model.arch else ''})"),
            ("Checkpoint sha256", f"`{results.model.sha256 or 'none (in-memory module)'}`"),
            *([("Checkpoint provenance", provenance)] if (provenance := results.model.provenance_text()) else []),
            ("Dataset", (f"{results.dataset.manifest} {results.dataset.split}, n = {results.dataset.n_examples}; checked against the manifest: "
                         f"{results.dataset.verified}; {results.dataset.checksums()}")),
            ("Threat model", f"{threat} (sha256 `{results.threat_model_sha256}`)"),
            ("Code", f"{code_recorded(results.environment)}; summary written by {rendered_by()}"),
            ("Run", f"status {results.status}, seed {results.seed}, {results.environment.device} {results.environment.device_name}".rstrip()),
        ],
    )  # fmt: skip
    lines += ["### Best-practice checklist", ""]
    items = checklist(results)
    lines += _table(("item", "verdict", "evidence"), [(i.title, f"**{i.status}**", i.evidence) for i in items])
    lines += ["### Headline numbers (95% intervals; method per metric in metrics.csv)", ""]
    lines += _table(("metric", "value [95% CI]", "n"), [(summary_label(r, results), with_interval(r, results), "" if r.n is None else str(r.n)) for r in summary_records(results)])
    top = headline(results, items)
    if top["robust"] is not None:
        lines += [f"Robust accuracy from attacks: {CARD_CAVEAT}." + (f" {top['bracket']}" if top["bracket"] else ""), ""]
    if with_leaderboard:
        lines += _leaderboard_lines(results)
    lines += ["### Cost", ""]
    lines += _table(
        ("evaluation", "status", "wall time (s)", "forward passes", "backward passes", "device"),
        [(e.key, e.status, f"{e.cost.wall_time_s:.1f}", f"{e.cost.forward_passes:,}", f"{e.cost.backward_passes:,}", e.cost.device) for e in results.evaluations],
    )  # fmt: skip
    warnings = [f"{e.key}: {w}" for e in results.evaluations for w in e.warnings]
    if warnings:
        lines += ["### Warnings", ""] + [f"- {_md(w)}" for w in warnings] + [""]
    return "\n".join(lines)


def _leaderboard_lines(results: Results) -> list[str]:
    from robench.leaderboard import board_table, compare_to_leaderboard, load_snapshot

    try:
        snapshot = load_snapshot()
    except ConfigError:
        return []
    lines = []
    for comparison in compare_to_leaderboard(results, snapshot):
        at = f" at eps {comparison.eps}" if comparison.eps else ""
        lines += [f"### Leaderboard: {comparison.board}{at}, rank {comparison.rank or '–'} of {comparison.n_entries + 1}", ""]
        lines += _table(*board_table(comparison))
        lines += [f"- {_md(note)}" for note in comparison.notes] + ([""] if comparison.notes else [])
    return lines


def write_exports(results: Results, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.csv`` and ``summary.md`` into ``out_dir`` (atomically); return their paths."""
    out = Path(out_dir)
    return {
        "csv": atomic_write_text(out / CSV_NAME, records_csv(results)),
        "markdown": atomic_write_text(out / MARKDOWN_NAME, markdown_summary(results)),
    }
