"""A compact, versioned snapshot of published RobustBench results, built from a ``model_info`` folder.

RobustBench keeps one JSON file per model under ``model_info/<dataset>/<threat>/<ModelName>.json``
with accuracies stored as strings of percentages (``"59.53"``). ``sync_snapshot`` turns such a
folder into one JSON file with fractions, the source path, the upstream commit (when the folder's
README names one), the date and the number of entries; robench ships that snapshot and never reads
the network.

How RobustBench ranks (``robustbench/utils.py`` ``ACC_FIELDS``, leaderboard template): Linf and L2
boards by ``external`` when present, else ``autoattack_acc``; corruption boards by ``corruptions_acc``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from robench._errors import ConfigError, DataError, short_repr
from robench._io import read_json_capped
from robench.results import atomic_write_text
from robench.threat_model import parse_eps

SNAPSHOT_SCHEMA_VERSION = 1
DEFAULT_SNAPSHOT = Path(__file__).resolve().parents[1] / "data_manifests" / "leaderboards" / "robustbench.json"
BOARD_THREATS = ("Linf", "L2", "corruptions")
# RobustBench footnotes of entries evaluated at another radius than their `eps` field, e.g.
# "Uses \\(\\ell_{\\infty} \\) = 0.031 \u2248 7.9/255 instead of 8/255." (shared/leaderboards/README.md)
_OTHER_EPS_RE = re.compile(r"=\s*([0-9]*\.[0-9]+)[^=]*?\binstead of\s+([0-9.]+(?:/[0-9]+)?)")
_COMMIT_RE = re.compile(r"Commit:\s*`?([0-9a-f]{40})`?(?:\s*\(([0-9]{4}-[0-9]{2}-[0-9]{2})[^)]*\))?")


@dataclass(frozen=True)
class Entry:
    """One published model on one board; accuracies are fractions.

    Attributes:
        id: RobustBench model id (the file name), e.g. ``Wang2023Better_WRN-70-16``.
        name: Paper title.
        venue: Venue and date as published.
        architecture: Free-text architecture.
        additional_data: Whether training used extra (real or generated) data.
        clean_accuracy: Clean accuracy on the board's test points.
        robust_accuracy: The ranked number: ``external`` if present, else ``autoattack_acc``
            (adversarial boards), or ``corruptions_acc`` (corruption boards).
        robust_source: ``external``, ``autoattack`` or ``corruptions``.
        autoattack_accuracy: Standard AutoAttack robust accuracy (adversarial boards).
        reported_accuracy: What the paper reports, when known.
        eps: The radius as published (``"8/255"``), ``None`` on corruption boards.
        eps_value: The radius the entry was evaluated at, as a number: ``eps``, or the one its
            footnote names instead (``"Uses l_inf = 0.031 ... instead of 8/255"``).
        eps_note: Why ``eps_value`` is not ``eps`` (empty when it is).
        unreliable: RobustBench's flag: the AutoAttack number is known to overestimate robustness.
        forward_passes: Forward passes per prediction (ensembles, mixtures > 1).
        link: Paper URL.
    """

    id: str
    name: str
    venue: str
    architecture: str
    additional_data: bool
    clean_accuracy: float | None
    robust_accuracy: float | None
    robust_source: str
    autoattack_accuracy: float | None = None
    reported_accuracy: float | None = None
    eps: str | None = None
    eps_value: float | None = None
    eps_note: str = ""
    unreliable: bool = False
    forward_passes: int = 1
    link: str = ""


@dataclass(frozen=True)
class Board:
    """The entries of one dataset and threat (``cifar10/Linf``), best first."""

    dataset: str
    threat: str
    metric: str
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """``<dataset>/<threat>``."""
        return f"{self.dataset}/{self.threat}"


@dataclass(frozen=True)
class Snapshot:
    """A leaderboard snapshot: boards plus where and when it came from."""

    source: dict[str, Any]
    boards: dict[str, Board]

    @property
    def count(self) -> int:
        """Number of entries over all boards."""
        return sum(len(b.entries) for b in self.boards.values())


def _percent(value: Any, where: str) -> float | None:
    """``"59.53"`` -> ``0.5953``; blank, ``null`` and ``"null"`` -> ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none", "n/a")):
        return None
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
    except OverflowError:  # a JSON integer beyond a float (10**400): float() raised it past the range check
        raise DataError(f"{where}: percentage {short_repr(value)} is outside [0, 100]") from None
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected a percentage such as '59.53', got {short_repr(value)}") from None
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise DataError(f"{where}: percentage {short_repr(value)} is outside [0, 100]")
    return round(number / 100, 6)


def _count(value: Any, where: str) -> int:
    """A positive whole number (forward passes per prediction); missing -> 1."""
    if value is None or value == "":
        return 1
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"{where}: expected a whole number, got {short_repr(value)}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond a float (10**400)
        raise DataError(f"{where}: expected a whole number >= 1 that a float holds, got {short_repr(value)}") from None
    except ValueError:
        raise DataError(f"{where}: expected a whole number, got {short_repr(value)}") from None
    if not math.isfinite(number) or number < 1 or number != int(number):
        raise DataError(f"{where}: expected a whole number >= 1, got {short_repr(value)}")
    return int(number)


MAX_MODEL_INFO_BYTES = 1 << 20
"""Largest RobustBench model_info file read (theirs are about 1 kB; a link to /dev/zero is endless)."""

MAX_SNAPSHOT_BYTES = 1 << 26
"""Largest leaderboard snapshot read (the shipped one is about 120 kB)."""


def _entry(path: Path, threat: str) -> Entry:
    info = read_json_capped(path, MAX_MODEL_INFO_BYTES, "model_info JSON file", DataError)
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(info).__name__}")
    where = str(path)
    eps_note = ""
    clean = _percent(info.get("clean_acc"), f"{where}: clean_acc")
    if threat == "corruptions":
        robust, source, autoattack, eps, eps_value = _percent(info.get("corruptions_acc"), f"{where}: corruptions_acc"), "corruptions", None, None, None
    else:
        autoattack = _percent(info.get("autoattack_acc"), f"{where}: autoattack_acc")
        external = _percent(info.get("external"), f"{where}: external")
        robust, source = (external, "external") if external is not None else (autoattack, "autoattack")
        eps = None if info.get("eps") is None else str(info["eps"])
        try:
            eps_value = parse_eps(eps) if eps is not None else None
        except ValueError as exc:
            raise DataError(f"{where}: eps: {exc}") from None
        other = _OTHER_EPS_RE.search(str(info.get("footnote") or ""))
        try:
            instead = parse_eps(other.group(2)) if other else None
        except ValueError:
            instead = None  # a footnote naming no readable radius says nothing about this one
        if other and instead is not None and eps_value is not None and math.isclose(instead, eps_value) and float(other.group(1)) != eps_value:
            eps_value, eps_note = float(other.group(1)), f"its footnote: evaluated at {other.group(1)} instead of {other.group(2)}"
    return Entry(
        id=path.stem,
        name=str(info.get("name") or ""),
        venue=re.sub(r"<br\s*/?>", " ", str(info.get("venue") or "")).strip(),
        architecture=str(info.get("architecture") or ""),
        additional_data=bool(info.get("additional_data", False)),
        clean_accuracy=clean,
        robust_accuracy=robust,
        robust_source=source,
        autoattack_accuracy=autoattack,
        reported_accuracy=_percent(info.get("reported"), f"{where}: reported"),
        eps=eps,
        eps_value=eps_value,
        eps_note=eps_note,
        unreliable=bool(info.get("unreliable", False)),
        forward_passes=_count(info.get("number_forward_passes"), f"{where}: number_forward_passes"),
        link=str(info.get("link") or ""),
    )


def _ranked(entries: list[Entry]) -> tuple[Entry, ...]:
    """Best first by the ranked number (missing numbers last), ties by id for a stable order."""
    return tuple(sorted(entries, key=lambda e: (e.robust_accuracy is None, -(e.robust_accuracy or 0.0), e.id)))


def read_model_info(folder: str | Path) -> dict[str, Board]:
    """Read every ``<dataset>/<threat>/<Model>.json`` of a RobustBench ``model_info`` folder.

    Raises:
        ConfigError: the folder does not exist or holds no ``<dataset>/<threat>`` board.
        DataError: a file is not valid JSON or holds a malformed number.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; expected a RobustBench model_info folder (<dataset>/<threat>/*.json)")
    boards: dict[str, Board] = {}
    for dataset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for threat_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir() and p.name in BOARD_THREATS):
            entries = [_entry(path, threat_dir.name) for path in sorted(threat_dir.glob("*.json"))]
            if entries:
                metric = "mean_corruption_accuracy" if threat_dir.name == "corruptions" else "robust_accuracy"
                board = Board(dataset_dir.name, threat_dir.name, metric, _ranked(entries))
                boards[board.key] = board
    if not boards:
        raise ConfigError(f"{root}: no <dataset>/<{'|'.join(BOARD_THREATS)}>/*.json files; is this a RobustBench model_info folder?")
    return boards


def _upstream(root: Path) -> dict[str, str]:
    """The upstream commit and its date, when a README next to or inside the folder names them."""
    for readme in (root / "README.md", root.parent / "README.md"):
        if readme.is_file():
            match = _COMMIT_RE.search(readme.read_text(encoding="utf-8", errors="replace"))
            if match:
                found = {"repository": "https://github.com/RobustBench/robustbench", "commit": match.group(1)}
                if match.group(2):
                    found["commit_date"] = match.group(2)
                return found
    return {}


def build_snapshot(folder: str | Path, synced_on: date | None = None) -> Snapshot:
    """A :class:`Snapshot` of a ``model_info`` folder (see :func:`read_model_info`)."""
    root = Path(folder)
    boards = read_model_info(root)
    source = {
        "name": "RobustBench model_info",
        "path": str(folder),
        **_upstream(root),
        "synced_on": (synced_on or date.today()).isoformat(),
        "citation": "Croce et al., RobustBench: a standardized adversarial robustness benchmark, NeurIPS 2021 Datasets and Benchmarks",
    }
    return Snapshot(source=source, boards=boards)


def snapshot_to_json(snapshot: Snapshot) -> str:
    """Canonical JSON text of a snapshot: one entry per line, so that a re-sync diffs per model."""

    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))

    lines = ["{", f' "schema_version": {SNAPSHOT_SCHEMA_VERSION},', f' "source": {dumps(snapshot.source)},',
             f' "count": {snapshot.count},', ' "boards": {']  # fmt: skip
    boards = sorted(snapshot.boards.items())
    for index, (key, board) in enumerate(boards):
        head = {"dataset": board.dataset, "threat": board.threat, "metric": board.metric, "count": len(board.entries)}
        lines.append(f"  {dumps(key)}: {dumps(head)[:-1]}, \"entries\": [")
        lines += [f"   {dumps(asdict(e))}" + ("," if i < len(board.entries) - 1 else "") for i, e in enumerate(board.entries)]
        lines.append("  ]}" + ("," if index < len(boards) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def sync_snapshot(folder: str | Path, out: str | Path = DEFAULT_SNAPSHOT, synced_on: date | None = None) -> Snapshot:
    """Build the snapshot of ``folder`` and write it to ``out`` atomically; return it."""
    snapshot = build_snapshot(folder, synced_on)
    atomic_write_text(Path(out), snapshot_to_json(snapshot)).chmod(0o644)  # package data, world-readable
    return snapshot


def load_snapshot(path: str | Path = DEFAULT_SNAPSHOT) -> Snapshot:
    """Read a snapshot written by :func:`sync_snapshot`.

    Raises:
        ConfigError: missing, unreadable or not a snapshot of this schema.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: cannot read leaderboard snapshot (no such file); run `robench leaderboard sync --from DIR`")
    data = read_json_capped(path, MAX_SNAPSHOT_BYTES, "leaderboard snapshot")
    if not isinstance(data, dict) or data.get("schema_version") != SNAPSHOT_SCHEMA_VERSION:
        raise ConfigError(f"{path}: not a leaderboard snapshot of schema_version {SNAPSHOT_SCHEMA_VERSION}")
    try:
        if not isinstance(data.get("boards"), dict) or not isinstance(data.get("source") or {}, dict):
            raise TypeError("boards and source must be JSON objects")
        boards = {
            key: Board(b["dataset"], b["threat"], b["metric"], tuple(_checked(Entry(**e)) for e in b["entries"]))
            for key, b in data["boards"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: malformed leaderboard snapshot ({type(exc).__name__}: {exc})") from None
    return Snapshot(source=dict(data.get("source") or {}), boards=boards)


def _checked(entry: Entry) -> Entry:
    """``entry`` when its numbers are numbers (a snapshot is JSON: any type can stand anywhere).

    Raises:
        TypeError: a number field holds something else.
    """
    for name in ("clean_accuracy", "robust_accuracy", "autoattack_accuracy", "reported_accuracy", "eps_value"):
        value = getattr(entry, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise TypeError(f"entry {entry.id!r}: {name} is {value!r}, not a number")
    if isinstance(entry.forward_passes, bool) or not isinstance(entry.forward_passes, int):
        raise TypeError(f"entry {entry.id!r}: forward_passes is {entry.forward_passes!r}, not a whole number")
    return entry
