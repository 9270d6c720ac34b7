"""Two runs side by side (before/after a defence): headline numbers, deltas, and whether they matter.

A delta is "outside the intervals" when the two 95% intervals do not overlap. That is a
conservative test: disjoint 95% intervals imply a significant difference, overlapping ones do not
prove there is none. When both runs scored the same examples (same dataset manifest, split, stride,
number of examples and resize/crop) and kept each example's outcome, a proportion also gets the paired test: McNemar's exact
test on the examples whose outcome differs between the runs (two-sided binomial test of the
discordant pairs), far more powerful than comparing intervals, since both runs share the examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robench.corruptions.metrics import MEAN_CELL_KEYS
from robench.report._labels import record_label, show, worst_case_attacks
from robench.report.render import summary_records
from robench.results import MetricRecord, Results, not_certifiable, short_sha256, unpack_outcomes


@dataclass(frozen=True)
class RunDelta:
    """One headline metric in both runs.

    Attributes:
        label: ``evaluation name (condition)``.
        a: The record in the first run (``None``: absent there).
        b: The record in the second run.
        delta: ``b - a`` when both have a value.
        outside: Whether the two 95% intervals are disjoint (``None`` without both intervals).
        paired_p: McNemar's exact two-sided p-value over the shared examples (``None`` without
            per-example outcomes of the same examples in both runs).
        discordant: ``(a only, b only)``: examples right in one run only.
    """

    label: str
    a: MetricRecord | None
    b: MetricRecord | None
    delta: float | None
    outside: bool | None
    paired_p: float | None = None
    discordant: tuple[int, int] | None = None


@dataclass(frozen=True)
class RunComparison:
    """Two runs: per-metric deltas and what differs in their settings."""

    a_name: str
    b_name: str
    deltas: tuple[RunDelta, ...]
    notes: tuple[str, ...]


def _identity(record: MetricRecord) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    # The final worst case is one metric whatever attacks it is over: it sits in the evaluation of the
    # last attack that ran ("attacks/autoattack" in one run, "attacks/fgsm" in the other) and names its
    # chain ("fgsm+pgd"); match it by name (and norm, eps) alone.
    # Likewise the mean corruption accuracy is one metric whatever cells it averages (its condition
    # says which: a note tells when the runs averaged different cells).
    worst = record.name == "worst_case_robust_accuracy"
    skipped = {"attack"} if worst else set(MEAN_CELL_KEYS) if record.name == "mean_corruption_accuracy" else set()
    condition = tuple(sorted((k, repr(v)) for k, v in record.condition.items() if k not in skipped))
    return ("attacks" if worst else record.evaluation), record.name, condition


def _disjoint(a: MetricRecord, b: MetricRecord) -> bool | None:
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return None
    return bool(a.ci_high < b.ci_low or b.ci_high < a.ci_low)  # type: ignore[operator]


def _named(name: object, sha256: str) -> str:
    """``cifar10 (sha256 0123456789ab)``: a name a reader knows, and the hash that tells two apart."""
    return f"{name} (sha256 {short_sha256(sha256)})" if name else f"sha256 {short_sha256(sha256)}"


def _settings_notes(a: Results, b: Results) -> list[str]:
    notes = []
    pairs = (
        ("threat model", _named(a.threat_model.get("name"), a.threat_model_sha256), _named(b.threat_model.get("name"), b.threat_model_sha256)),
        ("dataset manifest", _named(a.dataset.manifest, a.dataset.manifest_sha256), _named(b.dataset.manifest, b.dataset.manifest_sha256)),
        ("dataset split", a.dataset.split, b.dataset.split),
        ("number of examples", a.dataset.n_examples, b.dataset.n_examples),
        ("seed", a.seed, b.seed),
        ("robench", a.environment.robench_version, b.environment.robench_version),
    )
    for what, left, right in pairs:
        if left != right:
            notes.append(f"{what} differs: {left} vs {right}")
    if a.model.sha256 and a.model.sha256 == b.model.sha256:
        notes.append("both runs evaluate the same checkpoint")
    for run, name in ((a, "first"), (b, "second")):
        if run.status != "success":
            notes.append(f"the {name} run did not finish (status {run.status})")
    return notes


def different_task(a: Results, b: Results) -> str | None:
    """Why two runs' numbers cannot be subtracted (``None``: they can): they classify a different number
    of classes, or inputs of a different shape. A difference of two accuracies then mixes what changed
    in the model with what changed in the task, and chance accuracy differs; deltas are withheld."""
    differing = [
        f"{what} {left} vs {right}"
        for what, left, right in (
            ("classes", a.dataset.num_classes, b.dataset.num_classes),
            ("input shape", "x".join(map(str, a.dataset.input_shape)), "x".join(map(str, b.dataset.input_shape))),
        )
        if left != right
    ]
    return "; ".join(differing) or None


def _outcomes(run: Results, record: MetricRecord) -> Any:
    evaluation = next((e for e in run.evaluations if e.key == record.evaluation), None)
    text = None if evaluation is None else evaluation.outcomes.get(record.name)
    return None if text is None or not record.n else unpack_outcomes(text, record.n)


def mcnemar_exact(a: Any, b: Any) -> tuple[float, tuple[int, int]]:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes, and the discordant counts
    ``(a only, b only)``: a binomial test of ``a only`` among the discordant pairs at 1/2."""
    from scipy.stats import binomtest

    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0, (0, 0)
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue), (only_a, only_b)


def _examples(run: Results) -> tuple[object, ...]:
    """What decides which examples a run scored, and how they were read (a paired test needs both
    runs to have scored the same images in the same order)."""
    spec = run.threat_model.get("dataset") or {}
    return (run.dataset.manifest_sha256, run.dataset.split, run.dataset.n_examples, spec.get("stride", 1),
            spec.get("resize"), spec.get("center_crop"))  # fmt: skip


def _paired(a: Results, b: Results, ra: MetricRecord, rb: MetricRecord) -> tuple[float | None, tuple[int, int] | None]:
    if _examples(a) != _examples(b) or ra.n != rb.n:
        return None, None
    left, right = _outcomes(a, ra), _outcomes(b, rb)
    if left is None or right is None:
        return None, None
    return mcnemar_exact(left, right)


def compare_runs(a: Results, b: Results, a_name: str = "a", b_name: str = "b") -> RunComparison:
    """The headline records of two runs matched by evaluation, name and condition; ``b - a`` deltas."""
    left = {_identity(r): r for r in summary_records(a)}
    right = {_identity(r): r for r in summary_records(b)}
    keys = list(left) + [k for k in right if k not in left]
    deltas = []
    notes = _settings_notes(a, b)
    task = different_task(a, b)
    if task is not None:
        notes.insert(0, f"the runs are on different tasks ({task}): their numbers are side by side, with no deltas or tests")
    for key in keys:
        ra, rb = left.get(key), right.get(key)
        both = task is None and ra is not None and rb is not None and ra.value is not None and rb.value is not None
        # a certified accuracy that is 0 by construction (not certifiable with these settings) measures the
        # settings, not the model: two of them differ by nothing a delta or a test could tell
        both = both and not_certifiable(ra) is None and not_certifiable(rb) is None  # type: ignore[arg-type]
        label = record_label(ra or rb)  # type: ignore[arg-type]
        if ra is not None and rb is not None and ra.name == "mean_corruption_accuracy":
            cells_a, cells_b = ({k: r.condition.get(k) for k in MEAN_CELL_KEYS} for r in (ra, rb))
            if cells_a != cells_b:
                notes.append(f"the mean corruption accuracy averages different cells: {a_name}: {show(cells_a) or 'every declared cell'}; "
                             f"{b_name}: {show(cells_b) or 'every declared cell'}")  # fmt: skip
        if ra is not None and rb is not None and ra.name == "worst_case_robust_accuracy":
            attacks_a, attacks_b = worst_case_attacks(ra), worst_case_attacks(rb)
            if set(attacks_a) != set(attacks_b):  # a minimum over attacks: their order does not matter
                label = "worst-case robust accuracy over each run's attacks (final)"
                notes.append(f"the worst case is over different attacks: {a_name}: {', '.join(attacks_a) or '–'}; "
                             f"{b_name}: {', '.join(attacks_b) or '–'}")  # fmt: skip
        paired_p, discordant = _paired(a, b, ra, rb) if both else (None, None)  # type: ignore[arg-type]
        deltas.append(
            RunDelta(
                label=label,
                a=ra,
                b=rb,
                delta=rb.value - ra.value if both else None,  # type: ignore[union-attr,operator]
                outside=_disjoint(ra, rb) if both else None,  # type: ignore[arg-type]
                paired_p=paired_p,
                discordant=discordant,
            )
        )
    return RunComparison(a_name=a_name, b_name=b_name, deltas=tuple(deltas), notes=tuple(notes))
