"""Golden checklist states of the strong, weak-only and certified fixtures, and edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from robench.report.checklist import attack_strengths, checklist
from robench.results import Check, load_results
from tests.report import fixtures

GOLDEN = {
    "strong": {"threat_model": "pass", "strong_attacks": "pass", "masking_checks": "pass", "clean_and_robust": "pass",
               "calibration": "pass", "provenance": "pass", "certification": "n/a", "claims_match": "pass",
               "claims_reproduced": "pass", "complete": "pass"},
    "weak": {"threat_model": "pass", "strong_attacks": "fail", "masking_checks": "warn", "clean_and_robust": "pass",
             "calibration": "warn", "provenance": "warn", "certification": "n/a", "claims_match": "fail",
             "claims_reproduced": "n/a", "complete": "pass"},
    "certified": {"threat_model": "pass", "strong_attacks": "n/a", "masking_checks": "n/a", "clean_and_robust": "pass",
                  "calibration": "warn", "provenance": "pass", "certification": "pass", "claims_match": "pass",
                  "claims_reproduced": "pass", "complete": "pass"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(fixtures.FIXTURES))
def test_fixture_files_are_current(name: str) -> None:
    assert (fixtures.DATA / f"{name}.json").read_text() == fixtures.text(name)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_states(name: str) -> None:
    items = checklist(load_results(fixtures.DATA / f"{name}.json"))
    assert {i.key: i.status for i in items} == GOLDEN[name]
    assert all(i.evidence for i in items)


def test_calibration_evidence_names_the_shifts_then_clean() -> None:
    # the sorted conditions read "ECE measured under attack, clean, corruption"
    item = next(i for i in checklist(fixtures.strong()) if i.key == "calibration")
    conditions = {r.condition.get("condition") for r in fixtures.strong().records("calibration", "ece")}
    shifted = " and ".join(c for c in ("attack", "corruption") if c in conditions)
    assert item.evidence == f"ECE measured under {shifted}" + (", and on clean inputs" if "clean" in conditions else "")
    assert "under clean" not in item.evidence and ", clean," not in item.evidence


def test_weak_evidence_names_the_problems() -> None:
    items = {i.key: i for i in checklist(fixtures.weak())}
    assert "weak-only" in items["strong_attacks"].evidence and "FGSM" in items["strong_attacks"].evidence
    assert "eps claimed 4/255, evaluated 8/255" in items["claims_match"].evidence
    assert "L2:0.5" in items["claims_match"].evidence and "outside the evaluated threat model" in items["claims_match"].evidence
    # the claim is at 4/255, the run at 8/255: the numbers are not comparable
    assert items["claims_reproduced"].status == "n/a" and "not comparable" in items["claims_reproduced"].evidence
    assert items["masking_checks"].status == "warn" and "without gradient-masking sanity checks" in items["masking_checks"].evidence
    same_eps = fixtures.weak().model_copy(deep=True)
    same_eps.threat_model["claims"]["eps"] = same_eps.threat_model["adversary"]["eps"]
    item = next(i for i in checklist(same_eps) if i.key == "claims_reproduced")
    assert item.status == "fail" and "claimed 95.0% is above the measured 80.0%" in item.evidence


def test_claims_are_shown_in_percent_with_the_decimals_that_tell_them_apart() -> None:
    from robench.report.checklist import _percents

    assert _percents(0.6, 0.592, 0.561, 0.623) == ["60.0%", "59.2%", "56.1%", "62.3%"]
    # a claim just above the interval's upper end must not print as equal to it
    assert _percents(0.6004, 0.58, 0.56, 0.6001) == ["60.04%", "58.00%", "56.00%", "60.01%"]


@pytest.mark.parametrize(
    ("params", "randomized", "level"),
    [
        ({"version": "standard"}, False, "strong"),
        ({"version": "custom", "attacks": ["apgd-ce"]}, False, "moderate"),  # one attack of the ensemble
        ({"version": "custom", "attacks": ["apgd-ce", "apgd-t"]}, False, "strong"),
        ({"version": "standard"}, True, "moderate"),  # a randomized model needs EOT (version rand)
        ({"version": "rand"}, True, "strong"),
    ],
)
def test_autoattack_strength(params: dict, randomized: bool, level: str) -> None:
    results = fixtures.weak()
    results.evaluations[1] = fixtures._attack("autoattack", params, 300, "autoattack", 300, 470)
    results.model.randomized = randomized
    assert [s.level for s in attack_strengths(results)] == [level]


@pytest.mark.parametrize(
    ("params", "level"),
    [({"steps": 100, "restarts": 2}, "strong"), ({"steps": 100, "restarts": 1}, "moderate"), ({"steps": 40, "restarts": 5}, "moderate")],
)
def test_pgd_strength(params: dict, level: str) -> None:
    results = fixtures.weak()
    results.evaluations[1] = fixtures._attack("pgd", params, 300, "pgd", 300, 470)
    assert [s.level for s in attack_strengths(results)] == [level]
    assert {i.key: i.status for i in checklist(results)}["strong_attacks"] == ("pass" if level == "strong" else "warn")


def test_l1_pgd_is_never_strong() -> None:
    """PGD-100 x 2 is strong under Linf and L2, not under L1: its sparse steps stall at the box's edges
    (Croce & Hein 2021; in review, MNIST at L1 eps 6: robench PGD-100 65.5% and foolbox SparseL1Descent 67.5% robust, APGD-L1 47.5%)."""
    results = fixtures.weak()
    attack = fixtures._attack("pgd", {"steps": 100, "restarts": 2}, 300, "pgd", 300, 470, eps=6.0)
    for record in attack.records:
        record.condition["norm"] = "L1"
    results.evaluations[1] = attack
    strength = attack_strengths(results)[0]
    assert strength.level == "moderate" and "APGD-L1" in strength.reason


def test_strongest_attack_is_listed_first() -> None:
    """FGSM ran before PGD-40, but the evidence (cut to one line on the console) leads with PGD, the stronger."""
    results = fixtures.weak()
    results.evaluations.append(fixtures._attack("pgd", {"steps": 40, "restarts": 1}, 300, "pgd", 300, 470))
    assert [s.kind for s in attack_strengths(results)][-2:] == ["fgsm", "pgd"]  # run order
    evidence = {i.key: i for i in checklist(results)}["strong_attacks"].evidence
    assert evidence.startswith("no strong attack: pgd: ") and evidence.index("(moderate)") < evidence.index("(weak)")


@pytest.mark.parametrize(("only_autoattack", "only_pgd", "level"), [(20, 0, "moderate"), (4, 0, "strong"), (10, 5, "strong")])
def test_a_strong_budget_outdone_in_the_run_is_moderate(only_autoattack: int, only_pgd: int, level: str) -> None:
    """PGD-100 x 2 is strong by its budget; AutoAttack breaking significantly more of the same examples
    (beyond 1% of n and a one-sided sign test at 1%: 20 vs 0 is p = 1e-6; 4 of 500 is within the
    tolerance; 10 vs 5 is p = 0.15) shows it is not, on this model."""
    import numpy as np
    from scipy.stats import binomtest

    from robench.results import pack_outcomes

    results = fixtures.strong()
    n = fixtures.N
    pgd = np.zeros(n, bool)
    pgd[:300] = True
    aa = pgd.copy()
    aa[:only_autoattack] = False  # robust to PGD, broken by AutoAttack
    aa[300:300 + only_pgd] = True  # broken by PGD, robust to AutoAttack
    for key, flags in (("attacks/pgd", pgd), ("attacks/autoattack", aa)):
        evaluation = results.evaluation(key)
        evaluation.outcomes["robust_accuracy"] = pack_outcomes(flags)
        record = next(r for r in evaluation.records if r.name == "robust_accuracy")
        assert record.n == n
    results.evaluation("attacks/pgd").resolved.update({"steps": 100, "restarts": 2})
    strengths = {s.key: s for s in attack_strengths(results)}
    assert strengths["attacks/pgd"].level == level and strengths["attacks/autoattack"].level == "strong"
    p_value = binomtest(only_autoattack, only_autoattack + only_pgd, 0.5, alternative="greater").pvalue
    if level == "moderate":
        assert f"autoattack broke {only_autoattack} of the 300 examples it left robust ({only_pgd} the other way, one-sided p = {p_value:.2g})" \
            in strengths["attacks/pgd"].reason
    assert {i.key: i.status for i in checklist(results)}["strong_attacks"] == "pass"  # AutoAttack is


def test_an_unconverged_declared_attack_is_moderate_not_a_masking_sign() -> None:
    """declared_converged (the declared PGD still broke examples with its last restart) judges the
    attack's strength: PGD-100 x 2 becomes moderate with the check's finding; the masking item does
    not count it."""
    results = fixtures.strong()
    results.evaluation("attacks/pgd").resolved.update({"steps": 100, "restarts": 2})
    message = "pgd: its last 10 steps broke 0 of 500 examples, its last restart broke 9 (tolerance 1% of n = 5): still improving"
    masking = next(e for e in results.evaluations if e.name == "gradient_masking")
    masking.checks.append(Check(name="declared_converged", status="warn", message=message, evidence={"source": "declared attack pgd", "n": 500}))
    strengths = {s.key: s for s in attack_strengths(results)}
    assert strengths["attacks/pgd"].level == "moderate"
    assert "strong by its budget but not converged (its last 10 steps broke 0 of 500 examples" in strengths["attacks/pgd"].reason
    items = {i.key: i for i in checklist(results)}
    assert items["masking_checks"].status == "pass" and "declared_converged" not in items["masking_checks"].evidence
    assert items["strong_attacks"].status == "pass"  # AutoAttack still is
    masking.checks[-1] = masking.checks[-1].model_copy(update={"status": "pass"})
    assert {s.key: s for s in attack_strengths(results)}["attacks/pgd"].level == "strong"


def test_reduced_autoattack_is_not_strong() -> None:
    results = fixtures.weak()
    results.evaluations[1] = fixtures._attack("autoattack", {"version": "standard", "n_iter": 10}, 300, "aa", 300, 470)
    assert attack_strengths(results)[0].level == "moderate"


def test_failures() -> None:
    results = fixtures.strong()
    results.status, results.error = "error", "NaN logits"
    results.evaluations[2].status = "error"
    results.evaluations[3].checks = [Check(name="loss_increase", status="fail", message="loss never increased")]
    results.model.sha256 = None
    results.threat_model["claims"] = {"robust_accuracy": 55, "norm": "L2", "bogus": 1}
    items = {i.key: i for i in checklist(results)}
    assert items["complete"].status == "fail" and "NaN logits" in items["complete"].evidence
    assert items["strong_attacks"].status == "warn"  # the failed AutoAttack does not count
    assert items["masking_checks"].status == "fail"
    assert items["provenance"].status == "fail"
    assert items["claims_match"].status == "fail" and "ignored claim keys: bogus" in items["claims_match"].evidence
    assert items["claims_reproduced"].status == "fail" and "not a fraction" in items["claims_reproduced"].evidence


def test_adversary_without_attacks_fails_and_claimed_certificate_must_run() -> None:
    results = fixtures.weak()
    results.evaluations = results.evaluations[:1]
    results.threat_model["claims"] = {"certified_accuracy": 0.4}
    items = {i.key: i for i in checklist(results)}
    assert items["strong_attacks"].status == "fail" and items["clean_and_robust"].status == "fail"
    assert items["certification"].status == "fail"


def test_natural_shift_run_has_no_adversary_items(tmp_path: Path) -> None:
    results = fixtures.strong()
    results.threat_model["adversary"] = None
    results.threat_model["claims"] = {}
    results.evaluations = results.evaluations[:1]
    items = {i.key: i.status for i in checklist(results)}
    assert items["threat_model"] == items["strong_attacks"] == items["claims_match"] == "n/a"


def test_a_claimed_mean_corruption_accuracy_is_not_held_against_a_subset_mean() -> None:
    """The model card's 15 x 5 mean against a 2 x 1 sweep: not comparable (was a 'fail')."""
    from robench.results import EvaluationResult, MetricRecord

    def run(condition: dict) -> object:
        r = fixtures.strong().model_copy(deep=True)
        r.threat_model["claims"] = {"mean_corruption_accuracy": 0.8}
        record = MetricRecord.proportion("corruptions", "mean_corruption_accuracy", 550, 1000, condition)
        r.evaluations.append(EvaluationResult(key="corruptions", section="corruptions", name="corruptions", status="success", records=[record]))
        return r

    subset = next(i for i in checklist(run({"benchmark_corruptions": 2, "severities": 1})) if i.key == "claims_reproduced")
    assert subset.status == "n/a" and "not comparable" in subset.evidence
    full = next(i for i in checklist(run({"benchmark_corruptions": 15, "severities": 5})) if i.key == "claims_reproduced")
    assert full.status == "fail" and "claimed 80.0% is above the measured 55.0%" in full.evidence


def test_zero_robust_accuracy_needs_no_stronger_attack() -> None:
    """0% robust under FGSM alone cannot be an optimistic upper bound, and masking cannot hide
    robustness that is not there: n/a with the reason, and no caveat on the headline card."""
    from robench.report.render import headline

    weak = fixtures.weak().model_copy(deep=True)
    for evaluation in weak.evaluations:
        for r in evaluation.records:
            if r.name in ("worst_case_robust_accuracy", "robust_accuracy"):
                r.value, r.ci_low = 0.0, 0.0
    items = {i.key: i for i in checklist(weak)}
    assert items["strong_attacks"].status == "n/a" and "0 of 500 examples robust" in items["strong_attacks"].evidence
    assert items["masking_checks"].status == "n/a"
    assert headline(weak)["robust_caveat"] is None
    assert "fgsm" in headline(weak)["robust_title"]


def test_inconclusive_masking_checks_are_not_a_pass() -> None:
    """A check that could not have failed (0 of 0 clean-correct examples, too small a budget) made
    the checklist say 'no sign of gradient masking'."""
    results = fixtures.strong()
    results.evaluations[3].checks = [
        Check(name="near_zero_at_large_eps", status="inconclusive", message="inconclusive: no clean-correct examples to compare (0 of 0)",
              evidence={"n": 10, "eligible": 0}),
        Check(name="gradients_nonzero_finite", status="pass", message="input gradients finite and nonzero", evidence={"n": 200}),
    ]  # fmt: skip
    item = {i.key: i for i in checklist(results)}["masking_checks"]
    assert item.status == "warn"
    assert item.evidence.startswith("1 of 2 check(s) inconclusive") and "0 of 0" in item.evidence
    # the check's own message starts with its status: the item says it once, not "inconclusive: inconclusive:"
    assert "near_zero_at_large_eps inconclusive: no clean-correct examples" in item.evidence
    assert "inconclusive: inconclusive" not in item.evidence


@pytest.mark.parametrize("value", ["x", [], 2.5, True])
def test_a_damaged_attack_parameter_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: object) -> None:
    """An attack's resolved steps that is not a whole number made the checklist's int() fail: an
    internal error in `robench export`, `robench compare` and the report."""
    import json

    from robench.cli import main
    from tests.report import fixtures

    data = json.loads(fixtures.strong().model_dump_json())
    evaluation = next(e for e in data["evaluations"] if e["key"] == "attacks/pgd")
    evaluation["resolved"]["steps"] = value
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    for argv in (["export", str(path)], ["compare", str(path)], ["report", str(path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err == f"robench: error: results: evaluation 'attacks/pgd': parameter steps is {value!r}, not a whole number\n", (argv, err)


def test_a_record_at_no_eps_is_read_by_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A minimum-norm attack in another norm writes eps None in its records' condition; on a headline
    record the summary's float() and the leaderboard's failed: an internal error in export and compare."""
    from robench.cli import main
    from robench.results import load_results
    from tests.report import fixtures

    results = fixtures.strong()
    for record in results.records():
        if record.name in ("robust_accuracy", "worst_case_robust_accuracy") and "class" not in record.condition:
            record.condition["eps"] = None
    path = tmp_path / "results.json"
    path.write_text(results.model_dump_json())
    assert load_results(path).records(name="robust_accuracy")
    for argv in (["export", str(path)], ["compare", str(path)], ["report", str(path), "--out", str(tmp_path / "r.html")]):
        assert main(argv) == 0, (argv, capsys.readouterr().err)


def test_autoattack_strength_states_what_its_later_attacks_added_and_both_reasons_stand() -> None:
    """AutoAttack's convergence evidence is its breakdown (the later attacks broke k of what APGD-CE
    left); a budget-strong PGD both outdone and unconverged gives both reasons."""
    import numpy as np

    from robench.results import pack_outcomes

    results = fixtures.strong()
    aa = results.evaluation("attacks/autoattack")
    aa.artifacts["breakdown"] = [{"attack": "clean", "n_robust": 440}, {"attack": "apgd-ce", "n_robust": 300},
                                 {"attack": "apgd-t", "n_robust": 284}, {"attack": "fab-t", "n_robust": 281}, {"attack": "square", "n_robust": 280}]  # fmt: skip
    strengths = {s.key: s for s in attack_strengths(results)}
    assert strengths["attacks/autoattack"].reason == (
        "AutoAttack version standard; the attacks after apgd-ce (apgd-t, fab-t, square) broke 20 of the 300 it left robust (1 by the last, square)")
    # it read 'after apgd-ce, apgd-t, fab-t, square broke 20 ...': a list of four attacks, one of them the one before
    pgd = np.zeros(fixtures.N, bool)
    pgd[:300] = True
    robust_aa = pgd.copy()
    robust_aa[:20] = False
    results.evaluation("attacks/pgd").outcomes["robust_accuracy"] = pack_outcomes(pgd)
    aa.outcomes["robust_accuracy"] = pack_outcomes(robust_aa)
    results.evaluation("attacks/pgd").resolved.update({"steps": 100, "restarts": 2})
    masking = next(e for e in results.evaluations if e.name == "gradient_masking")
    masking.checks.append(Check(name="declared_converged", status="warn", message="pgd: its last restart broke 9",
                                evidence={"source": "declared attack pgd"}))  # fmt: skip
    reason = {s.key: s for s in attack_strengths(results)}["attacks/pgd"].reason
    assert "strong by its budget but autoattack broke 20 of the 300 examples it left robust" in reason
    assert reason.endswith("; and not converged (its last restart broke 9)")


def test_a_dirty_checkout_is_recorded_but_not_reproducible() -> None:
    """A revision with local changes names no commit that holds the code that ran: warn, and say why."""
    results = fixtures.strong()
    results.environment.git_revision = "0123456789abcdef0123456789abcdef01234567+dirty"
    item = next(i for i in checklist(results) if i.key == "provenance")
    assert item.status == "warn"
    assert "git 0123456789abcdef0123456789abcdef01234567+dirty (uncommitted local changes: the code that ran matches no commit)" in item.evidence
    results.environment.git_revision = "0123456789abcdef0123456789abcdef01234567"
    item = next(i for i in checklist(results) if i.key == "provenance")
    assert item.status == "pass" and "uncommitted" not in item.evidence


def test_no_attack_breaks_an_example_a_deterministic_certifier_certified() -> None:
    """A real run of PGD, IBP and a Lipschitz bound at one eps: the examples IBP and Lipschitz certify
    (their per-example outcomes) are robust to PGD, example by example; forged outcomes in which
    PGD broke a certified example fail the certification item."""
    import copy

    import torch

    import robench
    from robench.report.checklist import certified_but_broken
    from robench.results import pack_outcomes
    from robench.threat_model import ThreatModel
    from tests._mnist import digits as mnist_digits, fit

    torch.manual_seed(0)
    net = fit(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)),
              mnist_digits("test", 400, 200), epochs=4)  # fmt: skip
    threat = ThreatModel.model_validate({
        "name": "cross", "dataset": {"manifest": "mnist5k"}, "adversary": {"norm": "L2", "eps": 0.05},
        "evaluations": {"attacks": [{"name": "pgd", "params": {"steps": 10}}],
                        "certification": [{"name": "ibp", "params": {"pgd_check_steps": 0}}, {"name": "lipschitz"},
                                          {"name": "smoothing", "params": {"sigma": 0.25, "n0": 10, "n": 50, "n_examples": 8}}]},
    })  # fmt: skip
    results = robench.evaluate(net, threat, n_examples=40, device="cpu", progress=False, batch_size=40)
    pairs = {p["certifier"]: p for p in certified_but_broken(results)}
    assert set(pairs) == {"ibp", "lipschitz"}  # smoothing certifies the smoothed classifier: not compared
    for key, pair in pairs.items():
        record = next(r for r in results.evaluation(f"certification/{key}").records if "threat_eps" in r.condition)
        assert pair["certified"] == round(record.value * record.n) and pair["n"] == 40 and pair["broken"] == 0
    assert pairs["ibp"]["certified"] > 0
    item = next(i for i in checklist(results) if i.key == "certification")
    assert "no attack of the run broke a certified example" in item.evidence
    forged = copy.deepcopy(results)
    forged.evaluation("attacks/pgd").outcomes["robust_accuracy"] = pack_outcomes(torch.zeros(40, dtype=torch.bool))
    item = next(i for i in checklist(forged) if i.key == "certification")
    assert item.status == "fail" and f"pgd broke {pairs['ibp']['certified']} of the {pairs['ibp']['certified']} examples ibp certified" in item.evidence
    from robench.report.render import render_html

    text = " ".join(render_html(forged).split())
    assert f'<code>pgd</code> broke <strong class="status-fail">{pairs["ibp"]["certified"]}</strong> of the' in text
    assert "the certificate or the attack is wrong, a robench bug" in text
    assert "<code>pgd</code> broke 0 of the" in " ".join(render_html(results).split())
    # nothing certified at eps: nothing to check, and said so rather than "broke 0 of the 0"
    for key in ("certification/ibp", "certification/lipschitz"):
        empty = forged.evaluation(key)
        empty.outcomes["certified_accuracy"] = pack_outcomes(torch.zeros(40, dtype=torch.bool))
    item = next(i for i in checklist(forged) if i.key == "certification")
    assert "no example certified at the threat model's eps: none to check against the attacks" in item.evidence
    assert "none to check against the attacks" in render_html(forged)


def test_the_masking_pass_names_its_checks_and_where_the_others_are_counted() -> None:
    """'9 check(s) passed' beside a section listing 10 and an appendix listing 12 left a reader to guess
    which nine: they are named, and the checks counted under other items are pointed to."""
    from robench.attacks.masking_checks import ATTACK_STRENGTH_CHECKS

    example = load_results(Path(__file__).resolve().parents[2] / "reports" / "example" / "results.json")
    evidence = {i.key: i for i in checklist(example)}["masking_checks"].evidence
    masking = [c.name for e in example.evaluations if e.section != "certification" for c in e.checks if c.name not in ATTACK_STRENGTH_CHECKS]
    assert evidence.startswith(f"{len(masking)} check(s) passed (") and all(name in evidence for name in masking)
    assert evidence.endswith("counted elsewhere: attack convergence under strong attacks, certifier soundness under certification")
