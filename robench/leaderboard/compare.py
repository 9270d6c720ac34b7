"""Where a run stands among published leaderboard entries of the same dataset, threat and eps.

Matching: the name of the run's dataset manifest (``cifar10``, ``cifar100``, ``imagenet``; the
released corruption sets ``cifar10c``, ``cifar100c``, ``imagenetc`` map to their clean datasets)
with the adversary's norm (``Linf``, ``L2``) gives an adversarial board, whose entries count only at
the same eps (relative tolerance ``eps_rtol``; RobustBench lists a few CIFAR entries at 0.031
instead of 8/255, in their ``eps`` field or in a footnote, and these are left out, and counted); a
corruption sweep gives the dataset's
``corruptions`` board.

Rank = 1 + the number of entries with a strictly higher ranked number. A difference is "outside the
interval" when the entry's number lies outside the run's own 95% interval (the published numbers'
own sampling error is not known and is ignored). A run that beats every published entry is flagged
for scrutiny unless its robust accuracy comes from a strong attack (AutoAttack), because a weak
attack overestimates robustness (Carlini et al. 2019, "On evaluating adversarial robustness").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from robench.corruptions.metrics import is_benchmark_mean
from robench.leaderboard.snapshot import Board, Entry, Snapshot
from robench.report.checklist import attack_strengths
from robench.results import MetricRecord, Results
from robench.threat_model import BENCHMARK_CORRUPTIONS, format_eps

# Released corruption sets and the clean dataset whose board they belong to.
_CORRUPTED = {"cifar10c": "cifar10", "cifar100c": "cifar100", "imagenetc": "imagenet"}
# Test points behind the published numbers (RobustBench: full CIFAR test sets, 5,000 ImageNet images).
BOARD_N = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 5_000}
BOARD_SPLIT = {"cifar10": "test", "cifar100": "test", "imagenet": "val"}


@dataclass(frozen=True)
class Neighbour:
    """A published entry next to the run, with the run's deltas (run minus entry).

    Attributes:
        role: ``above`` (nearest better entry), ``below`` (nearest entry not better) or ``best``.
        entry: The published entry.
        rank: The entry's rank among the compared entries and the run (1 = best), the scale of the
            run's own rank.
        delta_clean: Run clean accuracy minus the entry's, or ``None``.
        delta_robust: Run robust (or corruption) accuracy minus the entry's.
        clean_outside_ci: Whether the entry's clean accuracy lies outside the run's 95% interval.
        robust_outside_ci: Whether the entry's ranked number lies outside the run's 95% interval.
    """

    role: str
    entry: Entry
    rank: int
    delta_clean: float | None
    delta_robust: float | None
    clean_outside_ci: bool | None
    robust_outside_ci: bool | None


@dataclass(frozen=True)
class BoardComparison:
    """The run against one board.

    Attributes:
        board: ``<dataset>/<threat>``.
        metric: What is ranked (``robust_accuracy`` or ``mean_corruption_accuracy``).
        eps: The radius compared at (``8/255``), ``None`` for corruption boards.
        n_entries: Published entries compared.
        excluded: Ids of the board's entries left out (other eps or no ranked number).
        clean: The run's clean-accuracy record.
        robust: The run's ranked record (worst case over attacks, or mean corruption accuracy).
        rank: The run's rank among ``n_entries + 1`` (``None`` without a ranked record).
        rank_range: The ranks of the ends of the run's 95% interval, best first: every rank the
            interval allows (``None`` without an interval).
        neighbours: Nearest entries above and below, and the best entry.
        beats_sota: The run's number is higher than every published entry's.
        strong_attack: The robust number comes from a strong attack (AutoAttack); ``None`` on corruption boards.
        scrutiny: Beats the state of the art without a strong attack: most likely a weak evaluation.
        notes: Caveats (sample size, subset of corruptions, generated corruptions...).
    """

    board: str
    metric: str
    eps: str | None
    n_entries: int
    excluded: tuple[str, ...]
    clean: MetricRecord | None
    robust: MetricRecord | None
    rank: int | None
    neighbours: tuple[Neighbour, ...]
    beats_sota: bool
    strong_attack: bool | None
    scrutiny: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    rank_range: tuple[int, int] | None = None

    def neighbour(self, role: str) -> Neighbour | None:
        """The neighbour with this role, if any."""
        return next((n for n in self.neighbours if n.role == role), None)


def _dataset_name(manifest: str) -> str:
    name = Path(manifest).name.lower()
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name


def _outside(record: MetricRecord | None, value: float | None) -> bool | None:
    if record is None or value is None or record.ci_low is None or record.ci_high is None:
        return None
    return not (record.ci_low <= value <= record.ci_high)


def _delta(record: MetricRecord | None, value: float | None) -> float | None:
    if record is None or record.value is None or value is None:
        return None
    return record.value - value


def _clean_record(results: Results) -> MetricRecord | None:
    return next(iter(results.records("clean", "accuracy")), None)


def _worst_case(results: Results, eps: float) -> MetricRecord | None:
    """The last per-example worst case over all attacks at the threat model's eps."""
    picked = [
        r
        for r in results.records(name="worst_case_robust_accuracy")
        if "class" not in r.condition and (r.condition.get("eps") is None or math.isclose(float(cast(float, r.condition["eps"])), eps, rel_tol=1e-9))  # a number: MetricRecord checks it
    ]
    return picked[-1] if picked else None


def _compare(
    board: Board, clean: MetricRecord | None, robust: MetricRecord | None, entries: list[Entry], excluded: list[str],
    eps: str | None, strong: bool | None, notes: list[str],
) -> BoardComparison:  # fmt: skip
    ranked = [e for e in entries if e.robust_accuracy is not None]
    excluded += [e.id for e in entries if e.robust_accuracy is None]
    value = robust.value if robust is not None else None
    rank = None if value is None else 1 + sum(e.robust_accuracy > value for e in ranked)  # type: ignore[operator]
    rank_range = None
    if robust is not None and robust.ci_low is not None and robust.ci_high is not None:
        rank_range = (
            1 + sum(e.robust_accuracy > robust.ci_high for e in ranked),  # type: ignore[operator]
            1 + sum(e.robust_accuracy > robust.ci_low for e in ranked),  # type: ignore[operator]
        )
    if strong is False and ranked:
        notes.append(
            "the board's numbers come from AutoAttack; this run has no strong AutoAttack evaluation, so its robust "
            "accuracy may be higher than AutoAttack would find and its rank optimistic: run AutoAttack before comparing"
        )

    def neighbour(role: str, entry: Entry) -> Neighbour:
        return Neighbour(
            role=role,
            entry=entry,
            # on the run's own scale: among the compared entries and the run (one below the run is one lower)
            rank=1 + sum(e.robust_accuracy > entry.robust_accuracy for e in ranked)  # type: ignore[operator]
            + int(value is not None and entry.robust_accuracy is not None and value > entry.robust_accuracy),
            delta_clean=_delta(clean, entry.clean_accuracy),
            delta_robust=_delta(robust, entry.robust_accuracy),
            clean_outside_ci=_outside(clean, entry.clean_accuracy),
            robust_outside_ci=_outside(robust, entry.robust_accuracy),
        )

    neighbours: list[Neighbour] = []
    beats = False
    if value is not None and ranked:
        better = [e for e in ranked if e.robust_accuracy > value]  # type: ignore[operator]
        rest = [e for e in ranked if e.robust_accuracy <= value]  # type: ignore[operator]
        if better:
            neighbours.append(neighbour("above", better[-1]))
        if rest:
            neighbours.append(neighbour("below", rest[0]))
        neighbours.append(neighbour("best", ranked[0]))
        beats = not better and value > ranked[0].robust_accuracy  # type: ignore[operator]
    scrutiny = beats and strong is False
    if scrutiny:
        notes.append("beats every published entry without a strong attack (AutoAttack): most likely the evaluation is too weak")
    elif beats and strong:
        notes.append("beats every published entry under AutoAttack: check the gradient-masking results and try adaptive attacks")
    elif beats:
        notes.append("beats every published entry: check that the setting matches the board's exactly")
    return BoardComparison(
        board=board.key, metric=board.metric, eps=eps, n_entries=len(ranked), excluded=tuple(excluded), clean=clean,
        robust=robust, rank=rank, neighbours=tuple(neighbours), beats_sota=beats, strong_attack=strong, scrutiny=scrutiny,
        notes=tuple(notes), rank_range=rank_range,
    )  # fmt: skip


def _sample_note(results: Results, dataset: str, robust: MetricRecord | None) -> list[str]:
    n = robust.n if robust is not None and robust.n else results.dataset.n_examples
    expected, split = BOARD_N.get(dataset), BOARD_SPLIT.get(dataset)
    notes = []
    if split is not None and results.dataset.split != split:
        notes.append(f"measured on the {results.dataset.split} split, the published numbers on the {split} split: not comparable")
    if expected is not None and n < expected:
        notes.append(f"measured on n = {n:,} examples, the published numbers on {expected:,}: compare within the 95% interval")
    if expected is not None:
        notes.append(f"the published numbers are point values on {expected:,} test points, with no interval: 'outside the run's 95% CI' "
                     "counts only the run's own sampling error")
    notes.extend(_format_note(results, dataset))
    if dataset == "imagenet":  # robench's ImageNet images: the first of its class-interleaved order
        notes.append("RobustBench's ImageNet numbers are on its own fixed list of 5,000 validation images (shipped with the robustbench "
                     "package), robench's on the first of its class-interleaved order: other images of the same distribution")
    if results.model.randomized:
        notes.append("the model is randomized: robench scores its expected per-pass accuracy at the adversary's best point; "
                     "published AutoAttack rand numbers count an example broken once any pass misclassifies it: not comparable")
    return notes


def _format_note(results: Results, dataset: str) -> list[str]:
    """A manifest named like a board's dataset that reads another format than robench's shipped
    manifest of that name (an ``.npz`` called ``cifar10``) holds other files than the official ones.

    The run's manifest is held against robench's shipped manifest of its own name (``cifar10c``
    for a run on CIFAR-10-C, which is placed on the cifar10 boards), else of the board's dataset.
    """
    from robench._errors import RobenchError
    from robench.data.manifest import load_manifest

    shipped = None
    for name in [n for n in dict.fromkeys((_dataset_name(str(results.dataset.manifest or "")), dataset)) if n]:
        try:
            shipped, _ = load_manifest(name)
            break
        except RobenchError:
            continue
    if shipped is None or not results.dataset.format or results.dataset.format == shipped.format:
        return []
    note = (f"the run's manifest {results.dataset.manifest!r} reads {results.dataset.format} files, robench's shipped {name} manifest "
            f"the official {shipped.format} ones the board's numbers come from: comparable only if they hold the same test images")
    return [note]


def _adversary_note(adversary: dict) -> list[str]:
    """What of the adversary differs from RobustBench's: untargeted attacks on pixels in [0, 1]."""
    notes = []
    if adversary.get("goal", "untargeted") != "untargeted":
        notes.append(f"the threat model's goal is {adversary.get('goal')}, the published numbers are untargeted robust accuracy "
                     "(an example counts as broken once any wrong class is reached): not comparable")
    bounds = adversary.get("bounds")
    if bounds is not None and tuple(float(b) for b in bounds) != (0.0, 1.0):
        notes.append(f"the adversary's pixel bounds are {list(bounds)}, the published numbers allow the whole range [0, 1]: not comparable")
    return notes


def _board_dataset(results: Results) -> str:
    """The dataset a run's boards are named by (``cifar10``; a corrupted set by its clean one): the
    ``name`` inside the manifest the run used, so a frozen copy (``my-cifar10.yaml``, see
    ``robench data freeze``) matches like the shipped one; the threat model's manifest path only
    where the results lack it."""
    dataset = _dataset_name(str(results.dataset.manifest or (results.threat_model.get("dataset") or {}).get("manifest") or ""))
    return _CORRUPTED.get(dataset, dataset)


def _released_set(results: Results, corruptions: dict) -> str | None:
    """The name of the released corruption set a released sweep read: the name inside its manifest
    (recorded by the sweep), else the threat model's ``released_manifest``; ``None`` for a generated
    sweep or where neither is known."""
    if corruptions.get("source") != "released":
        return None
    evaluation = next((e for e in results.evaluations if e.section == "corruptions"), None)
    recorded = (evaluation.resolved.get("released") or {}) if evaluation is not None else {}
    name = recorded.get("manifest") if isinstance(recorded, dict) else None
    name = name or corruptions.get("released_manifest")
    return _dataset_name(str(name)) if name else None


def compare_to_leaderboard(results: Results, snapshot: Snapshot, eps_rtol: float = 1e-3) -> list[BoardComparison]:
    """The run against every board of ``snapshot`` that matches its threat model (none: empty list)."""
    threat = results.threat_model
    dataset = _board_dataset(results)
    clean = _clean_record(results)
    out = []
    adversary = threat.get("adversary")
    attacks_ran = any(e.section == "attacks" and e.status == "success" for e in results.evaluations)
    if adversary and attacks_ran and f"{dataset}/{adversary.get('norm')}" in snapshot.boards:
        board = snapshot.boards[f"{dataset}/{adversary['norm']}"]
        eps = float(adversary["eps"])
        same = [e for e in board.entries if e.eps_value is not None and math.isclose(e.eps_value, eps, rel_tol=eps_rtol)]
        other = [e.id for e in board.entries if e not in same]
        strengths = attack_strengths(results)
        strong = any(s.level == "strong" and s.kind == "autoattack" for s in strengths)
        notes = _sample_note(results, dataset, _worst_case(results, eps)) + _adversary_note(adversary)
        if other:
            notes.append(f"{len(other)} entries published at another eps were left out")
        if not same:
            notes.append(f"no published entry at eps {format_eps(eps)} on this board")
        out.append(_compare(board, clean, _worst_case(results, eps), same, other, format_eps(eps), strong, notes))
    corruptions = (threat.get("evaluations") or {}).get("corruptions")
    mean = next(iter(results.records(name="mean_corruption_accuracy")), None)
    if corruptions and mean is not None and f"{dataset}/corruptions" in snapshot.boards:
        board = snapshot.boards[f"{dataset}/corruptions"]
        notes = _sample_note(results, dataset, mean)
        full = is_benchmark_mean(mean.condition)  # what the mean averaged (extras are left out of it)
        if full is None:  # results of an older robench: the mean averaged every declared cell
            names = tuple(corruptions.get("corruptions") or ())
            full = set(names) == set(BENCHMARK_CORRUPTIONS) and sorted(corruptions.get("severities") or ()) == [1, 2, 3, 4, 5]
        if not full:
            notes.append("the sweep is not the 15 benchmark corruptions x severities 1-5 the board averages: not comparable")
        if corruptions.get("source") == "generated":
            notes.append("corruptions were generated on the fly; the board uses the released -C files")
        released = _released_set(results, corruptions)
        if released is not None and _CORRUPTED.get(released) != dataset:
            official = next((k for k, v in _CORRUPTED.items() if v == dataset), None)
            notes.append(f"the sweep read the released set {released!r}, not {official or 'the -C set'} whose files the board's "
                         "numbers come from: not comparable")
        out.append(_compare(board, clean, mean, list(board.entries), [], None, None, notes))
    return out


def unmatched_reason(results: Results, snapshot: Snapshot) -> str:
    """Why :func:`compare_to_leaderboard` found no board for ``results`` (one sentence)."""
    threat = results.threat_model
    dataset = _board_dataset(results)
    adversary = threat.get("adversary")
    boards = ", ".join(sorted(snapshot.boards))
    reasons = []
    if adversary:
        key = f"{dataset}/{adversary.get('norm')}"
        if key not in snapshot.boards:
            reasons.append(f"the snapshot has no {key} board")
        else:
            reasons.append(
                f"board {key} ranks empirical robust accuracy, but no attack finished in this run"
                + (" (certified accuracy is a different quantity)" if results.records(name="certified_accuracy") else "")
            )
    else:
        reasons.append("the run declares no adversary")
    corrupted = f"{dataset}/corruptions"
    if corrupted in snapshot.boards:
        reasons.append(f"board {corrupted} needs a corruption sweep's mean corruption accuracy, which this run lacks")
    return f"no board of the snapshot ({boards}) matches this run: " + "; ".join(reasons)
