"""Interrupted runs: what the threat model declares but results.json lacks is "declared, but did not run",
never "not declared"; the headline worst case says it is over the attacks that finished."""

from __future__ import annotations

import re

from robench.report.checklist import checklist
from robench.report.render import headline, render_html
from tests.report import fixtures


def _section(html: str, name: str) -> str:
    start = html.index(f'<h2 id="{name}">')
    return html[start : html.index("<h2", start + 1)]


def test_declared_sections_without_results_say_they_did_not_run() -> None:
    html = render_html(fixtures.partial())
    calibration = _section(html, "calibration")
    assert "Declared, but did not run (run status started: interrupted or still running)." in calibration
    assert "does not declare" not in calibration
    # a section the threat model does not declare still says so
    assert "the threat model does not declare it" in _section(html, "corruptions")


def test_attacks_section_names_the_declared_attacks_that_did_not_run() -> None:
    attacks = _section(render_html(fixtures.partial()), "attacks")
    assert "Declared attack entries without results: autoattack, gradient_masking: declared, but did not run" in attacks


def test_masking_advice_only_when_not_declared() -> None:
    partial = {i.key: i for i in checklist(fixtures.partial())}["masking_checks"]
    assert partial.status == "warn"
    assert "gradient_masking entry is declared, but did not run (run status started" in partial.evidence
    assert "add the gradient_masking" not in partial.evidence
    checks = _section(render_html(fixtures.partial()), "checks")
    assert "declared, but did not run" in checks and "add the" not in checks
    weak = {i.key: i for i in checklist(fixtures.weak())}["masking_checks"]  # not declared there
    assert "add the gradient_masking entry" in weak.evidence


def test_checklist_names_what_did_not_run() -> None:
    items = {i.key: i for i in checklist(fixtures.partial())}
    assert "autoattack declared, but did not run" in items["strong_attacks"].evidence
    assert items["calibration"].evidence.startswith("calibration is declared, but did not run")
    assert "declared but without results: attacks/autoattack, attacks/gradient_masking, calibration" in items["complete"].evidence


def test_headline_card_says_the_worst_case_is_partial() -> None:
    card = headline(fixtures.partial())
    assert card["robust_title"] == "Robust accuracy (worst case over the attacks that finished, 1 of 2 declared)"
    assert card["robust_title"] in render_html(fixtures.partial())
    # gradient_masking is no attack: the strong run's worst case is over all of them
    assert headline(fixtures.strong())["robust_title"] == "Robust accuracy (worst case over pgd, autoattack)"


def test_excluded_with_only_is_not_called_interrupted() -> None:
    results = fixtures.partial()
    results.status, results.options = "success", {"only": ["clean", "attacks"]}
    calibration = _section(render_html(results), "calibration")
    assert re.search(r"Declared, but excluded with --only\.", calibration), calibration


def test_checklist_knows_the_attacks_were_excluded_with_only() -> None:
    """`--only calibration` on a threat model with attacks: the checklist said "fail: no attack
    finished" and advised adding attacks to the calibration conditions, which already held them."""
    results = fixtures.strong()
    results.status, results.options = "success", {"only": ["calibration"]}
    results.evaluations = [e for e in fixtures.strong().evaluations if e.section == "calibration"]
    results.evaluations[0].records = [r for r in results.evaluations[0].records if r.condition["condition"] == "clean"]
    items = {i.key: i for i in checklist(results)}
    assert (items["strong_attacks"].status, items["strong_attacks"].evidence) == ("warn", "the attacks are declared, but excluded with --only")
    assert items["calibration"].evidence == "calibration only under clean: attacks declared, but excluded with --only"
    # without --only, the same gaps are what they were: no attack finished, and no shifted condition asked for
    results.options = {}
    results.threat_model["evaluations"]["calibration"]["conditions"] = ["clean"]
    items = {i.key: i for i in checklist(results)}
    assert (items["strong_attacks"].status, items["strong_attacks"].evidence) == ("fail", "an adversary is declared but no attack finished")
    assert items["calibration"].evidence == "calibration only under clean: add attacks or corruptions to its conditions"
