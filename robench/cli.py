"""The ``robench`` command line: a thin shell over the public API.

Every user error (bad YAML, unknown names, missing or corrupt files, wrong shapes, NaN outputs)
becomes one line on stderr, ``robench: error: ...``, and exit code 2; results written so far stay
on disk. ``robench validate`` is the exception in form: it lists every problem of each file, one
line each prefixed with the file's path (``t.yaml: adversary.eps: ...``), and exits with 2.
Anything else is an internal error: one line and exit code 1 (set ``ROBENCH_DEBUG=1`` for the
traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143  # 128 + SIGINT / SIGTERM, as shells report them


def _out(message: str = "") -> None:
    print(message, flush=True)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tables
def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with left-aligned first column and right-aligned others."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *[line(r) for r in rows]])


def format_record(record: Any, results: Any = None) -> tuple[str, str]:
    """``(value, 95% CI)`` as text (:meth:`robench.results.MetricRecord.formatted`; with the run's
    ``results``, :meth:`robench.results.Results.formatted`)."""
    return record.formatted() if results is None else results.formatted(record)


def _summary_rows(results: Any) -> list[tuple[str, str, str, str]]:
    """``(metric, value, 95% CI, n)`` rows for the headline records of a run."""
    from robench.report.render import summary_label, summary_records

    return [
        (summary_label(r, results), *format_record(r, results), "" if r.n is None else str(r.n)) for r in summary_records(results)
    ]


def print_summary(results: Any) -> None:
    """Print the headline numbers of one run."""
    rows = _summary_rows(results)
    if rows:
        _out(format_table(("metric", "value", "95% CI", "n"), rows))
    seconds = sum(e.cost.wall_time_s for e in results.evaluations if e.cost is not None)
    _out(f"status {results.status}; evaluation time {seconds:.1f} s on {results.environment.device}")
    _print_checklist(results)


def _print_checklist(results: Any, name: str = "") -> None:
    from robench.report.checklist import checklist_lines

    lines = checklist_lines(results)
    if lines:
        _out(f"best-practice checklist{f' ({name})' if name else ''}: {len(lines)} item(s) to read before quoting the numbers (details in report.html)")
        for line in lines:
            _out(f"  {line}")


# --------------------------------------------------------------------------- commands
def cmd_evaluate(args: argparse.Namespace) -> int:
    from robench.report import render_report
    from robench.report.exports import write_exports
    from robench.runner import evaluate, process_rank

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only is not None else None
    threat_name = Path(args.threat_model).stem
    out = Path(args.out) if args.out else Path("reports") / threat_name
    if args.resume and process_rank()[0] == 0 and not any(out.glob("journal*.bin")):  # any rank's, of any process count
        _err(f"robench: --resume: no journal in {out}, so nothing to continue; starting afresh")
    results = evaluate(
        args.checkpoint,
        args.threat_model,
        arch=args.arch,
        out_dir=out,
        n_examples=args.n_examples,
        only=only,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        resume=args.resume,
        trust_checkpoint=args.trust_checkpoint,
        data_root=args.data_root,
        data_home=args.data_home,
        progress=not args.no_progress,
        randomized=args.randomized,
    )
    if process_rank()[0] != 0:  # under torchrun, rank 0 reports
        return EXIT_OK
    report = render_report(results, out / "report.html")
    exports = write_exports(results, out)
    print_summary(results)
    _out(f"wrote {out / 'results.json'}, {report}, " + ", ".join(str(p) for p in exports.values()))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from robench.demo import demo_table, run_demo

    out = Path(args.out)
    outcomes = run_demo(out, seed=args.seed, device=args.device, progress=not args.no_progress, log=_out)
    _out("")
    _out(demo_table(outcomes))
    for variant, results in outcomes.items():
        _print_checklist(results, variant)
    for variant in outcomes:
        _out(f"wrote {out / variant}/: results.json, report.html, metrics.csv, summary.md")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from robench.threat_model import validate_file

    status = EXIT_OK
    for path in args.files:
        errors = validate_file(path)
        if errors:
            status = EXIT_USAGE
            for error in errors:
                _err(f"{path}: {error}")
        else:
            _out(f"{path}: ok")
    return status


def cmd_ls(args: argparse.Namespace) -> int:
    from robench.registry import KINDS, registry

    registry.load_builtins()
    known = (*KINDS, "threat_model")
    kind = args.kind
    if kind and kind not in known and kind.rstrip("s") in known:  # `robench ls attacks`, `threat_models`
        kind = kind.rstrip("s")
    if kind is not None and kind not in known:  # `robench ls ""` listed everything, as if no kind were named
        import difflib

        from robench._errors import ConfigError

        close = difflib.get_close_matches(kind, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown kind {args.kind!r}; {hint}expected one of {', '.join(known)}")
    kinds = [kind] if kind else list(KINDS)
    if not kind or kind == "threat_model":
        from robench.threat_model import builtin_dir

        _out("threat_model")
        for path in sorted(builtin_dir().glob("*.yaml")):
            _out(f"  {path.stem}")
    for kind in kinds:
        if kind == "threat_model":
            continue
        entries = registry.entries(kind)
        _out(kind)
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            tags = f" [{', '.join(entry.tags)}]" if entry.tags else ""
            _out(f"  {entry.name.ljust(width)}  {entry.doc}{tags}".rstrip())
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from robench.report import render_report
    from robench.results import load_results

    results = load_results(args.results)
    out = Path(args.out) if args.out else Path(args.results).with_name("report.html")
    render_report(results, out)
    _out(f"wrote {out}")
    return EXIT_OK


def cmd_data_verify(args: argparse.Namespace) -> int:
    from robench.data import verify_dataset

    report = verify_dataset(args.name, args.root, checksums=not args.size_only)
    _out(str(report))
    _out(f"{args.name}: ok")
    return EXIT_OK


def cmd_data_freeze(args: argparse.Namespace) -> int:
    from robench.data import freeze_dataset

    report = freeze_dataset(args.name, args.out, args.root)
    _out(str(report))
    trees = [entry.path for entry in report.entries if "*" in entry.path]
    if trees:
        _out(f"note: {len(trees)} image-folder pattern(s) ({', '.join(trees[:3])}{', ...' if len(trees) > 3 else ''}) are recorded by "
             "their number of entries and a digest of their names and sizes: an image rewritten at the same size is not detected")
    _out(f"wrote {args.out}: check this copy of the data with `robench data verify {args.out} --root {report.root}`")
    return EXIT_OK


def cmd_leaderboard_sync(args: argparse.Namespace) -> int:
    from robench.leaderboard import DEFAULT_SNAPSHOT, sync_snapshot

    out = Path(args.out) if args.out else DEFAULT_SNAPSHOT
    snapshot = sync_snapshot(args.source, out)
    for key, board in sorted(snapshot.boards.items()):
        _out(f"  {key}: {len(board.entries)} entries")
    _out(f"wrote {out} ({snapshot.count} entries from {args.source})")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from robench.leaderboard import board_table, compare_runs, compare_to_leaderboard, load_snapshot, runs_table
    from robench.leaderboard.compare import unmatched_reason
    from robench.results import load_results

    first = load_results(args.results)
    if args.other:
        comparison = compare_runs(first, load_results(args.other), args.results, args.other)
        _out(format_table(*runs_table(comparison)))
        for note in comparison.notes:
            _out(f"note: {note}")
        return EXIT_OK
    snapshot = load_snapshot(args.snapshot) if args.snapshot else load_snapshot()
    comparisons = compare_to_leaderboard(first, snapshot)
    if not comparisons:
        _out(unmatched_reason(first, snapshot))
    for board in comparisons:
        at = f" at eps {board.eps}" if board.eps else ""
        _out(f"{board.board}{at}: rank {board.rank or '–'} of {board.n_entries + 1}")
        _out(format_table(*board_table(board)))
        for note in board.notes:
            _out(f"note: {note}")
        if board.scrutiny:
            _out("SCRUTINY: beats the state of the art without a strong attack (AutoAttack)")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from robench.report.exports import markdown_summary, records_csv, write_exports
    from robench.results import atomic_write_text, load_results

    results = load_results(args.results)
    if not args.csv and not args.markdown:
        for path in write_exports(results, Path(args.results).parent).values():
            _out(f"wrote {path}")
        return EXIT_OK
    if args.csv:
        _out(f"wrote {atomic_write_text(Path(args.csv), records_csv(results))}")
    if args.markdown:
        _out(f"wrote {atomic_write_text(Path(args.markdown), markdown_summary(results))}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with robench's one-line errors (argparse prints its usage first: two lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"robench: error: {message} (see `{self.prog} --help`)\n")


def _path(text: str) -> str:
    """A file or folder option's value: an empty one (``--out ""``) was taken as not given."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _seed(text: str) -> int:
    from robench.runner import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from robench.runner import robench_version
    from robench.threat_model import SECTION_ORDER

    parser = _Parser(
        prog="robench",
        description="Robustness evaluation and certification of PyTorch image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"robench {robench_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint under a declared threat model")
    ev.add_argument("--checkpoint", required=True, type=_path, help="model file: state_dict .pt/.pth, safetensors, TorchScript, .pt2")
    ev.add_argument("--arch", help="architecture for weights-only checkpoints: name, module:callable, torchvision:NAME, timm:NAME, robustbench:DATASET/THREAT/NAME")
    ev.add_argument("--threat-model", required=True, type=_path, help="threat-model YAML file or shipped name (robench ls threat_model)")
    ev.add_argument("--out", type=_path, help="output folder (default: reports/<threat model>); without --resume, a run that starts (model loaded, plan checked) replaces the results.json, report and exports an earlier run left there (even with --only); one that fails before keeps them")
    ev.add_argument("--n-examples", type=_positive_int, help="evaluate the first N examples only")
    ev.add_argument("--only", metavar="KIND[,KIND]", help=f"run only these sections: {', '.join(SECTION_ORDER)}")
    ev.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    ev.add_argument("--batch-size", type=_positive_int, help="examples per batch (default 512 on CUDA, 128 on CPU)")
    ev.add_argument("--seed", type=_seed, default=0, help="run seed; all randomness derives from it (default 0)")
    ev.add_argument("--resume", action="store_true", help="continue an interrupted run from the journals in --out (with any number of processes, at the same torch thread count: torchrun sets OMP_NUM_THREADS=1)")
    ev.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling code from the checkpoint (it can run arbitrary code)")
    ev.add_argument("--randomized", action="store_true",
                    help="treat the model as randomized (EOT attacks, pass-mean accuracies) even if repeated passes on random inputs agree")
    ev.add_argument("--data-root", type=_path, help="folder holding the dataset's files")
    ev.add_argument("--data-home", type=_path, help="folder holding datasets by name (default $ROBENCH_DATA or ~/.robench/data)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", help="train two small CNNs on the embedded MNIST digits and audit both")
    demo.add_argument("--out", default="reports/demo", type=_path, help="output folder (default reports/demo)")
    demo.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    demo.add_argument("--seed", type=_seed, default=0, help="training and evaluation seed (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    va = sub.add_parser("validate", help="check threat-model files; every error with its YAML path")
    va.add_argument("files", nargs="+", metavar="FILE", type=_path, help="threat-model YAML files (or built-in names)")
    va.set_defaults(func=cmd_validate)

    ls = sub.add_parser("ls", help="list registered attacks, corruptions, certifiers, datasets, threat models...")
    ls.add_argument("kind", nargs="?", help="attack, corruption, perturbation, certifier, metric, dataset, arch, evaluation or threat_model")
    ls.set_defaults(func=cmd_ls)

    rep = sub.add_parser("report", help="render the HTML report of a results.json")
    rep.add_argument("results", metavar="RESULTS.json", type=_path, help="the results file of a run")
    rep.add_argument("--out", type=_path, help="HTML file (default: report.html next to the results)")
    rep.set_defaults(func=cmd_report)

    cmp = sub.add_parser("compare", help="rank a run among published leaderboard entries, or put two runs side by side")
    cmp.add_argument("results", metavar="RESULTS.json", type=_path)
    cmp.add_argument("other", nargs="?", metavar="OTHER.json", type=_path, help="a second run: show both with b − a deltas")
    cmp.add_argument("--snapshot", type=_path, help="leaderboard snapshot JSON (default: the shipped RobustBench snapshot)")
    cmp.set_defaults(func=cmd_compare)

    exp = sub.add_parser("export", help="write a flat CSV of all metric records and a Markdown summary")
    exp.add_argument("results", metavar="RESULTS.json", type=_path)
    exp.add_argument("--csv", metavar="FILE", type=_path, help="CSV file (default with neither option: metrics.csv next to the results)")
    exp.add_argument("--markdown", metavar="FILE", type=_path, help="Markdown file (default with neither option: summary.md next to the results)")
    exp.set_defaults(func=cmd_export)

    board = sub.add_parser("leaderboard", help="published leaderboard baselines")
    board_sub = board.add_subparsers(dest="leaderboard_command", required=True, metavar="ACTION")
    sync = board_sub.add_parser("sync", help="build the leaderboard snapshot from a RobustBench model_info folder")
    sync.add_argument("--from", dest="source", required=True, metavar="DIR", type=_path, help="RobustBench model_info folder (<dataset>/<threat>/*.json)")
    sync.add_argument("--out", type=_path, help="snapshot file (default: the shipped data_manifests/leaderboards/robustbench.json)")
    sync.set_defaults(func=cmd_leaderboard_sync)

    data = sub.add_parser("data", help="dataset utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    verify = data_sub.add_parser("verify", help="verify a dataset's files against its manifest")
    verify.add_argument("name", help="manifest name (e.g. cifar10) or path")
    verify.add_argument("--root", type=_path, help="folder holding the dataset's files (default: $ROBENCH_DATA/<name>, or the package shipping it)")
    verify.add_argument("--size-only", action="store_true", help="check sizes, not checksums")
    verify.set_defaults(func=cmd_data_verify)
    freeze = data_sub.add_parser(
        "freeze",
        help="write a copy of a manifest with the size and sha256 of every listed file of your copy of the data "
        "(image-folder patterns: their count and `listing_sha256`, a digest of their entries' names and sizes, "
        "not of the images' contents)",
    )
    freeze.add_argument("name", help="manifest name (e.g. imagenetc) or path")
    freeze.add_argument("--root", type=_path, help="folder holding the dataset's files (default: $ROBENCH_DATA/<name>, or the package shipping it)")
    freeze.add_argument("--out", required=True, type=_path, help="manifest YAML to write")
    freeze.set_defaults(func=cmd_data_freeze)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    from robench._errors import RobenchError, message

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already said in one line)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    # torch.compile on a machine with a CUDA toolkit but no GPU logs "No CUDA runtime is found, using
    # CUDA_HOME=..." to stderr in the middle of the progress bars: nothing the run can act on
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    previous = _on_sigterm()
    try:
        return func(args)
    except RobenchError as exc:
        _err(f"robench: error: {_one_line(message(exc))}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        _err(_interrupted(args.command, getattr(exc, "results_path", None), "terminated (SIGTERM)" if terminated else "interrupted"))
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except SystemExit as exc:  # sys.exit() inside the model (or code it ran): the run did not finish
        _err(f"robench: error: the run was stopped by a call to exit({exc.code!r}) from the model or code it ran")
        return EXIT_USAGE
    except BrokenPipeError:  # `robench ls | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except BaseException as exc:  # the last line of defence (a model's GeneratorExit too): one line, not a traceback
        if os.environ.get("ROBENCH_DEBUG"):
            raise
        _err(f"robench: internal error: {type(exc).__name__}: {_one_line(message(exc))} (set ROBENCH_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(command: str, results_path: Path | None = None, how: str = "interrupted") -> str:
    """The line for a run stopped by Ctrl-C or SIGTERM (``how``): what is kept and how to go on, per
    command (``results_path``: where the evaluation's results were written, set by the runner once
    the run had started; before that nothing was)."""
    if command == "evaluate":
        if results_path is None:
            return f"robench: {how} before the run started (loading, checks): no results were written"
        return f"robench: {how}; finished evaluations are in {results_path}, rerun with --resume to continue"
    if command == "demo":  # no journal: each model is cached once trained, its evaluation starts over
        from robench.demo import cache_dir

        return (f"robench: {how}; the demo has no --resume: a model whose training finished is cached in "
                f"{cache_dir()}, and rerunning `robench demo` reuses it and evaluates afresh")  # fmt: skip
    return f"robench: {how}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is (a KeyboardInterrupt, so that every handler of Ctrl-C keeps
    what had finished), told apart by its exit code (143) and line."""


def _on_sigterm() -> Any:
    """SIGTERM (``kill``, a scheduler's time limit, torchrun stopping the other ranks after one
    failed) ends the run like Ctrl-C: results.json gets status error and what had finished.
    Returns the previous handler (``None`` off the main thread, where handlers cannot be set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise Terminated(f"terminated by signal {signum}")

    return signal.signal(signal.SIGTERM, interrupt)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no message"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
