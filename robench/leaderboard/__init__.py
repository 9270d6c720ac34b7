"""Published leaderboard baselines (a shipped RobustBench snapshot) and comparisons between runs."""

from robench.leaderboard.compare import BoardComparison, Neighbour, compare_to_leaderboard
from robench.leaderboard.runs import RunComparison, RunDelta, compare_runs
from robench.leaderboard.snapshot import DEFAULT_SNAPSHOT, Board, Entry, Snapshot, build_snapshot, load_snapshot, sync_snapshot
from robench.leaderboard.text import board_table, runs_table

__all__ = [
    "DEFAULT_SNAPSHOT",
    "Board",
    "BoardComparison",
    "Entry",
    "Neighbour",
    "RunComparison",
    "RunDelta",
    "Snapshot",
    "board_table",
    "build_snapshot",
    "compare_runs",
    "compare_to_leaderboard",
    "load_snapshot",
    "runs_table",
    "sync_snapshot",
]
