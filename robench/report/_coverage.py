"""What the threat model declares against what results.json holds (interrupted or partial runs).

The runner runs the declared evaluations in a fixed order (``clean``, each attack entry as
``attacks/<id or name>``, ``corruptions``, ``stability``, each certifier as
``certification/<id or name>``, ``calibration``) and writes results.json after each one, so an
interrupted run holds a prefix of them. The report must tell "declared, but did not run" apart from
"not declared".
"""

from __future__ import annotations

from dataclasses import dataclass

from robench.results import Results
from robench.threat_model import SECTION_ORDER

_LIST_SECTIONS = ("attacks", "certification")
# Entries of the attacks section that are not attacks, though registered as such.
NOT_ATTACKS = frozenset({"gradient_masking"})


@dataclass(frozen=True)
class Declared:
    """One declared evaluation and how far it got.

    Attributes:
        section: ``attacks``, ``corruptions``...
        key: Evaluation key (``attacks/pgd``, ``corruptions``).
        name: Registry name of the entry (``pgd``), or the section.
        status: The evaluation's status in results.json, ``None`` when it never started.
    """

    section: str
    key: str
    name: str
    status: str | None

    @property
    def finished(self) -> bool:
        """Whether it ran to the end (``success``)."""
        return self.status == "success"


def declared(results: Results) -> list[Declared]:
    """Every evaluation the threat model declares, in run order, with its status in ``results``."""
    evaluations = results.threat_model.get("evaluations") or {}
    statuses = {e.key: e.status for e in results.evaluations}
    out = []
    for section in SECTION_ORDER:
        value = evaluations.get(section, section == "clean")
        if section in _LIST_SECTIONS:
            for entry in value or []:
                name = str(entry.get("name", "?"))
                key = f"{section}/{entry.get('id') or name}"
                out.append(Declared(section, key, name, statuses.get(key)))
        elif value:
            out.append(Declared(section, section, section, statuses.get(section)))
    return out


def excluded_by_only(results: Results, section: str) -> bool:
    """Whether ``section`` was left out with ``--only``."""
    only = results.options.get("only")
    return section not in only if only else False


def declared_attacks(results: Results, checks: bool = False) -> list[Declared]:
    """The declared ``attacks`` entries that are attacks (``checks``: the entries that are checks
    instead, :data:`NOT_ATTACKS`)."""
    return [d for d in declared(results) if d.section == "attacks" and (d.name in NOT_ATTACKS) == checks]


def missing(results: Results, section: str | None = None) -> list[Declared]:
    """Declared evaluations (of ``section``) that did not finish: never started, or started/error."""
    return [d for d in declared(results) if not d.finished and (section is None or d.section == section)]


def run_state(results: Results) -> str:
    """The run's status in words, for "did not run (run status ...)"."""
    text = f"run status {results.status}"
    if results.error:
        text += f": {results.error}"
    elif results.status == "started":
        text += ": interrupted or still running"
    return text


def why_not_run(results: Results, section: str, entries: list[Declared] | None = None) -> str:
    """Why a section (or some of its entries) has no results, as a clause without a full stop
    (``declared, but did not run (run status started: interrupted or still running)``)."""
    entries = missing(results, section) if entries is None else entries
    if not entries:
        return "this evaluation did not run: the threat model does not declare it" + (" or it was excluded with --only" if results.options.get("only") else "")
    if excluded_by_only(results, section):
        return "declared, but excluded with --only"
    started = [f"{d.key} {d.status}" for d in entries if d.status is not None]
    if started:
        return f"declared, but did not finish ({', '.join(started)}; {run_state(results)})"
    return f"declared, but did not run ({run_state(results)})"
