"""Regenerate the committed example report, ``reports/example/``.

    python scripts/example_report.py [--out reports/example]

Audits the demo's PGD-trained MNIST CNN (``robench demo``'s ``adversarial`` model, trained and cached
if needed) under ``threat_models/mnist-example-audit.yaml``, every section of the report on 200 digits,
and writes ``results.json``, ``report.html``, ``metrics.csv`` and ``summary.md`` there (not the resume
journal). It takes minutes on 2 CPU cores, most of them AutoAttack's (more beside other work; the
report's cost table has the run's own). Run it from a clean checkout (a snapshot worktree), or the
report's provenance item warns that the code matches no commit. ``tests/report/test_example.py``
checks that the committed files still load and render with the current code; rerun this script when
they no longer do, or when the report changes what it shows.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from robench.demo import demo_checkpoint
from robench.report import render_report
from robench.report.exports import write_exports
from robench.runner import evaluate

THREAT_MODEL = "mnist-example-audit"
ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("metrics.csv", "report.html", "results.json", "summary.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "example")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    checkpoint, provenance = demo_checkpoint("adversarial", args.seed)
    # written outside the checkout, then copied in: files the run changed inside it would make the
    # report's and summary's renderer a "+dirty" checkout (the run itself records the clean revision)
    with tempfile.TemporaryDirectory(prefix="robench-example-") as staging:
        staged = Path(staging)
        results = evaluate(checkpoint, THREAT_MODEL, arch="small_cnn", out_dir=staged, seed=args.seed, device="cpu", progress=True,
                           model_provenance=provenance)  # fmt: skip
        render_report(results, staged / "report.html")
        write_exports(results, staged)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:  # not the resume journal
            shutil.copyfile(staged / name, args.out / name)
    print(f"wrote {args.out}: {', '.join(OUTPUTS)}")
    return 0 if results.status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
