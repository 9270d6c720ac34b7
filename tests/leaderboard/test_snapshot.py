"""The leaderboard snapshot equals the raw RobustBench files, read independently with pandas."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from robench._errors import ConfigError, DataError
from robench.cli import main
from robench.leaderboard import DEFAULT_SNAPSHOT, build_snapshot, load_snapshot, sync_snapshot
from tests.leaderboard.conftest import SHARED_MODEL_INFO


def _raw_board(folder: Path) -> pd.DataFrame:
    """The ranked number of every file as RobustBench's leaderboard computes it (ACC_FIELDS)."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        info = json.loads(path.read_text())
        if folder.name == "corruptions":
            ranked = info["corruptions_acc"]
        else:
            ranked = info.get("external") or info["autoattack_acc"]
        rows.append({"id": path.stem, "clean": float(info["clean_acc"]) / 100, "ranked": float(ranked) / 100, "eps": info.get("eps")})
    return pd.DataFrame(rows).sort_values(["ranked", "id"], ascending=[False, True], kind="mergesort").reset_index(drop=True)


def _check_against_raw(model_info: Path) -> None:
    snapshot = build_snapshot(model_info)
    folders = sorted(p for p in model_info.glob("*/*") if p.is_dir() and p.name in ("Linf", "L2", "corruptions"))
    assert sorted(snapshot.boards) == [f"{p.parent.name}/{p.name}" for p in folders]
    for folder in folders:
        raw = _raw_board(folder)
        board = snapshot.boards[f"{folder.parent.name}/{folder.name}"]
        assert [e.id for e in board.entries] == list(raw["id"])
        assert [e.robust_accuracy for e in board.entries] == pytest.approx(list(raw["ranked"]), abs=1e-9)
        assert [e.clean_accuracy for e in board.entries] == pytest.approx(list(raw["clean"]), abs=1e-9)
    assert snapshot.count == sum(len(list(f.glob("*.json"))) for f in folders)


def test_snapshot_matches_raw_fixture(model_info: Path) -> None:
    _check_against_raw(model_info)
    snapshot = build_snapshot(model_info, synced_on=date(2025, 5, 1))
    linf = snapshot.boards["cifar10/Linf"]
    beta = next(e for e in linf.entries if e.id == "Beta2023Ext")
    assert (beta.robust_source, beta.robust_accuracy, beta.autoattack_accuracy, beta.reported_accuracy) == ("external", 0.69, 0.705, None)
    assert next(e for e in linf.entries if e.id == "Eps2019Old").eps_value == pytest.approx(0.031)
    assert next(e for e in linf.entries if e.id == "Zeta2019").unreliable
    assert linf.entries[0].venue == "ICML 2024"  # the <br> of the raw venue is gone
    assert snapshot.source["commit"] == "1" * 40 and snapshot.source["commit_date"] == "2025-03-31"
    assert snapshot.source["synced_on"] == "2025-05-01"


@pytest.mark.skipif(not SHARED_MODEL_INFO.is_dir(), reason="the RobustBench model_info folder of ../shared is not here")
def test_snapshot_matches_raw_robustbench() -> None:
    _check_against_raw(SHARED_MODEL_INFO)


@pytest.mark.skipif(not SHARED_MODEL_INFO.is_dir(), reason="the RobustBench model_info folder of ../shared is not here")
def test_shipped_snapshot_is_up_to_date() -> None:
    shipped = load_snapshot()
    fresh = build_snapshot(SHARED_MODEL_INFO)
    assert shipped.boards == fresh.boards
    assert shipped.source["commit"] == fresh.source["commit"]


def test_shipped_snapshot_covers_the_issue_boards() -> None:
    shipped = load_snapshot(DEFAULT_SNAPSHOT)
    wanted = {"cifar10/Linf", "cifar10/L2", "cifar10/corruptions", "cifar100/Linf", "cifar100/corruptions", "imagenet/Linf", "imagenet/corruptions"}
    assert wanted <= set(shipped.boards)
    assert {"path", "synced_on", "commit"} <= set(shipped.source)
    raw = json.loads(DEFAULT_SNAPSHOT.read_text())
    assert raw["count"] == shipped.count == sum(b["count"] for b in raw["boards"].values())


def test_round_trip(model_info: Path, tmp_path: Path) -> None:
    written = sync_snapshot(model_info, tmp_path / "snap.json")
    assert load_snapshot(tmp_path / "snap.json") == written


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not a model_info JSON file"), ('{"clean_acc": "abc", "autoattack_acc": "50", "eps": "8/255"}', "expected a percentage"),
     ('{"clean_acc": "150", "autoattack_acc": "50", "eps": "8/255"}', "outside [0, 100]"), ("[1, 2]", "expected a JSON object"),
     ('{"clean_acc": "90", "autoattack_acc": "50", "eps": "8/0"}', "eps")],
)  # fmt: skip
def test_bad_files_are_data_errors(model_info: Path, content: str, message: str) -> None:
    (model_info / "cifar10" / "Linf" / "Broken.json").write_text(content)
    with pytest.raises(DataError, match=message.replace("[", r"\[")):
        build_snapshot(model_info)


def test_bad_folders_and_snapshots_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        build_snapshot(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no <dataset>"):
        build_snapshot(tmp_path / "empty")
    for text in ("{", '{"schema_version": 9}', '{"schema_version": 1, "boards": {"x": {}}}'):
        (tmp_path / "s.json").write_text(text)
        with pytest.raises(ConfigError):
            load_snapshot(tmp_path / "s.json")
    with pytest.raises(ConfigError, match="leaderboard sync"):
        load_snapshot(tmp_path / "absent.json")


def test_cli_sync(model_info: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "board.json"
    assert main(["leaderboard", "sync", "--from", str(model_info), "--out", str(out)]) == 0
    assert "9 entries" in capsys.readouterr().out and load_snapshot(out).count == 9
    assert main(["leaderboard", "sync", "--from", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("robench: error: ")
