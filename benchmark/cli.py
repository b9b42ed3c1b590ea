"""The `vaebench` command line (also `python -m benchmark`).

vaebench list models|datasets|suites|metrics [PATTERN]
vaebench run SPEC.yaml [--seed N] [--set key=value ...]
vaebench suite NAME|FILE [--seeds 0,1] [--list] [--force] [--rerun-failed]
               [--executor local|serial|ray] [--workers N] [--threads T] [--start-method M]
               [--gpus 0,1] [--address ADDR] [--num-cpus C] [--num-gpus G]
vaebench run-job --suite NAME --index I        (one job of a suite, e.g. a SLURM array task)
vaebench progress NAME|FILE [--seeds 0,1] [--checkpoints DIR] [--results DIR] [--budget F]
vaebench leaderboard [--results DIR] [--dataset NAMES] [--models NAMES] [--html] [--strict]
vaebench compare NEW --against A,B --suite NAME|FILE [--seeds 0,1,2,3,4] [--metrics nll/nll]
vaebench data download NAME [--data-root DIR]  (explicit; needs internet)

Every user error exits non-zero with one line on stderr; ``VAEBENCH_TRACEBACK=1`` shows the
traceback of an unexpected one.
"""

import argparse
import fnmatch
import json
import logging
import os
import sys
import typing
from dataclasses import replace
from pathlib import Path

from benchmark.records import RunRecord
from benchmark.runner import RunOptions, check_output_folders, run_spec
from benchmark.spec import load_plugins, load_spec

MAX_ERROR_CHARS = 500  # an error line is for reading; the record keeps any full traceback
USER_ERRORS = (ValueError, TypeError, OSError, RecursionError, MemoryError)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (1 on user error, with a one-line message)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        load_plugins(tuple(args.plugin or ()))
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("vaebench: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001  every failure is one line, never a traceback
        if os.environ.get("VAEBENCH_TRACEBACK") == "1":
            raise
        print(f"vaebench: error: {error_line(error)}", file=sys.stderr)
        return 1


def error_line(error: BaseException) -> str:
    """Return `error` as one line of at most `MAX_ERROR_CHARS` characters.

    A user error (`USER_ERRORS`) is its message; anything else also names its type and how to
    see the traceback, since it is more likely a bug than a bad input.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, RecursionError):
        text = "the input nests too deeply (RecursionError); flatten it"
    elif isinstance(error, MemoryError):
        text = "out of memory (MemoryError); reduce the model or evaluation sizes"
    elif not isinstance(error, USER_ERRORS):
        text = f"{type(error).__name__}: {text} (set VAEBENCH_TRACEBACK=1 for the traceback)"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 5] + " [...]"
    return text


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line (the usage is in ``--help``)."""

    def error(self, message: str) -> typing.NoReturn:
        line = " ".join(message.split())[:MAX_ERROR_CHARS]
        self.exit(2, f"{self.prog}: error: {line} (see `{self.prog} --help`)\n")


PLUGIN_WARNING = (
    "A plugin is Python code and runs when it is loaded: from --plugin, or from the `plugins:` "
    "key of a spec or suite file (run, suite, run-job, compare; not `suite --list`). Use only "
    "plugins and spec files you trust."
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vaebench", description="Benchmark VAEs.", epilog=PLUGIN_WARNING)
    parser.add_argument(
        "--plugin",
        action="append",
        help="module or .py file registering models; its code runs (trust it)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list registered names")
    listing.add_argument("what", choices=["models", "datasets", "suites", "metrics"])
    listing.add_argument("pattern", nargs="?", default="*")
    listing.set_defaults(handler=cmd_list)

    run = commands.add_parser("run", help="train and evaluate one spec")
    run.add_argument("spec", type=Path)
    run.add_argument("--seed", type=int)
    _add_run_options(run)
    run.set_defaults(handler=cmd_run)

    suite = commands.add_parser("suite", help="run every spec x seed of a suite")
    suite.add_argument("suite")
    suite.add_argument("--seeds", type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    suite.add_argument("--list", action="store_true", help="print the expanded jobs and exit")
    suite.add_argument("--no-leaderboard", action="store_true")
    suite.add_argument("--executor", default="local", help="local (default), serial or ray")
    suite.add_argument("--workers", type=int, help="local: runs at once (default: CPU count)")
    suite.add_argument(
        "--threads",
        type=_positive_int,
        help="local: torch threads per run (default: $OMP_NUM_THREADS if set, else CPU count / "
        "workers)",
    )
    suite.add_argument(
        "--start-method",
        choices=["spawn", "forkserver"],
        help="local: a new interpreter per run (spawn, default) or a fork of a "
        "preloaded server (forkserver: less overhead per run)",
    )
    suite.add_argument(
        "--gpus", help="local: GPU indices, one run on each at a time (e.g. 0,1; 0,0 = two on 0)"
    )
    suite.add_argument("--address", help="ray: cluster to join (default: a local instance)")
    suite.add_argument("--num-cpus", type=float, help="ray: CPUs per run (default 1)")
    suite.add_argument("--num-gpus", type=float, help="ray: GPUs per run (default 0)")
    suite.add_argument(
        "--budget", type=float, help="run this fraction of each protocol run's budget (0, 1]"
    )
    _add_run_options(suite)
    suite.set_defaults(handler=cmd_suite)

    job = commands.add_parser("run-job", help="run job INDEX of a suite (see `suite --list`)")
    job.add_argument("--suite", required=True)
    job.add_argument("--index", type=int, required=True)
    job.add_argument("--seeds", type=_int_list)
    job.add_argument(
        "--budget", type=float, help="run this fraction of each protocol run's budget (0, 1]"
    )
    _add_run_options(job)
    job.set_defaults(handler=cmd_run_job)

    progress = commands.add_parser(
        "progress", help="snapshot unfinished runs of a suite from their checkpoints"
    )
    progress.add_argument("suite")
    progress.add_argument("--seeds", type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    progress.add_argument(
        "--budget", type=float, help="the jobs of `suite --budget F` (their own checkpoints)"
    )
    progress.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    progress.add_argument("--results", type=Path, default=Path("results"))
    progress.set_defaults(handler=cmd_progress)

    board = commands.add_parser(
        "leaderboard",
        help="regenerate leaderboard.md, .csv and figures/ (with no options: the committed ones)",
    )
    board.add_argument("--results", type=Path, help="records folder (default: results)")
    board.add_argument("--output", type=Path, help="default: leaderboard.md, or DIR/leaderboard.md")
    board.add_argument("--csv", type=Path, help="default: beside --output")
    board.add_argument("--dataset", type=_name_list, help="dataset names, comma-separated")
    board.add_argument("--models", type=_name_list, help="run/model names, comma-separated")
    board.add_argument(
        "--html",
        nargs="?",
        const=True,
        default=False,
        type=Path,
        metavar="PATH",
        help="also write a self-contained HTML page (default: beside the Markdown)",
    )
    board.add_argument("--strict", action="store_true", help="fail on a bad record file")
    board.set_defaults(handler=cmd_leaderboard)

    compare = commands.add_parser("compare", help="judge NEW against baselines on a suite")
    compare.add_argument("new", help="run name of the suite, or a (plugin) model name")
    compare.add_argument("--against", type=_name_list, required=True, help="e.g. vae,iwae-k5")
    compare.add_argument("--suite", required=True)
    compare.add_argument(
        "--seeds", type=_int_list, help="comma-separated training seeds (default 0,1,2,3,4)"
    )
    compare.add_argument("--output", type=Path, help="default results/compare/NEW-vs-A-B.md")
    compare.add_argument(
        "--metrics",
        type=_name_list,
        help="the primary endpoint: family/metric patterns (default nll/nll); Holm-adjusted",
    )
    compare.add_argument("--executor", default="local", help="local (default), serial or ray")
    compare.add_argument("--workers", type=int, help="local: runs at once (default: CPU count)")
    compare.add_argument("--no-bootstrap", action="store_true", help="no paired NLL bootstrap")
    compare.add_argument("--bootstrap-resamples", type=int, default=10_000)
    compare.add_argument("--bootstrap-seed", type=int, default=0)
    _add_run_options(compare)
    compare.set_defaults(handler=cmd_compare)

    data = commands.add_parser("data", help="dataset files")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    download = data_commands.add_parser("download", help="download NAME (needs internet)")
    download.add_argument("name")
    download.add_argument("--data-root", type=Path)
    download.set_defaults(handler=cmd_download)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key (changes the spec hash)",
    )
    parser.add_argument("--data-root", help="folder searched first for dataset files")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--force", action="store_true", help="re-run even if a record exists")
    parser.add_argument("--rerun-failed", action="store_true", help="re-run failed/diverged runs")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--device",
        help="auto (a GPU when there is one; default), cpu, cuda, cuda:N or mps; "
        "not part of the spec hash, recorded with the run",
    )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,2, got {text[:100]!r}"
        )
    return values


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text[:80]!r}")
    return int(text)


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text[:100]!r}")
    return names


def _options(args: argparse.Namespace, catch_failures: bool) -> RunOptions:
    return RunOptions(
        results_dir=args.results,
        checkpoint_dir=args.checkpoints,
        data_root=args.data_root,
        force=args.force,
        rerun_failed=args.rerun_failed,
        catch_failures=catch_failures,
        progress=not args.no_progress,
        device=args.device or "auto",
    )


def cmd_list(args: argparse.Namespace) -> None:
    from benchmark.datasets import list_datasets
    from benchmark.evaluators import list_evaluators
    from benchmark.suite import list_suites
    from registry import list_models

    listers = {
        "models": list_models,
        "datasets": list_datasets,
        "suites": lambda p: fnmatch.filter(list_suites(), p),
        "metrics": lambda p: fnmatch.filter(list_evaluators(), p),
    }
    names = listers[args.what](args.pattern)
    if not names:
        raise ValueError(
            f"Expected PATTERN to match some {args.what}, but {args.pattern[:100]!r} matches "
            f"none; run `vaebench list {args.what}` for them all (wildcards: * ? [abc])."
        )
    if args.what == "models":
        from benchmark.catalog import catalog_lines, model_catalog

        print("\n".join(catalog_lines(model_catalog(args.pattern))))
        return
    for name in names:
        print(name)


def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, seed=args.seed, overrides=args.overrides)
    options = _options(args, catch_failures=False)
    check_output_folders(options)
    record = run_spec(spec, options)
    print_summary([record])
    return 0 if record.status == "ok" else 2


def print_suite_protocol(suite) -> None:
    """Print a suite's jobs with their model settings and budget, then its shared protocol."""
    print(f"# {suite.name}: {suite.description.strip()}\n")
    for index, spec in enumerate(suite.runs):
        model = ", ".join(f"{k}={v}" for k, v in spec.model.items())
        paper = spec.train.paper_steps
        budget = f" ({spec.train.steps / paper:.3g} of the paper's {paper:,})" if paper else ""
        print(
            f"{index}\t{spec.name}\tseed={spec.seed}\t{spec.hash[:12]}\t{model}\t"
            f"steps={spec.train.steps:,}{budget}"
        )
    first = suite.runs[0].to_dict()
    for key in ("dataset", "train", "eval"):
        shared = all(spec.to_dict()[key] == first[key] for spec in suite.runs)
        label = "shared by every job" if shared else "of job 0 (jobs differ)"
        print(f"\n{key} ({label}):\n  {json.dumps(first[key], sort_keys=True)}")


def cmd_suite(args: argparse.Namespace) -> int:
    from benchmark.executors.progress import SuiteProgress
    from benchmark.leaderboard import leaderboard_paths, write_leaderboard
    from benchmark.suite import list_jobs, load_suite

    if args.list:  # NOTE: a suite whose runs name plugins is listed without importing them
        jobs = list_jobs(args.suite, seeds=args.seeds, overrides=args.overrides)
        if any(job.hash is None for job in jobs):
            for index, job in enumerate(jobs):
                digest = job.hash[:12] if job.hash else "(plugins not imported)"
                print(f"{index}\t{job.name}\tseed={job.seed}\t{digest}")
            return 0
    suite = load_suite(args.suite, seeds=args.seeds, overrides=args.overrides, budget=args.budget)
    if args.list:
        print_suite_protocol(suite)
        return 0
    check_output_folders(_options(args, catch_failures=True))
    executor = _executor(args)
    progress = SuiteProgress(len(suite.runs), bar=not args.no_progress)
    # NOTE: per-run training bars would interleave across workers; the suite bar replaces them.
    options = replace(
        _options(args, catch_failures=True),
        progress=False,
        device=args.device or suite.device or "auto",
    )
    records = executor.map_runs(suite.runs, options, on_event=progress)
    progress.close()
    print_summary(records)
    if not args.no_leaderboard:
        paths = leaderboard_paths(args.results)  # NOTE: beside the results unless the repo's
        write_leaderboard(args.results, paths.markdown, paths.csv, figures_dir=paths.figures)
        print(f"wrote {paths.markdown} and {paths.csv}", file=sys.stderr)
    return 0 if all(record.status == "ok" for record in records) else 2  # as `run` does


def _executor(args: argparse.Namespace):
    """Build the suite's executor from ``--executor`` and the flags that were given."""
    from benchmark.executors import create_executor

    flags = {
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "start_method": args.start_method,
        "gpus": args.gpus,
        "address": args.address,
        "num_cpus": args.num_cpus,
        "num_gpus": args.num_gpus,
    }
    settings = {key: value for key, value in flags.items() if value is not None}
    if args.executor in ("local", "ray"):  # NOTE: fresh worker processes re-import --plugin
        settings["plugins"] = tuple(args.plugin or ())
    try:
        return create_executor(args.executor, **settings)
    except ImportError as error:  # Ray not installed: a one-line message naming the extra
        raise ValueError(str(error)) from None


def cmd_run_job(args: argparse.Namespace) -> int:
    from benchmark.suite import load_suite

    runs = load_suite(
        args.suite, seeds=args.seeds, overrides=args.overrides, budget=args.budget
    ).runs
    if not 0 <= args.index < len(runs):
        raise ValueError(
            f"Expected `--index` in [0, {len(runs) - 1}], but got {args.index}; "
            f"`vaebench suite {args.suite} --list` numbers the jobs."
        )
    options = _options(args, catch_failures=True)
    check_output_folders(options)
    record = run_spec(runs[args.index], options)
    print_summary([record])
    return 0 if record.status == "ok" else 2


def cmd_progress(args: argparse.Namespace) -> None:
    from benchmark.progress import (
        check_checkpoint_folder,
        progress_line,
        refresh_progress,
        remove_finished_snapshots,
    )
    from benchmark.suite import load_suite

    suite = load_suite(args.suite, seeds=args.seeds, budget=args.budget)
    check_checkpoint_folder(args.checkpoints)
    jobs = refresh_progress(suite.runs, checkpoint_dir=args.checkpoints, results_dir=args.results)
    for job in jobs:
        print(progress_line(job))
    for path in remove_finished_snapshots(suite.name, args.results):
        print(f"removed {path}: its run has a record", file=sys.stderr)


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from benchmark.leaderboard import COMMITTED_RESULTS, leaderboard_paths, write_leaderboard

    paths = leaderboard_paths(
        args.results,
        output=args.output,
        csv=args.csv,
        html=args.html,
        filtered=bool(args.dataset or args.models),
    )
    records = write_leaderboard(
        args.results or COMMITTED_RESULTS,
        paths.markdown,
        paths.csv,
        datasets=args.dataset,
        models=args.models,
        figures_dir=paths.figures,
        html_output=paths.html,
        strict=args.strict,
    )
    page = f" and {paths.html}" if paths.html else ""
    print(f"wrote {paths.markdown}, {paths.csv}{page} from {len(records)} records")


def cmd_compare(args: argparse.Namespace) -> int:
    from benchmark.compare import cmd_compare as compare

    return compare(args)


def cmd_download(args: argparse.Namespace) -> None:
    from benchmark.datasets.download import download_dataset

    path = download_dataset(args.name, data_root=args.data_root)
    print(f"downloaded {args.name} to {path}")


SUMMARY_METRICS = (("elbo", "elbo"), ("nll", "nll"))


def print_summary(records: list[RunRecord]) -> None:
    """Print a short table: one line per run with its status and headline metrics."""
    print(f"{'run':<28} {'seed':>4} {'status':<9} {'test ELBO':>18} {'NLL':>18} {'train s':>8}")
    for record in records:
        cells = []
        for family, name in SUMMARY_METRICS:
            estimate = record.metric(family, name)
            cells.append(f"{estimate.value:.2f} ± {estimate.stderr or 0:.2f}" if estimate else "—")
        train = record.timings.get("train")
        print(
            f"{record.spec['name'][:28]:<28} {record.spec['seed']:>4} {record.status:<9} "
            f"{cells[0]:>18} {cells[1]:>18} {train if train is None else round(train, 1)!s:>8}"
        )
