"""Command line: ``sbi-allinone bench | report | list``.

The defaults of ``bench`` are those of :class:`RunSettings` and
:func:`run_benchmark`, and the defaults of ``report`` those of :func:`write_report`:
each is defined once, there, and read from there.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sbi_allinone.benchmarks.cells import TARGETS, RunSettings, make_cells
from sbi_allinone.benchmarks.conditional_tasks import CONDITIONAL_TASKS
from sbi_allinone.benchmarks.conditionals import (
    CONDITIONALS_TARGET,
    add_conditional_arguments,
    bench_conditionals,
    report_conditionals,
)
from sbi_allinone.benchmarks.methods import available_methods, get_method
from sbi_allinone.benchmarks.published import PUBLISHED_ALGORITHMS
from sbi_allinone.benchmarks.report import plot_prefix, report_name, write_report
from sbi_allinone.benchmarks.runner import run_benchmark
from sbi_allinone.benchmarks.tasks import TASK_NAMES

__all__ = ["main", "parse_numbers"]

# The settings a sweep runs with unless told otherwise.
_SETTINGS = RunSettings()
# Results folder of both sub-commands.
_RESULTS = "results"


def _defaults(function: Callable, *names: str) -> dict[str, Any]:
    """The defaults of ``function``'s keyword arguments ``names``, by name: a
    sub-command's ``set_defaults`` for the options named after them."""
    parameters = inspect.signature(function).parameters
    return {name: parameters[name].default for name in names}


def parse_numbers(text: str) -> list[int]:
    """Parse ``"1-3,7"`` into ``[1, 2, 3, 7]`` (order kept, duplicates dropped)."""
    numbers: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(p) for p in part.split("-", 1))
                if high < low:
                    raise ValueError
                numbers += range(low, high + 1)
            else:
                numbers.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like '1-10' or '1,3,5', got {text!r}"
        ) from None
    return list(dict.fromkeys(numbers))


def _names(text: str) -> list[str]:
    """Split on commas outside brackets: ``"npe,iflow[steps=64,solver=heun]"``."""
    names, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append(current)
            current = ""
        else:
            current += char
    names.append(current)
    return [name.strip() for name in names if name.strip()]


def _parser() -> argparse.ArgumentParser:
    """The ``sbi-allinone`` parser: one sub-command each for bench, report, list."""
    parser = argparse.ArgumentParser(
        prog="sbi-allinone",
        description="Benchmark sbi estimators and ours on sbibm tasks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_bench(commands)
    _add_report(commands)
    commands.add_parser("list", help="list tasks and registered methods")
    return parser


def _add_bench(commands: argparse._SubParsersAction) -> None:
    """The ``bench`` sub-command: which cells, how they are scored, where they run."""
    bench = commands.add_parser(
        "bench",
        help="train and score (task, method, budget, seed) cells",
        description="Train each cell once, sample every observation, score by C2ST. "
        "Finished cells are appended to OUT/results.csv (OUT/likelihood.csv with "
        "--target likelihood); re-running resumes.",
    )
    _add_sweep_arguments(bench)
    _add_scoring_arguments(bench)
    _add_execution_arguments(bench)
    add_conditional_arguments(bench)


def _add_sweep_arguments(bench: argparse.ArgumentParser) -> None:
    """The cells of a sweep, the observations and samples, the results folder."""
    bench.add_argument("--tasks", type=_names, default=["two_moons"])
    bench.add_argument(
        "--methods",
        type=_names,
        default=["npe"],
        help="registered methods (see `list`), comma-separated; options in "
        "brackets go to the method's training function, e.g. "
        "'npe,simformer[num_steps=10000,ode_solver=heun]'",
    )
    bench.add_argument("--budgets", type=parse_numbers, default=[1000])
    bench.add_argument(
        "--observations", type=parse_numbers, default=list(_SETTINGS.observations)
    )
    bench.add_argument("--seeds", type=parse_numbers, default=[1])
    bench.add_argument("--out", default=_RESULTS)
    bench.add_argument("--num-samples", type=int, default=_SETTINGS.num_samples)


def _add_scoring_arguments(bench: argparse.ArgumentParser) -> None:
    """How samples are scored: classifier, device, target, bounded rejection."""
    bench.add_argument(
        "--classifier",
        default=_SETTINGS.classifier,
        help="C2ST classifier: mlp (default: sbi's MLP test, in torch), "
        "mlp_sklearn (the same test by sbi's sklearn c2st, slower), mlp_sbibm "
        "(sbibm's own MLP test, without early stopping: the metric of sbibm's "
        "published numbers; slower), rf (random forest, the Simformer paper's), or "
        "several, e.g. mlp,rf (same samples)",
    )
    bench.add_argument(
        "--device",
        default=_SETTINGS.device,
        help="device of the mlp C2ST (cpu, cuda, ...)",
    )
    bench.add_argument(
        "--target",
        choices=(*TARGETS, CONDITIONALS_TARGET),
        default=_SETTINGS.target,
        help="score posteriors (default) or likelihoods p(x|theta) at each "
        "observation's true parameters against the simulator; 'conditionals': "
        "any conditional of the tractable joints of tree, markov_chain, two_moons, "
        "slcp (OUT/conditionals.csv)",
    )
    bench.add_argument(
        "--max-sampling-time",
        type=float,
        default=_SETTINGS.max_sampling_time,
        help="seconds a posterior may spend rejecting samples outside the prior per "
        "observation; the rest is drawn without rejection, with a warning",
    )


def _add_execution_arguments(bench: argparse.ArgumentParser) -> None:
    """Where and how cells run: processes, Dask, threads; a report at the end."""
    bench.add_argument(
        "--jobs",
        type=int,
        help="worker processes on this machine (Dask workers with --scheduler local)",
    )
    bench.add_argument(
        "--scheduler",
        help="run cells on Dask: 'local' (a cluster of --jobs processes here) or a "
        "scheduler address (tcp://host:8786); needs pip install 'sbi-allinone[dask]'",
    )
    bench.add_argument(
        "--threads", type=int, default=_SETTINGS.threads, help="torch threads per cell"
    )
    bench.add_argument(
        "--report", action="store_true", help="print the report at the end"
    )
    bench.set_defaults(**_defaults(run_benchmark, "jobs", "scheduler"))


def _add_report(commands: argparse._SubParsersAction) -> None:
    """The ``report`` sub-command; its defaults are :func:`write_report`'s."""
    report = commands.add_parser("report", help="table and plots of a results folder")
    report.add_argument("out", nargs="?", default=_RESULTS)
    report.add_argument(
        "--baseline",
        help="method the C2ST differences and time ratios refer to; default: "
        "npe_sbibm if the results hold it, else npe ('' for none)",
    )
    report.add_argument(
        "--observations",
        type=parse_numbers,
        help="only these observations, e.g. 1-5 (default: all)",
    )
    report.add_argument("--target", choices=(*TARGETS, CONDITIONALS_TARGET))
    report.add_argument("--classifier", help="only rows scored by this classifier")
    report.add_argument(
        "--published",
        nargs="?",
        const="all",
        default=None,
        help="draw sbibm's published C2ST curves on the plots (all algorithms, or "
        "e.g. NPE,NLE), and compare npe_sbibm with sbibm's published NPE",
    )
    report.set_defaults(
        **_defaults(write_report, "baseline", "observations", "target", "classifier")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sbi-allinone`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "report" and args.target == CONDITIONALS_TARGET:
        return report_conditionals(args.out, args.classifier)
    if args.command == "report":
        return _report(
            args.out,
            args.target,
            baseline=args.baseline or None,
            observations=args.observations,
            classifier=args.classifier,
            published=_published(args.published),
        )
    return _bench(args)


def _list() -> int:
    print("tasks:  ", ", ".join(TASK_NAMES))
    print("tasks of --target conditionals:", ", ".join(CONDITIONAL_TASKS))
    print("methods:")
    for name in available_methods():
        print(f"  {name:<10} {get_method(name).description}")
    return 0


def _published(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return PUBLISHED_ALGORITHMS if text == "all" else tuple(_names(text))


def _report(out: str, target: str, **options: Any) -> int:
    """Print the report of ``out``; ``options`` go to :func:`write_report`."""
    try:
        table = write_report(out, target=target, **options)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table)
    print(
        f"\nwritten: {out}/{report_name(target)} and "
        f"{out}/{plot_prefix(target)}c2st_<task>.png"
    )
    return 0


def _bench_error(args: argparse.Namespace) -> str | None:
    """What makes ``bench``'s arguments unusable (``None`` if nothing): empty
    lists, fewer than one job or thread, a results folder that cannot be written."""
    for name in ("tasks", "methods", "budgets", "observations", "seeds"):
        if not getattr(args, name):
            return f"--{name} is empty"
    if args.jobs < 1:
        return f"--jobs must be at least 1, got {args.jobs}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be at least 1, got {args.threads}"
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        return f"--out {args.out!r} cannot be written: {error.strerror or error}"
    return None


def _bench(args: argparse.Namespace) -> int:
    problem = _bench_error(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.target == CONDITIONALS_TARGET:
        return bench_conditionals(args)
    try:
        settings = RunSettings(
            observations=tuple(args.observations),
            num_samples=args.num_samples,
            classifier=args.classifier,
            threads=args.threads,
            target=args.target,
            max_sampling_time=args.max_sampling_time,
            device=args.device,
        )
        cells = make_cells(args.tasks, args.methods, args.budgets, args.seeds)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        failures = run_benchmark(
            cells, settings, args.out, jobs=args.jobs, scheduler=args.scheduler
        )
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished cells are saved; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    if failures:
        print(f"{len(failures)} cell(s) failed (reported above):", file=sys.stderr)
    for cell, error in failures:
        print(f"  {cell}: {type(error).__name__}: {error}", file=sys.stderr)
    if args.report:
        _report(args.out, args.target, observations=args.observations)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
