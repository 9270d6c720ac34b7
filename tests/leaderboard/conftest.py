"""A tiny RobustBench ``model_info`` folder in the official format (percent strings, quirks included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_MODEL_INFO = ROOT.parent / "shared" / "leaderboards" / "robustbench" / "model_info"

# (id, clean, autoattack, external, eps, reported): the quirks of the real files: "0.031" eps,
# `external` below `autoattack_acc`, `reported` blank, null or "null".
LINF = [
    ("Alpha2024Big", "93.10", "71.00", None, "8/255", "71.00"),
    ("Beta2023Ext", "92.00", "70.50", "69.00", "8/255", ""),
    ("Gamma2021", "88.25", "60.00", None, "8/255", None),
    ("Delta2020", "85.00", "55.10", None, "8/255", "null"),
    ("Eps2019Old", "84.00", "58.00", None, "0.031", "59.0"),
    ("Zeta2019", "80.00", "44.44", None, "8/255", "47.0"),
]
CORRUPTIONS = [("Alpha2024Big", "93.10", "80.00"), ("Standard", "94.78", "73.46"), ("Aug2022", "95.00", "85.50")]


def _write(folder: Path, name: str, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(info, indent=2))


def write_model_info(root: Path) -> Path:
    """Write the fixture folder under ``root/model_info`` with a README naming a commit; return it."""
    base = root / "model_info"
    for name, clean, aa, external, eps, reported in LINF:
        info = {"link": "https://arxiv.org/abs/0000.00000", "name": f"Paper {name}", "authors": "A. B", "additional_data": name.startswith("Alpha"),
                "number_forward_passes": 1, "dataset": "cifar10", "venue": "ICML 2024<br>", "architecture": "WRN-28-10",
                "eps": eps, "clean_acc": clean, "reported": reported, "autoattack_acc": aa, "unreliable": name == "Zeta2019"}  # fmt: skip
        if external is not None:
            info["external"] = external
        _write(base / "cifar10" / "Linf", name, info)
    for name, clean, corr in CORRUPTIONS:
        info = {"link": "", "name": name, "authors": "", "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10",
                "venue": "N/A", "architecture": "WRN", "eps": None, "clean_acc": clean, "reported": corr, "corruptions_acc": corr}  # fmt: skip
        _write(base / "cifar10" / "corruptions", name, info)
    (root / "README.md").write_text("- Commit: `" + "1" * 40 + "` (2025-03-31, \"merge\")\n")
    return base


@pytest.fixture
def model_info(tmp_path: Path) -> Path:
    return write_model_info(tmp_path / "rb")
