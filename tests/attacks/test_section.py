"""The attacks section end to end through robench.evaluate(), its records, hand-offs and report."""

from __future__ import annotations

import pytest
import torch

from robench.results import Results

from .conftest import make_threat, record, run_section

pytest.importorskip("pyautoattack")
pytest.importorskip("foolbox")


@pytest.fixture(scope="module")
def results(trained_net) -> Results:
    from robench.runner import evaluate

    threat = make_threat(
        [
            {"name": "fgsm"},
            {"name": "pgd", "params": {"steps": 5}},
            {"name": "autoattack", "params": {"version": "custom", "attacks": ["apgd-ce", "square"], "n_iter": 5, "square_queries": 10}},
            {"name": "fmn", "params": {"steps": 5}},
            {"name": "square", "params": {"n_queries": 10}},
            {"name": "gradient_masking", "params": {"n_examples": 12, "steps": 3, "eps_factors": [1.0, 2.0], "square_queries": 20}},
        ],
        eps=0.1,
    )
    return evaluate(trained_net, threat, n_examples=12, device="cpu", progress=False, batch_size=12)


def test_records_and_worst_case(results):
    keys = [e.key for e in results.evaluations]
    assert keys == ["clean", "attacks/fgsm", "attacks/pgd", "attacks/autoattack", "attacks/fmn", "attacks/square", "attacks/gradient_masking"]
    worst = results.records(name="worst_case_robust_accuracy")
    values = [r.value for r in worst]
    assert values == sorted(values, reverse=True)  # running per-example minimum over attacks
    for evaluation in results.evaluations[1:6]:
        robust = record(evaluation, "robust_accuracy")
        assert robust.n == 12 and robust.ci_low <= robust.value <= robust.ci_high
        assert robust.value <= record(evaluation, "clean_accuracy").value
        per_class = [r for r in evaluation.records if r.name == "robust_accuracy_per_class"]
        assert sum(r.n for r in per_class) == 12
    assert results.evaluation("attacks/square").artifacts["knowledge"] == "score-based"
    assert results.evaluation("attacks/pgd").resolved["rel_step_size"] == pytest.approx(0.5)
    masking = results.evaluation("attacks/gradient_masking")
    names = {c.name for c in masking.checks}
    declared = [c for c in masking.checks if c.evidence.get("source", "").startswith("declared attacks")]
    strongest = min(record(results.evaluation(f"attacks/{k}"), "robust_accuracy").value for k in ("pgd", "autoattack", "fmn"))
    assert declared and all(c.evidence.get("iterative", c.evidence.get("white_box")) == strongest for c in declared)
    assert {"white_box_at_least_black_box", "iterative_at_least_single_step", "declared_iterative_at_least_single_step"} <= names
    # AutoAttack's warnings are checked once, by its own evaluation (with its n), not again among the masking checks
    assert "autoattack_warnings" not in names
    assert [c.name for c in results.evaluation("attacks/autoattack").checks] == ["autoattack_own_checks"]
    every = [c.name for e in results.evaluations for c in e.checks]
    assert len(every) == len(set(every))  # no two checks share a name


def test_handoff_for_calibration(handle, mnist_test):
    threat = make_threat([{"name": "pgd", "params": {"steps": 3}}])
    output, ctx = run_section(handle, mnist_test.subset(16), threat)
    shared = ctx.shared["attacks/pgd"]
    assert shared["probs"].shape == (16, 10) and torch.allclose(shared["probs"].sum(1), torch.ones(16))
    assert shared["labels"].shape == (16,) and shared["robust"].dtype == torch.bool
    assert float(shared["robust"].float().mean()) == pytest.approx(record(output, "robust_accuracy").value)


def test_report_renders(results):
    from robench.report.render import render_html
    from robench.report.sections.attacks import build

    section = build(results)
    assert section["breakdowns"][0]["rows"][0]["attack"] == "clean"
    assert section["curve_figure"].startswith("data:image/png")
    assert section["min_norm"][0]["norm"] == "Linf"
    html = render_html(results)
    assert "AutoAttack breakdown" in html and "Gradient-masking and sanity checks" in html and "Robust accuracy vs ε" in html
    # the masking entry is no attack: no row of dashes; its sweep is captioned as the weaker sanity check it is
    assert "gradient_masking" not in [r["key"] for r in section["rows"]] and section["masking_entries"] == ["gradient_masking"]
    versus = next(c for c in results.evaluation("attacks/gradient_masking").checks if c.name == "declared_at_least_check_pgd")
    assert (f"the gradient_masking sweep is the gradient-masking entry's own PGD-3 (margin loss, one restart) on the first 12 examples, "
            f"a sanity check weaker than the declared attacks (at ε it leaves {versus.evidence['check_pgd']:.1%} robust where the "
            f"declared attacks leave {versus.evidence['declared']:.1%} of the same examples)") in section["curve_caption"]


def test_report_states_the_pgd_run_progress(results):
    """The convergence table (Carlini et al.: show that the attack converged) states robust accuracy
    at the start, half-way and at the end of PGD's 5 steps, the end being the recorded robust accuracy."""
    from robench.attacks.convergence import robust_after
    from robench.report.render import render_html
    from robench.report.sections.attacks import build

    art = results.evaluation("attacks/pgd").artifacts["convergence"]
    rows = build(results)["convergence"]
    assert [r["key"] for r in rows] == ["pgd"]  # FGSM (one step), AutoAttack, Square and FMN record none
    row = rows[0]
    assert row["end"].value == record(results.evaluation("attacks/pgd"), "robust_accuracy").value
    assert row["half"].value == robust_after(art, 2.5) / 12 and row["tail_steps"] == 1 and row["last_restart"] is None
    html = render_html(results)
    assert "Robust accuracy over the attack's run" in html and "5 gradient steps" in html
    assert f"{100 * row['half'].value:.1f}%" in html


def test_report_counts_the_examples_only_each_attack_broke(results):
    """Per attack, the examples robust to every other attack of the run but broken by it, recomputed
    from each evaluation's packed per-example outcomes."""
    import numpy as np

    from robench.report.sections.attacks import build
    from robench.results import unpack_outcomes

    flags = {}
    for e in results.evaluations:
        if e.section == "attacks" and "robust_accuracy" in e.outcomes:
            n = next(r.n for r in e.records if r.name == "robust_accuracy" and "class" not in r.condition)
            flags[e.key.split("/", 1)[1]] = np.asarray(unpack_outcomes(e.outcomes["robust_accuracy"], n), bool)
    assert {"fgsm", "pgd", "autoattack", "square"} <= set(flags)
    rows = {r["key"]: r for r in build(results)["rows"]}
    for key, robust in flags.items():
        others = np.logical_and.reduce([f for k, f in flags.items() if k != key])
        assert rows[key]["only_it_broke"] == int((others & ~robust).sum()), key


def test_report_section_absent_without_attacks(results):
    from robench.report.sections.attacks import build

    empty = results.model_copy(update={"evaluations": [e for e in results.evaluations if e.section != "attacks"]})
    assert build(empty) is None


def test_attack_ids_cannot_collide_with_internal_hand_offs(handle, mnist_test):
    """Ids such as worst_case or summary name the attack's own hand-off, not robench's bookkeeping."""
    threat = make_threat([{"name": "fgsm", "id": "worst_case"}, {"name": "pgd", "id": "summary", "params": {"steps": 2}}])
    data = mnist_test.subset(20)
    first, ctx = run_section(handle, data, threat, index=0)
    second, ctx = run_section(handle, data, threat, index=1, ctx=ctx)
    worst = record(second, "worst_case_robust_accuracy")
    assert worst.condition["attack"] == "worst_case+summary"
    both = ctx.shared["attacks/worst_case"]["robust"] & ctx.shared["attacks/summary"]["robust"]
    assert worst.value == int(both.sum()) / 20


def test_every_attack_records_how_it_ran_and_the_report_states_it(results, handle, mnist_test):
    """The attack rows showed a step size only as a fraction of eps, and hid random_start: false
    (falsy parameters were dropped); restarts and early stopping were not stated at all. The
    evaluators record the facts of each run; the report reads them, not defaults."""
    from robench.report.render import render_html
    from robench.report.sections.attacks import build

    threat = make_threat([{"name": "pgd", "params": {"steps": 4, "restarts": 2, "random_start": False}}], eps=0.1)
    output, _ = run_section(handle, mnist_test.subset(8), threat)
    facts = output.artifacts["procedure"]
    assert facts["step_size"] == pytest.approx(0.1 * 2.5 / 4) and facts["random_start"] is False
    assert facts["restarts"] == 2 and facts["early_stopping"] is True
    procedures = {e.key.split("/")[1]: e.artifacts.get("procedure") for e in results.evaluations if e.section == "attacks"}
    assert procedures["fgsm"]["step_size"] == pytest.approx(0.1) and procedures["fgsm"]["random_start"] is False
    assert procedures["pgd"]["step_size"] == pytest.approx(0.05) and procedures["pgd"]["restarts"] == 1
    assert procedures["pgd"]["early_stopping"] is False  # one restart: every example runs every step
    assert procedures["square"]["random_start"] is True and procedures["square"]["early_stopping"] is True
    assert procedures["autoattack"]["restarts"] == {"apgd-ce": 5, "square": 1}  # pyautoattack's, as configured
    assert "from 2 x eps = 0.2" in procedures["autoattack"]["step_size_rule"]
    assert procedures["fmn"]["random_start"] is False and procedures["fmn"]["step_size"] == 1.0
    assert procedures["gradient_masking"]["random_start"] == {"pgd": True, "fgsm": False, "square": True}
    edited = results.model_copy(deep=True)
    pgd = edited.evaluation("attacks/pgd")
    pgd.artifacts["procedure"], pgd.resolved = facts, output.resolved
    rows = {row["key"]: row for row in build(edited)["rows"]}
    assert dict(rows["pgd"]["procedure"]) == {
        "step size": "0.0625 (fixed, 0.625 x eps)", "random start": "no", "restarts": "2",
        "early stopping": "yes (an example fooled by a restart is not attacked by the later ones; every restart runs all its steps)"}
    del edited.evaluation("attacks/fgsm").artifacts["procedure"]  # a results file of an older robench
    html = render_html(edited)
    assert "random start: no" in html and "step size: 0.0625 (fixed, 0.625 x eps)" in html and "not recorded" in html


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "pgd", "params": {"steps": 3}},
        {"name": "fgsm"},
        {"name": "square", "params": {"n_queries": 20}},
        {"name": "autoattack", "params": {"version": "custom", "attacks": ["apgd-ce", "square"], "n_iter": 3, "square_queries": 10}},
        {"name": "fmn", "params": {"steps": 5}},
    ],
    ids=lambda entry: entry["name"],
)
def test_the_input_an_unfooled_example_is_scored_at_is_what_the_attack_records(handle, mnist_test, entry):
    """Calibration under attack scores an example the attack did not fool at the input the attack
    returned: PGD's best iterate, but the clean input for AutoAttack, Square and the min-norm attacks,
    so their ECEs mix clean confidences in. Each attack's procedure says which, and says it truly."""
    data = mnist_test.subset(24)
    output, ctx = run_section(handle, data, make_threat([entry], eps=0.1))
    said = output.artifacts["procedure"]["unfooled_at"]
    shared = ctx.shared[f"attacks/{entry['name']}"]
    x, y = data.load(slice(0, len(data)))
    clean = torch.softmax(handle.predict_logits(x), dim=1)
    robust, missed = shared["robust"], clean.argmax(1) != y
    at_clean = torch.isclose(shared["probs"], clean, rtol=1e-4, atol=1e-6).all(dim=1)
    assert int(robust.sum()) >= 5 and int(missed.sum()) >= 1
    # calibration's conditions carry it, and the ECE's label says it (the number mixes clean confidences in)
    from robench.calibration.evaluate import _conditions
    from robench.report.render import record_label
    from robench.results import MetricRecord

    (_, condition, _), = [c for c in _conditions(ctx.shared, ("attacks",))]
    label = record_label(MetricRecord(evaluation="calibration", name="ece", value=0.1, condition=condition))
    assert ("scored clean" in label) == said.startswith("the clean input"), (label, said)
    if said.startswith("the clean input"):
        assert bool(at_clean[robust | missed].all()), said
    else:  # moved (random start, or one step), except where the attack says it leaves them
        assert not bool(at_clean[robust].any()), said
        left = "misclassified clean, which is not attacked" in said
        assert bool(at_clean[missed].all() if left else not at_clean[missed].any()), said


def test_autoattacks_own_check_states_its_examples_and_checks(results) -> None:
    """It read 'n and budget not recorded' in the report and still counted as a pass."""
    from robench.report._labels import check_scope

    check = next(c for e in results.evaluations if e.key == "attacks/autoattack" for c in e.checks)
    assert check.name == "autoattack_own_checks" and check.evidence["n"] == min(results.options.get("batch_size") or 10**9, results.dataset.n_examples)
    scope = check_scope(check)
    assert scope.startswith(f"n = {check.evidence['n']}") and "randomized, range_output" in scope and "square_sr" in scope, scope


def test_l1_sparsity_is_recorded_only_where_the_steps_use_it(handle, mnist_test):
    """FGSM and PGD recorded l1_sparsity 0.95 under an Linf threat model: a parameter of L1 steps,
    not of how these attacks ran (declared, it stays: the user's words are kept)."""
    threat = make_threat([{"name": "pgd", "params": {"steps": 2}}, {"name": "fgsm", "params": {"l1_sparsity": 0.9}}])
    pgd, _ = run_section(handle, mnist_test.subset(8), threat)
    fgsm, _ = run_section(handle, mnist_test.subset(8), threat, index=1)
    assert "l1_sparsity" not in pgd.resolved and fgsm.resolved["l1_sparsity"] == 0.9
    l1, _ = run_section(handle, mnist_test.subset(8), make_threat([{"name": "pgd", "params": {"steps": 2}}], norm="L1", eps=5.0))
    assert l1.resolved["l1_sparsity"] == 0.95
