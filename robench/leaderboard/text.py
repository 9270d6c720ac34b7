"""Rows of strings for comparisons, shared by the CLI tables, the Markdown export and the report."""

from __future__ import annotations

from robench.leaderboard.compare import BoardComparison
from robench.leaderboard.runs import RunComparison, RunDelta
from robench.results import MetricRecord, Results, signed_difference

Table = tuple[tuple[str, ...], list[tuple[str, ...]]]
# Units that MetricRecord.formatted shows in percent (proportions and probabilities such as the ECE).
PERCENT_UNITS = frozenset({"fraction", "probability"})


def percent(value: float | None, digits: int = 1) -> str:
    """``0.5953`` -> ``59.5%``; ``None`` -> ``–``."""
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def points(value: float | None, digits: int = 2) -> str:
    """A difference of fractions in signed percentage points: ``+1.2 pp``."""
    return "–" if value is None else f"{100 * value:+.{digits}f} pp"


def with_interval(record: MetricRecord | None, results: Results | None = None) -> str:
    """``59.5% [58.5, 60.5]`` (:meth:`MetricRecord.formatted`; with the run's ``results``,
    :meth:`Results.formatted`, whose artifacts give the radii of a value not certifiable by
    construction); ``–`` without a record."""
    if record is None or record.value is None:
        return "–"
    return " ".join(part for part in (record.formatted() if results is None else results.formatted(record)) if part)


def _flag(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


def board_table(comparison: BoardComparison) -> Table:
    """The run and its nearest published neighbours on one board."""
    metric = "corruption acc." if comparison.metric == "mean_corruption_accuracy" else "robust acc."
    header = ("entry", "rank among compared entries and this run", "clean acc.", metric, "Δ clean", "Δ " + metric.split()[0], "outside run's 95% CI (clean / " + metric.split()[0] + ")")
    total = comparison.n_entries + 1
    rank = f"{comparison.rank}/{total}" if comparison.rank else "–"
    if comparison.rank and comparison.rank_range and comparison.rank_range[0] != comparison.rank_range[1]:
        rank += f" (95% CI: {comparison.rank_range[0]}-{comparison.rank_range[1]})"
    rows: list[tuple[str, ...]] = [("this run", rank, with_interval(comparison.clean),
             with_interval(comparison.robust), "", "", "")]  # fmt: skip
    shown: set[str] = set()
    for n in comparison.neighbours:
        e = n.entry
        if e.id in shown:  # the best entry is often also the nearest one
            continue
        shown.add(e.id)
        flags = "" if e.robust_source != "external" else " (external eval.)"
        rows.append((
            f"{n.role}: {e.id}{' [unreliable]' if e.unreliable else ''}", str(n.rank), percent(e.clean_accuracy),
            percent(e.robust_accuracy) + flags, points(n.delta_clean), points(n.delta_robust),
            f"{_flag(n.clean_outside_ci)} / {_flag(n.robust_outside_ci)}",
        ))  # fmt: skip
    return header, rows


def runs_table(comparison: RunComparison) -> Table:
    """Headline metrics of two runs with ``b - a`` and whether the intervals are disjoint."""
    header = ("metric", comparison.a_name, comparison.b_name, "Δ (b − a)", "95% CIs disjoint", "McNemar p (right only in a vs b)")
    rows: list[tuple[str, ...]] = []
    for d in comparison.deltas:
        unit = (d.a or d.b).unit if (d.a or d.b) is not None else ""  # type: ignore[union-attr]
        # every unit MetricRecord.formatted shows in percent differs in percentage points
        values = [r.value for r in (d.a, d.b) if r is not None]
        delta = points(d.delta) if unit in PERCENT_UNITS else ("–" if d.delta is None else signed_difference(d.delta, *values))
        rows.append((d.label, with_interval(d.a), with_interval(d.b), delta, _flag(d.outside), _paired_text(d)))
    return header, rows


def _paired_text(delta: RunDelta) -> str:
    """``p = 0.003 (12 vs 40)``: the exact McNemar p-value and the examples right in one run only."""
    if delta.paired_p is None or delta.discordant is None:
        return "–"
    p = delta.paired_p
    shown = "< 0.0001" if p < 1e-4 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"
    return f"p {'' if shown.startswith('<') else '= '}{shown} ({delta.discordant[0]} vs {delta.discordant[1]})"
