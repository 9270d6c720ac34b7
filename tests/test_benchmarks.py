"""The benchmark scripts run, on the CPU at toy sizes: a lent GPU machine's 15 minutes are too few to
find out there that a script no longer starts. No figure is checked (speed is measured in
``benchmarks/``, not by tests); each run must finish and print the table or JSON it reports."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.filterwarnings("ignore:Please import `gaussian_filter`:DeprecationWarning")  # foolbox 3.3, imported by bench_attacks
@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("bench_certify.py", ["--device", "cpu", "--model", "small", "--images", "1", "--n", "40", "--batch", "20", "--seconds", "0.05"], "robench_over_cohen"),
        ("bench_attacks.py", ["--device", "cpu", "--model", "small_cnn", "--batch", "2", "--repeats", "1"], "| robench PGD (exact) |"),
        ("bench_corruptions.py", ["--device", "cpu", "--side", "32", "--n", "2", "--n-reference", "1", "--repeats", "1", "--table", "cifar10"], "| saturate |"),
        ("bench_corruptions.py", ["--sweep", "--device", "cpu", "--model", "small", "--n", "2", "--batch", "2"], "robench corruptions sweep"),
    ],
    ids=["certify", "attacks", "corruptions", "sweep"],
)
def test_benchmark_runs_at_toy_size(script: str, args: list[str], expected: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setattr(sys, "argv", [script, *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put benchmarks/ on the path
    runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    out = capsys.readouterr().out
    assert expected in out, out[-2000:]
    if script == "bench_certify.py":
        result = json.loads(out)
        assert result["robench_exact_samples_per_s"] > 0 and result["cohen_loop_samples_per_s"] > 0


def test_the_gpu_session_steps_use_flags_the_scripts_take() -> None:
    """benchmarks/gpu_session.sh runs only on a lent GPU machine; a flag renamed in a script would
    fail its step there, minutes of device time lost. Each step's flags must be the script's own."""
    import re
    import shlex

    session = (BENCHMARKS / "gpu_session.sh").read_text()
    steps = re.findall(r'^step (\w+) (\d+) "(.*)"$', session, flags=re.MULTILINE)
    assert len(steps) >= 9
    for name, _, command in steps:
        words = shlex.split(command.replace("$py", "python").replace("$gpu_files", ""))
        script = next((word for word in words if word.startswith("benchmarks/")), None)
        if script is None:
            assert name == "gpu_tests" and "-m gpu" in command
            continue
        source = (BENCHMARKS.parent / script).read_text()
        taken = set(re.findall(r'add_argument\("(--[\w-]+)"', source))
        used = {word for word in words if word.startswith("--")}
        assert used <= taken, (name, used - taken)
