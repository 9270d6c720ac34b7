"""Small results.json fixtures in the real schema: a strong, a weak-only, a certified and an interrupted evaluation.

``python -m tests.report.fixtures`` rewrites ``tests/report/data/*.json``; a test checks the files
equal what this module builds, so the two cannot drift.
"""

from __future__ import annotations

from pathlib import Path

from robench.certify.certifiers import SmoothingParams
from robench.results import Check, Cost, DatasetInfo, Environment, EvaluationResult, MetricRecord, ModelInfo, Results
from robench.threat_model import ThreatModel

DATA = Path(__file__).parent / "data"
N = 500
EPS_8 = 8 / 255


def _threat(adversary: dict | None, evaluations: dict, claims: dict) -> dict:
    declared = {"schema_version": 1, "name": "fixture", "dataset": {"manifest": "cifar10", "split": "test", "n_examples": N},
                "evaluations": evaluations, "claims": claims}  # fmt: skip
    if adversary is not None:
        declared["adversary"] = adversary
    return ThreatModel.model_validate(declared).model_dump(mode="json")


def _base(threat: dict, git: str | None) -> dict:
    return {
        "status": "success",
        "started_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-01T00:10:00+00:00",
        "seed": 0,
        "threat_model": threat,
        "threat_model_sha256": "ab" * 32,
        "model": ModelInfo(source="model.safetensors", format="safetensors", sha256="cd" * 32, arch="wrn_28_10", num_classes=10),
        "dataset": DatasetInfo(manifest="cifar10", manifest_sha256="ef" * 32, format="cifar_python", split="test",
                               n_examples=N, num_classes=10, input_shape=[3, 32, 32], verified="checksums"),
        "environment": Environment(robench_version="0.1.0", python="3.11.9", packages={"torch": "2.4.0"}, git_revision=git,
                                   device="cuda", device_name="NVIDIA H100"),
    }


def _clean(correct: int) -> EvaluationResult:
    return EvaluationResult(
        key="clean", section="clean", name="clean", status="success",
        cost=Cost(wall_time_s=1.5, forward_passes=N, device="cuda", batch_size=500, batches=1),
        records=[MetricRecord.proportion("clean", "accuracy", correct, N)],
    )  # fmt: skip


def _attack(name: str, params: dict, robust: int, chain: str, worst: int, clean: int, eps: float = EPS_8) -> EvaluationResult:
    key = f"attacks/{name}"
    condition = {"attack": name, "norm": "Linf", "eps": eps, "goal": "untargeted", "kind": "white-box"}
    records = [
        MetricRecord.proportion(key, "clean_accuracy", clean, N, condition),
        MetricRecord.proportion(key, "robust_accuracy", robust, N, condition),
        # over the clean-correct examples, and over the successes: each with its own n
        MetricRecord.proportion(key, "attack_success_rate", clean - robust, clean, condition),
        MetricRecord(evaluation=key, name="mean_perturbation_norm", value=eps, n=clean - robust, condition=condition, unit="linf"),
        MetricRecord(evaluation=key, name="median_perturbation_norm", value=eps, n=clean - robust, condition=condition, unit="linf"),
        MetricRecord.proportion(key, "robust_accuracy_per_class", robust // 10, N // 10, {**condition, "class": 0}),
        MetricRecord(evaluation=key, name="worst_class_gap", value=0.12, n=N, condition=condition, unit="fraction"),
        MetricRecord.proportion(key, "worst_case_robust_accuracy", worst, N, {**condition, "attack": chain}),
    ]
    return EvaluationResult(
        key=key, section="attacks", name=name, status="success", declared={"name": name, "id": None, "params": params},
        resolved=params, cost=Cost(wall_time_s=30.0, forward_passes=50 * N, backward_passes=40 * N, device="cuda"),
        records=records, artifacts={"knowledge": "white-box"},
    )  # fmt: skip


def _calibration(conditions: list[str]) -> EvaluationResult:
    records = []
    for condition in conditions:
        extra = {"condition": condition} if condition == "clean" else {"condition": condition, "attack": "autoattack"}
        records.append(MetricRecord(evaluation="calibration", name="ece", value=0.05, n=N, ci_low=0.03, ci_high=0.07,
                                    condition=extra, unit="probability", interval="bootstrap"))  # fmt: skip
    return EvaluationResult(key="calibration", section="calibration", name="calibration", status="success", records=records,
                            cost=Cost(wall_time_s=0.2, device="cuda"), artifacts={"reliability": [_panel(c) for c in conditions]})  # fmt: skip


def _panel(condition: str) -> dict:
    """A reliability panel as the calibration evaluation stores it (15 bins; empty bins have no accuracy)."""
    counts = [0] * 9 + [5, 10, 15, 30, 90, 350]
    accuracy = [None] * 9 + [0.4, 0.5, 0.6, 0.7, 0.8, 0.95]
    edges = [i / 15 for i in range(16)]
    confidence = [None if n == 0 else (a + b) / 2 for n, a, b in zip(counts, edges[:-1], edges[1:])]
    extra = {"condition": condition} if condition == "clean" else {"condition": condition, "attack": "autoattack"}
    return {"label": condition, "condition": extra, "ece": 0.05, "edges": edges, "count": counts, "confidence": confidence, "accuracy": accuracy}


def strong() -> Results:
    """AutoAttack + PGD, calibration under attack, masking check passed, claims reproduced."""
    adversary = {"goal": "untargeted", "knowledge": "white-box", "norm": "Linf", "eps": "8/255"}
    evaluations = {"attacks": [{"name": "pgd", "params": {"steps": 20}}, {"name": "autoattack", "params": {"version": "standard"}},
                               {"name": "gradient_masking"}],
                   "calibration": {"conditions": ["clean", "attacks"]}}  # fmt: skip
    threat = _threat(adversary, evaluations, {"source": "model card", "norm": "Linf", "eps": "8/255", "robust_accuracy": 0.55})
    masking = EvaluationResult(
        key="attacks/gradient_masking", section="attacks", name="gradient_masking", status="success",
        checks=[Check(name="eps_monotone", status="pass", message="robust accuracy falls as eps grows",
                      evidence={"eps": [0.01, 0.03], "n": 200, "eligible": 176, "budget": {"pgd_steps": 20, "pgd_restarts": 1}})],
    )  # fmt: skip
    results = Results(**_base(threat, "0123456789abcdef0123456789abcdef01234567"))
    results.evaluations = [
        _clean(440),
        _attack("pgd", {"steps": 20, "restarts": 1, "loss": "ce"}, 300, "pgd", 300, 440),
        _attack("autoattack", {"version": "standard", "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"]}, 280, "pgd+autoattack", 280, 440),
        masking,
        _calibration(["clean", "attack"]),
    ]
    return results


def weak() -> Results:
    """FGSM only, at another eps than the model card claims, beating every published CIFAR-10 entry."""
    adversary = {"goal": "untargeted", "knowledge": "white-box", "norm": "Linf", "eps": "8/255"}
    threat = _threat(adversary, {"attacks": [{"name": "fgsm"}]},
                     {"norm": "Linf", "eps": "4/255", "robust_accuracy": 0.95, "other_threats": ["L2:0.5"]})  # fmt: skip
    results = Results(**_base(threat, None))
    results.evaluations = [_clean(470), _attack("fgsm", {"loss": "ce"}, 400, "fgsm", 400, 470)]
    return results


def certified() -> Results:
    """Randomized smoothing at L2 radius 0.5 with its parameters and cost; no attack."""
    adversary = {"goal": "untargeted", "knowledge": "white-box", "norm": "L2", "eps": 0.5}
    params = {"sigma": 0.25, "n0": 100, "n": 100000, "alpha": 0.001}
    threat = _threat(adversary, {"certification": [{"name": "smoothing", "params": params}]},
                     {"norm": "L2", "eps": 0.5, "certified_accuracy": 0.43})  # fmt: skip
    key = "certification/smoothing"
    condition = {"certifier": "smoothing", "sigma": 0.25}
    records = [MetricRecord.proportion(key, "certified_accuracy", k, N, {**condition, "radius": r}) for r, k in ((0.0, 370), (0.25, 300), (0.5, 215))]
    records.append(MetricRecord.proportion(key, "certified_accuracy", 215, N, {**condition, "threat_norm": "L2", "threat_eps": 0.5}))
    records.append(MetricRecord(evaluation=key, name="average_certified_radius", value=0.42, n=N, condition=condition, unit="l2"))
    resolved = {**SmoothingParams(**params).model_dump(mode="json"), "radii": [0.0, 0.25, 0.5]}
    curve = [{"radius": r.condition["radius"], "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high} for r in records[:3]]
    smoothing = EvaluationResult(
        key=key, section="certification", name="smoothing", status="success", declared={"name": "smoothing", "id": None, "params": params},
        resolved=resolved, records=records, cost=Cost(wall_time_s=600.0, forward_passes=100_100 * N, device="cuda"),
        artifacts={"certifier": "smoothing", "norm": "L2", "params": resolved, "curve": curve, "noisy_samples": 100_100 * N},
    )  # fmt: skip
    results = Results(**_base(threat, "0123456789abcdef0123456789abcdef01234567"))
    results.evaluations = [_clean(410), smoothing]
    return results


def partial() -> Results:
    """The strong fixture's threat model, interrupted after PGD: autoattack, gradient_masking and
    calibration are declared but have no results, and the run's status is still ``started``."""
    results = strong()
    results.status, results.finished_at = "started", None
    results.evaluations = [e for e in results.evaluations if e.key in ("clean", "attacks/pgd")]
    return results


FIXTURES = {"strong": strong, "weak": weak, "certified": certified, "partial": partial}


def text(name: str) -> str:
    """The JSON text of fixture ``name`` as results.save writes it."""
    return FIXTURES[name]().model_dump_json(indent=2)


if __name__ == "__main__":  # pragma: no cover
    DATA.mkdir(exist_ok=True)
    for fixture in FIXTURES:
        (DATA / f"{fixture}.json").write_text(text(fixture))
        print(f"wrote {DATA / fixture}.json")
