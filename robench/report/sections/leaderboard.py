"""Leaderboard comparison: rank among published RobustBench entries of the same setting."""

from __future__ import annotations

from typing import Any

from robench._errors import ConfigError
from robench.leaderboard import DEFAULT_SNAPSHOT, BoardComparison, Neighbour, board_table, compare_to_leaderboard, load_snapshot
from robench.results import Results


def _unique(comparison: BoardComparison) -> list[Neighbour]:
    """Neighbours without repeats (the best entry is often the nearest one too)."""
    seen: set[str] = set()
    unique = []
    for n in comparison.neighbours:
        if n.entry.id not in seen:
            seen.add(n.entry.id)
            unique.append(n)
    return unique


def build(results: Results) -> dict[str, Any]:
    """Comparisons with every matching board of the shipped snapshot; always a dict, with ``reason``
    saying why there is nothing to compare when there is not."""
    try:
        snapshot = load_snapshot(DEFAULT_SNAPSHOT)
    except ConfigError as exc:
        return {"comparisons": [], "source": {}, "reason": f"no leaderboard snapshot is available ({exc})"}
    comparisons = compare_to_leaderboard(results, snapshot)
    dataset = results.dataset.manifest or (results.threat_model.get("dataset") or {}).get("manifest")
    adversary = results.threat_model.get("adversary") or {}
    setting = f"{dataset}" + (f", {adversary.get('norm')}" if adversary else "")
    boards = ", ".join(sorted(snapshot.boards))
    return {
        "source": snapshot.source,
        "comparisons": [{"comparison": c, "table": board_table(c), "entries": _unique(c)} for c in comparisons],
        "reason": None if comparisons else _no_comparison_reason(results, setting, boards),
    }


def _no_comparison_reason(results: Results, setting: str, boards: str) -> str:
    """Why the run is compared with no board."""
    attacked = any(e.section == "attacks" and e.status == "success" for e in results.evaluations)
    if results.threat_model.get("adversary") and not attacked:
        return (
            f"no attack ran, and the adversarial boards rank AutoAttack accuracies: certified or clean numbers are "
            f"not comparable with them (setting {setting}; boards in the snapshot: {boards})"
        )
    return f"no published board matches this setting ({setting}); boards in the snapshot: {boards}"
