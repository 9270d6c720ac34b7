"""The best-practice checklist of an evaluation, computed from results.json alone (a pure function).

Items follow Carlini et al. 2019 ("On evaluating adversarial robustness") and the RobustBench
rules (Croce et al. 2021): a specified threat model, strong adaptive attacks, clean and robust
accuracy, calibration under shift, recorded code and checkpoint, detailed certification, and the
evaluation matching what the model card claims.

Model-card claims live in the threat model's ``claims`` mapping. Keys read here (all optional):

- ``source``: where the claim comes from (free text, shown as evidence).
- ``dataset``: dataset manifest name of the claim (``cifar10``).
- ``norm``: ``Linf``, ``L2`` or ``L1``; ``eps``: the claimed radius (a number or ``"8/255"``).
- ``clean_accuracy``, ``robust_accuracy``, ``certified_accuracy``, ``mean_corruption_accuracy``:
  claimed numbers as fractions in [0, 1].
- ``other_threats``: list of further claims of robustness (``["L2:0.5", "corruptions"]``); each is
  robustness claimed outside the evaluated threat model unless it names the evaluated one.

Example: ``claims: {source: "model card", norm: Linf, eps: 8/255, robust_accuracy: 0.6}``.
Loading a threat model refuses other keys and values of the wrong kind
(:class:`robench.threat_model.Claims`); in a results file written before that check, other keys
are listed as ignored in the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from robench._errors import ConfigError, short_repr
from robench.attacks.masking_checks import ATTACK_STRENGTH_CHECKS
from robench.certify.guarantees import unproven
from robench.corruptions.metrics import is_benchmark_mean
from robench.report import _coverage
from robench.report._coverage import NOT_ATTACKS
from robench.report._labels import at_threat, record_label, show
from robench.results import Environment, EvaluationResult, MetricRecord, Results, is_dirty, not_certifiable, short_sha256, unpack_outcomes
from robench.threat_model import CalibrationSpec, format_eps, parse_eps

Status = Literal["pass", "warn", "fail", "n/a"]
Level = Literal["strong", "moderate", "weak"]
CLAIM_KEYS = ("source", "dataset", "norm", "eps", "clean_accuracy", "robust_accuracy", "certified_accuracy",
              "mean_corruption_accuracy", "other_threats")  # fmt: skip
# Claimed number -> (record name, evaluation key prefix) it is checked against.
_CLAIMED_METRICS = {
    "clean_accuracy": ("accuracy", "clean"),
    "robust_accuracy": ("worst_case_robust_accuracy", "attacks/"),
    "certified_accuracy": ("certified_accuracy", "certification/"),
    "mean_corruption_accuracy": ("mean_corruption_accuracy", "corruptions"),
}
STRONG_PGD_STEPS = 100
STRONG_PGD_RESTARTS = 2


@dataclass(frozen=True)
class ChecklistItem:
    """One best-practice item with its verdict and the evidence for it.

    Attributes:
        key: Stable identifier (``strong_attacks``).
        title: What is checked, in words.
        status: ``pass``, ``warn``, ``fail``, or ``n/a`` when the item does not apply.
        evidence: What in results.json the verdict rests on.
    """

    key: str
    title: str
    status: Status
    evidence: str


@dataclass(frozen=True)
class AttackStrength:
    """How strong one attack evaluation is, with the reason.

    Attributes:
        key: Evaluation key (``attacks/pgd``).
        kind: ``autoattack``, ``pgd``, ``fgsm``, or the attack's registry name.
        level: ``strong`` (AutoAttack; PGD with >= 100 steps and >= 2 restarts), ``moderate``
            (other iterative, black-box or minimum-norm attacks) or ``weak`` (single step).
        reason: The parameters behind the level, in words.
    """

    key: str
    kind: str
    level: Level
    reason: str


_COUNTS = ("n_iter", "steps", "restarts", "eot_samples")
"""The parameters an attack's strength is judged by: whole numbers."""


def _params(evaluation: EvaluationResult) -> dict[str, Any]:
    """An attack's parameters as declared, updated by those it resolved to.

    Raises:
        ConfigError: one of :data:`_COUNTS` is not a whole number (a damaged results.json: the
            checklist of the report, the exports and ``compare`` failed on ``int()``).
    """
    given = evaluation.declared.get("params")
    declared = given if isinstance(given, dict) else {}
    params = {**declared, **{k: v for k, v in (evaluation.resolved or {}).items() if v is not None}}
    for key in _COUNTS:
        value = params.get(key)
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if value is not None and (isinstance(value, bool) or not whole):
            raise ConfigError(f"results: evaluation {evaluation.key!r}: parameter {key} is {short_repr(value)}, not a whole number")
    return params


def _saturation(evaluation: EvaluationResult) -> str:
    """What AutoAttack's breakdown says of its convergence: how many of the examples its first attack
    left robust the later, complementary attacks broke ("" without a breakdown)."""
    rows = [r for r in evaluation.artifacts.get("breakdown") or [] if isinstance(r, dict) and r.get("attack") != "clean"]
    if len(rows) < 2 or not all(isinstance(r.get("n_robust"), int) for r in rows):
        return ""
    later = [str(r["attack"]) for r in rows[1:]]
    broken = rows[0]["n_robust"] - rows[-1]["n_robust"]
    last = rows[-2]["n_robust"] - rows[-1]["n_robust"]
    return (f"; the attacks after {rows[0]['attack']} ({', '.join(later)}) broke {broken} of the {rows[0]['n_robust']} it left robust "
            f"({last} by the last, {later[-1]})")


def _strength(evaluation: EvaluationResult, randomized: bool = False) -> AttackStrength:
    params = _params(evaluation)
    name = evaluation.name
    if name == "autoattack":
        version = params.get("version", "standard")
        n_iter = params.get("n_iter")
        attacks = params.get("attacks") or []
        if n_iter is not None and int(n_iter) < STRONG_PGD_STEPS:
            return AttackStrength(evaluation.key, name, "moderate", f"AutoAttack {version} with n_iter {n_iter} < {STRONG_PGD_STEPS}")
        if version == "custom" and not {"apgd-ce", "apgd-t"} <= set(attacks):
            # the standard ensemble's point is its complementary attacks; one of them alone is a strong PGD, no more
            return AttackStrength(
                evaluation.key, name, "moderate",
                f"AutoAttack custom subset ({', '.join(attacks)}) without both APGD-CE and APGD-T",
            )  # fmt: skip
        if randomized and version != "rand":
            return AttackStrength(evaluation.key, name, "moderate", f"AutoAttack {version} on a randomized model (use version rand: EOT)")
        return AttackStrength(evaluation.key, name, "strong", f"AutoAttack version {version}{_saturation(evaluation)}")
    if name == "pgd":
        steps, restarts = int(params.get("steps", 40)), int(params.get("restarts", 1))
        text = f"PGD {steps} steps x {restarts} restart{'s' if restarts != 1 else ''}, loss {params.get('loss', 'ce')}"
        if randomized and int(params.get("eot_samples", 1)) <= 1:
            return AttackStrength(evaluation.key, name, "moderate", f"{text} on a randomized model without EOT (eot_samples 1)")
        norm = next((r.condition.get("norm") for r in evaluation.records if r.name == "robust_accuracy"), None)
        if norm == "L1":  # Croce & Hein 2021 ("Mind the box"): L1 PGD stalls where its sparse step meets the box
            return AttackStrength(evaluation.key, name, "moderate", f"{text} under L1: PGD is weak under L1 at any budget (use autoattack: APGD-L1)")
        if steps >= STRONG_PGD_STEPS and restarts >= STRONG_PGD_RESTARTS:
            return AttackStrength(evaluation.key, name, "strong", text)
        return AttackStrength(evaluation.key, name, "moderate", f"{text} (strong needs >= {STRONG_PGD_STEPS} steps and >= {STRONG_PGD_RESTARTS} restarts)")
    if name == "fgsm":
        return AttackStrength(evaluation.key, name, "weak", "FGSM: a single gradient step")
    return AttackStrength(evaluation.key, name, "moderate", f"{name}: not a strong white-box evaluation on its own")


def attack_strengths(results: Results) -> list[AttackStrength]:
    """The strength of every attack evaluation that finished, in run order.

    A budget makes an attack strong only if the run does not show otherwise: a "strong" attack that
    another attack of the run significantly outdid on the same examples (:func:`outdone_by`) is
    moderate, with the evidence in its reason."""
    evaluations = [e for e in results.evaluations if e.section == "attacks" and e.status == "success" and e.name not in NOT_ATTACKS]
    unconverged = {c.evidence.get("source", "").removeprefix("declared attack "): c.message
                   for e in results.evaluations for c in e.checks if c.name in ATTACK_STRENGTH_CHECKS and c.status in ("warn", "fail")}
    strengths = []
    for evaluation in evaluations:
        strength = _strength(evaluation, results.model.randomized)
        key = evaluation.key.split("/", 1)[-1]
        against = []
        if strength.level == "strong":
            if (beaten := outdone_by(evaluation, evaluations)) is not None:
                against.append(beaten)
            if key in unconverged:
                against.append("not converged (" + unconverged[key].removeprefix(f"{key}: ") + ")")
        if against:
            strength = AttackStrength(strength.key, strength.kind, "moderate", f"{strength.reason}, strong by its budget but {'; and '.join(against)}")
        strengths.append(strength)
    return strengths


OUTDONE_P = 0.01
"""One-sided sign-test level at which another attack of the run outdoes a "strong" one."""


def robust_flags(evaluation: EvaluationResult) -> tuple[Any, MetricRecord] | None:
    """An attack's per-example robust flags (from its packed outcomes) with its robust-accuracy record;
    ``None`` when not recorded (a randomized model's pass means are no 0/1 outcomes)."""
    record = next((r for r in evaluation.records if r.name == "robust_accuracy" and "class" not in r.condition), None)
    packed = evaluation.outcomes.get("robust_accuracy")
    if record is None or not record.n or not isinstance(packed, str):
        return None
    flags = unpack_outcomes(packed, record.n)
    return None if flags is None else (flags, record)


def certified_but_broken(results: Results) -> list[dict[str, Any]]:
    """Certificates against the run's attacks, example by example: per deterministic certifier that
    kept its per-example outcomes at the threat model's eps (IBP, CROWN, Lipschitz:
    ``outcomes["certified_accuracy"]``; smoothing certifies another classifier) and per attack with
    per-example robust flags at the same norm and eps, how many certified examples the attack broke,
    over the examples both evaluated (the first ``n`` of the run's order). Any is a bug: a sound
    certificate and a valid attack cannot both hold for one example."""
    adversary = results.threat_model.get("adversary") or {}
    attacks = []
    for e in results.evaluations:
        found = robust_flags(e) if e.section == "attacks" and e.status == "success" else None
        if found is not None and all(found[1].condition.get(k) == adversary.get(k) for k in ("norm", "eps")):
            attacks.append((e.key.split("/", 1)[-1], found[0]))
    pairs = []
    for e in results.evaluations:
        packed = e.outcomes.get("certified_accuracy") if e.section == "certification" and e.status == "success" else None
        record = next((r for r in e.records if r.name == "certified_accuracy" and "threat_eps" in r.condition), None)
        if record is not None and not at_threat(record, adversary):
            continue  # certified at another radius: attacks at eps may break it
        certified = unpack_outcomes(packed, record.n) if isinstance(packed, str) and record is not None and record.n else None
        if certified is None:
            continue
        for attack, robust in attacks:
            n = min(len(certified), len(robust))
            pairs.append({"certifier": e.key.split("/", 1)[-1], "attack": attack, "n": n, "certified": int(certified[:n].sum()),
                          "broken": int((certified[:n] & ~robust[:n]).sum())})  # fmt: skip
    return pairs


def comparable(a: MetricRecord, b: MetricRecord) -> bool:
    """Whether two attacks' robust-accuracy records are over the same examples and threat (n, norm,
    eps, goal), so that their per-example outcomes can be compared."""
    return a.n == b.n and all(a.condition.get(k) == b.condition.get(k) for k in ("norm", "eps", "goal"))


def outdone_by(evaluation: EvaluationResult, others: list[EvaluationResult], tolerance: float = 0.01) -> str | None:
    """Evidence that another attack of the run is significantly stronger on the same examples (same
    n, norm, eps and goal): of the examples only one of the two broke, the other broke more, beyond
    ``tolerance`` of n and a one-sided sign test at :data:`OUTDONE_P` (robench.stats.sign_test);
    ``None`` when no attack did, or per-example outcomes were not recorded (a randomized model's)."""
    from robench.stats import sign_test

    own = robust_flags(evaluation)
    if own is None:
        return None
    flags, record = own
    n = record.n
    assert n  # robust_flags returns records with examples only
    found = []
    for other in others:
        theirs = robust_flags(other) if other.key != evaluation.key else None
        if theirs is None or not comparable(theirs[1], record):
            continue
        only_other = int((flags & ~theirs[0]).sum())  # robust to this attack, broken by the other
        only_this = int((theirs[0] & ~flags).sum())
        p_value = sign_test(only_other, only_this)
        if p_value < OUTDONE_P and (only_other - only_this) / n > tolerance:
            why = (f"{other.key.split('/', 1)[-1]} broke {only_other} of the {int(flags.sum())} examples it left robust "
                   f"({only_this} the other way, one-sided p = {p_value:.2g})")
            found.append((only_other - only_this, why))
    return max(found)[1] if found else None


def _sections_ran(results: Results, section: str) -> list[EvaluationResult]:
    return [e for e in results.evaluations if e.section == section and e.status == "success"]


def _threat_item(results: Results) -> ChecklistItem:
    title = "Threat model specified (norm, eps, knowledge, goal)"
    adversary = results.threat_model.get("adversary")
    if adversary:
        missing = [k for k in ("norm", "eps", "knowledge", "goal") if adversary.get(k) in (None, "")]
        if missing:
            return ChecklistItem("threat_model", title, "fail", f"adversary lacks {', '.join(missing)}")
        eps = format_eps(float(adversary["eps"]))
        return ChecklistItem(
            "threat_model", title, "pass",
            f"{adversary['goal']} {adversary['knowledge']} adversary, {adversary['norm']} eps {eps}, "
            f"threat model sha256 {short_sha256(results.threat_model_sha256)}",
        )  # fmt: skip
    if _sections_ran(results, "attacks") or _sections_ran(results, "certification"):
        return ChecklistItem("threat_model", title, "fail", "attacks or certificates without a declared adversary (norm, eps)")
    return ChecklistItem("threat_model", title, "n/a", "no adversary: a natural-shift evaluation (corruptions, stability)")


def nothing_robust(results: Results) -> str | None:
    """Evidence when the attacks already leave no example robust (``None`` otherwise): a stronger
    attack cannot lower 0%, and gradient masking cannot hide robustness that is not there."""
    worst = results.records(name="worst_case_robust_accuracy")
    final = worst[-1] if worst else None
    if final is None or not final.n or final.value is None or final.value > 0:
        return None
    return f"the attacks already leave 0 of {final.n:,} examples robust: a stronger attack cannot lower that"


def _attacks_item(results: Results) -> ChecklistItem:
    title = "Strong attacks (AutoAttack, or PGD >= 100 steps with restarts, converged and not outdone in the run)"
    strengths = attack_strengths(results)
    zero = nothing_robust(results)
    if strengths and zero and "strong" not in {s.level for s in strengths}:
        return ChecklistItem("strong_attacks", title, "n/a", zero)
    if not strengths:
        if not results.threat_model.get("adversary"):
            return ChecklistItem("strong_attacks", title, "n/a", "no adversary declared")
        if _sections_ran(results, "certification"):
            return ChecklistItem("strong_attacks", title, "n/a", "certified evaluation: the certificate bounds robustness, no attack needed")
        attacks = _coverage.declared_attacks(results)
        if attacks and _coverage.excluded_by_only(results, "attacks"):  # left out on purpose: no attack was to finish
            return ChecklistItem("strong_attacks", title, "warn", f"the attacks are {_coverage.why_not_run(results, 'attacks', attacks)}")
        return ChecklistItem("strong_attacks", title, "fail", "an adversary is declared but no attack finished")
    ranked = sorted(strengths, key=lambda s: get_args(Level).index(s.level))  # strongest first: the console shows the line's start
    listed = "; ".join(f"{s.key.split('/', 1)[-1]}: {s.reason} ({s.level})" for s in ranked)
    unfinished = [d for d in _coverage.missing(results, "attacks") if d.name not in NOT_ATTACKS]
    if unfinished:
        listed += f"; {', '.join(d.key.split('/', 1)[-1] for d in unfinished)} {_coverage.why_not_run(results, 'attacks', unfinished)}"
    levels = {s.level for s in strengths}
    if "strong" in levels:
        return ChecklistItem("strong_attacks", title, "pass", listed)
    if "moderate" in levels:
        return ChecklistItem("strong_attacks", title, "warn", f"no strong attack: {listed}")
    return ChecklistItem("strong_attacks", title, "fail", f"weak-only evaluation: {listed}; robust accuracy is overestimated")


def _masking_item(results: Results) -> ChecklistItem:
    title = "No sign of gradient masking in the sanity checks"
    # the attacks' sanity checks: the certifiers' soundness checks belong to the certification item, the
    # declared attacks' convergence to the strong-attacks item
    checks = [(e.key, c) for e in results.evaluations if e.section != "certification" for c in e.checks if c.name not in ATTACK_STRENGTH_CHECKS]
    if not checks:
        entries = _coverage.declared_attacks(results, checks=True)
        unfinished = [d for d in entries if not d.finished]
        if attack_strengths(results):  # Carlini et al. 2019: an attack evaluation without sanity checks is incomplete
            zero = nothing_robust(results)
            if zero:
                return ChecklistItem("masking_checks", title, "n/a", f"{zero}; masking cannot hide robustness that is not there")
            if unfinished:
                why = _coverage.why_not_run(results, "attacks", unfinished)
                evidence = f"attacks ran without gradient-masking sanity checks: the gradient_masking entry is {why}"
                return ChecklistItem("masking_checks", title, "warn", evidence)
            if entries:
                return ChecklistItem("masking_checks", title, "warn", "the gradient_masking entry ran but recorded no checks")
            return ChecklistItem(
                "masking_checks", title, "warn",
                "attacks ran without gradient-masking sanity checks (add the gradient_masking entry)",
            )  # fmt: skip
        return ChecklistItem("masking_checks", title, "n/a", "no sanity checks were recorded")
    bad = [(k, c) for k, c in checks if c.status in ("warn", "fail")]
    # inconclusive: the check could not have shown masking (too few examples, too small a budget): not a pass
    unsure = [(k, c) for k, c in checks if c.status == "inconclusive"]
    if not bad and not unsure:
        names = ", ".join(dict.fromkeys(c.name for _, c in checks))
        elsewhere = [where for where, present in (
            ("attack convergence under strong attacks", any(c.name in ATTACK_STRENGTH_CHECKS for e in results.evaluations for c in e.checks)),
            ("certifier soundness under certification", any(e.section == "certification" and e.checks for e in results.evaluations)),
        ) if present]  # fmt: skip
        tail = f"; counted elsewhere: {', '.join(elsewhere)}" if elsewhere else ""
        return ChecklistItem("masking_checks", title, "pass", f"{len(checks)} check(s) passed ({names}){tail}")
    status: Status = "fail" if any(c.status == "fail" for _, c in bad) else "warn"
    # an inconclusive check's message starts with its status ("inconclusive: only 16 ..."): said once
    evidence = "; ".join(f"{k} {c.name} {c.status}: {c.message.removeprefix(f'{c.status}: ')}" for k, c in bad + unsure)
    if unsure:
        evidence = (f"{len(unsure)} of {len(checks)} check(s) inconclusive (too few examples or too small a budget to show "
                    f"masking, not a pass): {evidence}")
    return ChecklistItem("masking_checks", title, status, evidence)


def _first(results: Results, name: str, prefix: str) -> MetricRecord | None:
    picked = [r for r in results.records(name=name) if r.evaluation.startswith(prefix) and not {"class", "radius", "severity"} & set(r.condition)]
    return picked[-1] if picked else None


def _clean_robust_item(results: Results) -> ChecklistItem:
    title = "Clean and robust accuracy both reported (with n and 95% intervals)"
    clean = _first(results, "accuracy", "clean")
    robust = [
        r
        for name, prefix in (("worst_case_robust_accuracy", "attacks/"), ("mean_corruption_accuracy", "corruptions"))
        if (r := _first(results, name, prefix)) is not None
    ]  # fmt: skip
    # every certifier's number at the threat model's radius (not one picked, nor a point of a curve)
    at_threat = [r for r in results.records(name="certified_accuracy") if r.evaluation.startswith("certification/") and "threat_eps" in r.condition]
    certified = [r for r in at_threat if not_certifiable(r) is None]  # 0 by construction: it measures the settings, not the model
    fallback = _first(results, "certified_accuracy", "certification/") if not at_threat else None  # no adversary: no threat radius
    robust[1:1] = certified or ([fallback] if fallback is not None else [])

    def text(r: MetricRecord) -> str:
        value, interval = r.formatted()
        return f"{record_label(r)}: {value} {interval or '(no interval)'}, n = {r.n}"

    if clean is None or not robust:
        missing = " and ".join(m for m, ok in (("clean accuracy", clean is not None), ("robust accuracy", bool(robust))) if not ok)
        return ChecklistItem("clean_and_robust", title, "fail", f"missing {missing}")
    shown = [clean, *robust]
    status: Status = "pass" if all(r.ci_low is not None and r.n for r in shown) else "warn"
    return ChecklistItem("clean_and_robust", title, status, "; ".join(text(r) for r in shown))


def _calibration_item(results: Results) -> ChecklistItem:
    title = "Calibration under attack or corruption included"
    conditions = sorted({str(r.condition.get("condition")) for r in results.records("calibration", "ece")})
    shifted = [c for c in conditions if c in ("attack", "corruption")]
    if shifted:
        clean = ", and on clean inputs" if "clean" in conditions else ""
        return ChecklistItem("calibration", title, "pass", f"ECE measured under {' and '.join(shifted)}{clean}")
    if conditions:
        return ChecklistItem("calibration", title, "warn", f"calibration only under {', '.join(conditions)}: {_unshifted_why(results)}")
    unfinished = _coverage.missing(results, "calibration")
    if unfinished:
        return ChecklistItem("calibration", title, "warn", f"calibration is {_coverage.why_not_run(results, 'calibration', unfinished)}")
    return ChecklistItem("calibration", title, "warn", "calibration was not evaluated")


def _unshifted_why(results: Results) -> str:
    """Why a calibration has no condition under attack or corruption: none requested, or why each
    requested section left it no outputs (not declared, excluded with --only, did not run)."""
    declared = (results.threat_model.get("evaluations") or {}).get("calibration")
    conditions = declared.get("conditions", CalibrationSpec().conditions) if isinstance(declared, dict) else CalibrationSpec().conditions
    requested = [c for c in conditions if c != "clean"] if isinstance(conditions, (list, tuple)) else []
    if not requested:
        return "add attacks or corruptions to its conditions"
    reasons = []
    for section in requested:
        entries = [d for d in _coverage.declared(results) if d.section == section and d.name not in NOT_ATTACKS]
        unfinished = [d for d in entries if not d.finished]
        if not entries:
            reasons.append(f"{section} not declared by the threat model")
        elif unfinished:
            reasons.append(f"{section} {_coverage.why_not_run(results, section, unfinished)}")
        else:
            reasons.append(f"{section} finished but left calibration no outputs")
    return "; ".join(reasons)


DIRTY_NOTE = "uncommitted local changes: the code that ran matches no commit"
"""What a report says of a git revision with :data:`robench.results.DIRTY_SUFFIX`."""


def code_recorded(environment: Environment) -> str:
    """The code that ran, in words, as the checklist, the report and summary.md write it:
    ``robench 0.1.0, git 0123abc...`` (the full revision), with :data:`DIRTY_NOTE` for a dirty
    checkout and ``(no git revision recorded)`` outside one."""
    text = f"robench {environment.robench_version}"
    revision = environment.git_revision
    if revision is None:
        return text + " (no git revision recorded)"
    return text + f", git {revision}" + (f" ({DIRTY_NOTE})" if is_dirty(revision) else "")


def _provenance_item(results: Results) -> ChecklistItem:
    title = "Code (robench version, git revision) and checkpoint hash recorded"
    env = results.environment
    sha = results.model.sha256
    code = code_recorded(env)
    if not sha:
        return ChecklistItem("provenance", title, "fail", f"{code}; no checkpoint sha256 (an in-memory model cannot be re-identified)")
    # a revision with local changes names no code anyone can check out: recorded, but not reproducible
    status: Status = "warn" if not env.git_revision or is_dirty(env.git_revision) else "pass"
    return ChecklistItem("provenance", title, status, f"{code}; checkpoint sha256 {short_sha256(sha)}")


def unproven_certificate(evaluation: EvaluationResult) -> str | None:
    """Why a finished certification's settings give up its guarantee (:func:`robench.certify.guarantees.unproven`
    on its declared and resolved parameters), or ``None``; ``None`` for one that did not finish (no
    certificate, and its parameters were not resolved: a default it ran with is not recorded)."""
    if evaluation.status != "success":
        return None
    estimated = evaluation.artifacts.get("power_estimated_layers")
    return unproven(evaluation.artifacts.get("certifier", evaluation.name), _params(evaluation),
                    estimated if isinstance(estimated, list) else None)  # fmt: skip


def _certification_item(results: Results) -> ChecklistItem:
    title = "Certification method, bounds and cost detailed"
    certified = [e for e in results.evaluations if e.section == "certification"]
    claimed = "certified_accuracy" in results.threat_model.get("claims", {})
    if not certified:
        if claimed:
            return ChecklistItem("certification", title, "fail", "the claims include certified accuracy but no certification ran")
        return ChecklistItem("certification", title, "n/a", "no certification claimed")
    problems, shown = [], []
    for e in certified:
        records = [r for r in e.records if r.name == "certified_accuracy"]
        if e.status != "success":
            problems.append(f"{e.key} {e.status}")
            continue
        if not records or any(r.ci_low is None for r in records):
            problems.append(f"{e.key}: no certified accuracy with an interval")
        if not _params(e):
            problems.append(f"{e.key}: parameters not recorded")
        if e.cost.forward_passes <= 0 and e.cost.wall_time_s <= 0:
            problems.append(f"{e.key}: cost not recorded")
        if (reason := unproven_certificate(e)) is not None:
            problems.append(f"{e.key}: {reason}")
        for check in e.checks:  # soundness checks: a broken verified example, a bound below a gradient
            if check.status != "pass":
                problems.append(f"{e.key} {check.name} {check.status}: {check.message}")
        params = ", ".join(f"{k}={show(v)}" for k, v in sorted(_params(e).items()) if v is not None and not isinstance(v, (list, dict)))
        shown.append(f"{e.name} ({params}); {len(records)} certified-accuracy record(s); {e.cost.forward_passes:,} forward passes, {e.cost.wall_time_s:.1f} s")
    cross = certified_but_broken(results)
    for pair in cross:
        if pair["broken"]:
            problems.append(f"{pair['attack']} broke {pair['broken']} of the {pair['certified']} examples {pair['certifier']} certified at the "
                            f"threat model's eps (first {pair['n']}): the certificate or the attack is wrong (a robench bug)")  # fmt: skip
    if cross and not any(p["certified"] for p in cross):
        shown.append("no example certified at the threat model's eps: none to check against the attacks")
    elif cross and not any(p["broken"] for p in cross):
        shown.append("no attack of the run broke a certified example (" + "; ".join(
            f"{c} certified {cross_of[0]['certified']}, attacked by {', '.join(p['attack'] for p in cross_of)}"
            for c, cross_of in _by_certifier(cross).items()) + ")")
    if problems:
        failed = (any(e.status != "success" for e in certified) or any(c.status == "fail" for e in certified for c in e.checks)
                  or any(p["broken"] for p in cross))  # fmt: skip
        status: Status = "fail" if failed else "warn"
        return ChecklistItem("certification", title, status, "; ".join(problems))
    return ChecklistItem("certification", title, "pass", "; ".join(shown))


def _by_certifier(pairs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for pair in pairs:
        grouped.setdefault(pair["certifier"], []).append(pair)
    return grouped


def _claimed_eps(value: Any) -> float | None:
    try:
        return parse_eps(value)
    except ValueError:
        return None


def _claims_match_item(results: Results) -> ChecklistItem:
    title = "Evaluation matches the model card's threat model (dataset, norm, eps)"
    claims = results.threat_model.get("claims") or {}
    adversary = results.threat_model.get("adversary") or {}
    asked = [k for k in ("dataset", "norm", "eps", "other_threats") if k in claims]
    if not asked:
        return ChecklistItem("claims_match", title, "n/a", "the threat model records no claimed dataset, norm or eps" + _ignored(claims))
    fails: list[str] = []
    warns: list[str] = []
    ok: list[str] = []
    manifest = str((results.threat_model.get("dataset") or {}).get("manifest", ""))
    if "dataset" in claims:
        (ok if str(claims["dataset"]).lower() in (manifest.lower(), results.dataset.manifest.lower()) else fails).append(
            f"dataset claimed {claims['dataset']}, evaluated {manifest}"
        )
    if "norm" in claims:
        if not adversary:
            fails.append(f"norm {claims['norm']} claimed, but no adversary was evaluated")
        else:
            (ok if str(claims["norm"]).lower() == str(adversary.get("norm")).lower() else fails).append(
                f"norm claimed {claims['norm']}, evaluated {adversary.get('norm')}"
            )
    if "eps" in claims:
        eps = _claimed_eps(claims["eps"])
        if eps is None:
            fails.append(f"claimed eps {claims['eps']!r} is not a radius")
        elif not adversary:
            fails.append(f"eps {format_eps(eps)} claimed, but no adversary was evaluated")
        elif math.isclose(eps, float(adversary["eps"]), rel_tol=1e-6):
            ok.append(f"eps claimed {format_eps(eps)}, evaluated {format_eps(float(adversary['eps']))}")
        else:
            fails.append(f"eps claimed {format_eps(eps)}, evaluated {format_eps(float(adversary['eps']))}")
    others = claims.get("other_threats") or []
    evaluated = {str(adversary.get("norm", "")).lower(), f"{adversary.get('norm', '')}:{adversary.get('eps', '')}".lower()}
    if (results.threat_model.get("evaluations") or {}).get("corruptions"):
        evaluated.add("corruptions")
    for other in others if isinstance(others, list) else [others]:
        if str(other).lower() not in evaluated:
            warns.append(f"robustness to {other} is claimed but outside the evaluated threat model")
    status: Status = "fail" if fails else ("warn" if warns else "pass")
    return ChecklistItem("claims_match", title, status, "; ".join(fails + warns + ok) + _ignored(claims))


def _ignored(claims: dict[str, Any]) -> str:
    unknown = sorted(set(claims) - set(CLAIM_KEYS))
    return f" (ignored claim keys: {', '.join(unknown)})" if unknown else ""


def _claims_numbers_item(results: Results) -> ChecklistItem:
    title = "Claimed accuracies reproduced within the 95% interval"
    claims = results.threat_model.get("claims") or {}
    asked = [k for k in _CLAIMED_METRICS if k in claims]
    if not asked:
        return ChecklistItem("claims_reproduced", title, "n/a", "the threat model records no claimed accuracy")
    fails: list[str] = []
    warns: list[str] = []
    ok: list[str] = []
    adversary = results.threat_model.get("adversary") or {}
    claimed_eps = _claimed_eps(claims["eps"]) if "eps" in claims else None
    other_eps = claimed_eps is not None and bool(adversary) and not math.isclose(claimed_eps, float(adversary["eps"]), rel_tol=1e-6)
    skipped = []
    for key in asked:
        name, prefix = _CLAIMED_METRICS[key]
        record = _first(results, name, prefix)
        claimed = claims[key]
        if other_eps and key in ("robust_accuracy", "certified_accuracy"):
            assert claimed_eps is not None  # other_eps says so
            skipped.append(f"{key} claimed at eps {format_eps(claimed_eps)}, evaluated at {format_eps(float(adversary['eps']))}: not comparable")
            continue
        if not isinstance(claimed, (int, float)) or isinstance(claimed, bool) or not 0 <= claimed <= 1:
            fails.append(f"claimed {key} {claimed!r} is not a fraction in [0, 1]")
            continue
        if key == "mean_corruption_accuracy" and record is not None and is_benchmark_mean(record.condition) is False:
            skipped.append(f"{key} measured over a subset of the 15 benchmark corruptions x 5 severities: not comparable with the claim")
            continue
        if record is None or record.value is None or record.ci_low is None or record.ci_high is None:
            warns.append(f"{key} {_percents(claimed)[0]} claimed but not measured")
            continue
        shown_claim, value, low, high = _percents(claimed, record.value, record.ci_low, record.ci_high)
        measured = f"measured {value} [{low}, {high}]"
        if claimed > record.ci_high:
            fails.append(f"{key}: claimed {shown_claim} is above the {measured}")
        elif claimed < record.ci_low:
            # A measured robust accuracy above the claim suggests a weaker attack than the paper's.
            warns.append(f"{key}: claimed {shown_claim} is below the {measured}")
        else:
            ok.append(f"{key}: claimed {shown_claim}, {measured}")
    source = f" (source: {claims['source']})" if claims.get("source") else ""
    if skipped and not (fails or warns or ok):
        return ChecklistItem("claims_reproduced", title, "n/a", "; ".join(skipped) + source)
    status: Status = "fail" if fails else ("warn" if warns else "pass")
    return ChecklistItem("claims_reproduced", title, status, "; ".join(fails + warns + ok + skipped) + source)


def _percents(*fractions: float) -> list[str]:
    """Fractions as percentages, one decimal unless more are needed to tell different values apart."""
    for decimals in range(1, 6):
        shown = [f"{100 * f:.{decimals}f}%" for f in fractions]
        if len(set(shown)) == len(set(fractions)):
            break
    return shown


def _complete_item(results: Results) -> ChecklistItem:
    title = "Run finished and every evaluation succeeded"
    failed = [f"{e.key}: {e.error or e.status}" for e in results.evaluations if e.status not in ("success", "skipped")]
    if results.status != "success":
        absent = [d.key for d in _coverage.missing(results) if d.status is None]
        without = f"; declared but without results: {', '.join(absent)}" if absent else ""
        return ChecklistItem("complete", title, "fail", f"run status {results.status}: {results.error or 'no error recorded'}{without}")
    if failed:
        return ChecklistItem("complete", title, "fail", "; ".join(failed))
    return ChecklistItem("complete", title, "pass", f"{len(results.evaluations)} evaluation(s) succeeded")


def checklist(results: Results) -> list[ChecklistItem]:
    """The best-practice checklist of a run, in report order (see the module docstring).

    Args:
        results: A run's results.

    Returns:
        One :class:`ChecklistItem` per item: ``threat_model``, ``strong_attacks``,
        ``masking_checks``, ``clean_and_robust``, ``calibration``, ``provenance``,
        ``certification``, ``claims_match``, ``claims_reproduced``, ``complete``.
    """
    return [
        _threat_item(results),
        _attacks_item(results),
        _masking_item(results),
        _clean_robust_item(results),
        _calibration_item(results),
        _provenance_item(results),
        _certification_item(results),
        _claims_match_item(results),
        _claims_numbers_item(results),
        _complete_item(results),
    ]


def checklist_lines(results: Results, width: int = 160) -> list[str]:
    """The checklist's warn and fail verdicts, one line each, for a terminal summary: a number
    copied from the terminal keeps its qualification (``warn  Strong attacks: no strong ...``)."""
    lines = []
    for item in checklist(results):
        if item.status in ("warn", "fail"):
            text = f"{item.status:<4}  {item.title}: {item.evidence}"
            lines.append(text if len(text) <= width else text[: width - 3] + "...")
    return lines
