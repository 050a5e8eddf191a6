"""The all-conditional benchmark: ``sbi-allinone bench --target conditionals``.

A cell (:class:`~sbi_allinone.benchmarks.cells.Cell`) trains one method on
``budget`` draws of a tractable joint (:mod:`.conditional_tasks`), split into
``theta`` and ``x``; the data depend on task, budget and seed only. Each cell is
then scored on ``masks_per_kind`` condition masks of every requested kind
(``posterior``, ``likelihood``, ``mixed``, ``random``; see
:func:`~.conditional_tasks.evaluation_masks`): mask ``i`` of a kind, and the seed
of its observation (a joint draw,
:func:`~.conditional_references.observation_from_seed`), depend on task, kind and
``i`` only, so that every cell, budget and method sees the same conditionals and
the MCMC references are cached once
(:func:`~.conditional_references.conditional_reference`). The score is the C2ST of
the latent entries against the reference, by the runner's classifiers (default
``mlp``: sbi's MLP test in torch, :mod:`.c2st`).

Which conditionals a method has:

- the Simformer (``simformer``, ``simformer_undirected``, ``simformer_directed``,
  options as in the registry, e.g. ``simformer_directed[num_steps=2000]``): every
  mask, by ``Simformer.build_conditional``; graph attention uses ``task.graph()``;
- ``nle``: likelihood masks, ``x ~ q(x | theta)`` from its density estimator;
- any other registered method (``npe``, ``npe_nsf``, ...): posterior masks.

The parameter prior given to the methods is the task's exact marginal of
``theta`` (:func:`parameter_prior`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import sbi
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor
from tqdm.auto import tqdm

from sbi_allinone.benchmarks.cells import Cell, RunSettings
from sbi_allinone.benchmarks.conditional_references import conditional_reference
from sbi_allinone.benchmarks.conditional_results import (
    CONDITIONALS_FILE,
    append_conditional_results,
    completed_conditional_cells,
    conditional_table,
    read_conditional_results,
)
from sbi_allinone.benchmarks.conditional_setup import (
    SIMFORMER_ATTENTION,
    ConditionalSettings,
    EvaluationMask,
    conditional_cells,
    evaluation_conditions,
    joint_simulations,
    method_mask_kinds,
    parameter_prior,
    seed_of,
)
from sbi_allinone.benchmarks.conditional_tasks import ConditionalTask, conditional_task
from sbi_allinone.benchmarks.methods import _epochs, get_method, parse_method_spec
from sbi_allinone.benchmarks.runner import _c2st, _sample
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.tracking import NullTracker

__all__ = [
    "CONDITIONALS_TARGET",
    "ConditionalSettings",
    "bench_conditionals",
    "conditional_cells",
    "run_conditional_cell",
    "run_conditionals",
]

#: The ``--target`` of ``sbi-allinone bench`` and ``report`` that runs this module.
CONDITIONALS_TARGET = "conditionals"
_SIMFORMER_BUILD = ("sde", "x_per_token")
_SIMFORMER_TRAIN = ("num_steps", "training_batch_size")
_SIMFORMER_SAMPLE = ("sample_with", "steps", "ode_solver")


Conditional = Callable[[EvaluationMask], object]


def _fit_simformer(
    task: ConditionalTask, theta: Tensor, x: Tensor, method: str, show: bool
) -> tuple[Conditional, int]:
    """Train the Simformer once; return its conditional per mask and its epochs."""
    base, options = parse_method_spec(method)
    options = {"attention": SIMFORMER_ATTENTION[base], **options}
    attention = options["attention"] or "dense"

    def given(names: tuple[str, ...]) -> dict:
        return {n: options[n] for n in names if options.get(n) is not None}

    inference = Simformer(
        parameter_prior(task),
        attention=attention,
        graph=None if attention == "dense" else task.graph(),
        tracker=NullTracker(),
        show_progress_bars=show,
        **given(_SIMFORMER_BUILD),
    )
    inference.append_simulations(theta, x).train(**given(_SIMFORMER_TRAIN))
    sampler = given(_SIMFORMER_SAMPLE)
    return (
        lambda c: inference.build_conditional(c.mask, **sampler),
        _epochs(inference),
    )


def _fit_baseline(
    task: ConditionalTask, theta: Tensor, x: Tensor, method: str, show: bool
) -> tuple[Conditional, int]:
    """Train a registry method; its posterior or likelihood serves its masks."""
    trained = get_method(method).fit(theta, x, parameter_prior(task), show)
    if "likelihood" in method_mask_kinds(method) and trained.likelihood is None:
        raise ValueError(f"Method {method!r} provides no likelihood.")
    return (
        lambda c: trained.likelihood if c.kind == "likelihood" else trained.posterior,
        trained.epochs,
    )


def _fit(
    cell: Cell, task: ConditionalTask, show: bool
) -> tuple[Conditional, int, float]:
    """Train a cell's method on its joint draws: conditionals, epochs, seconds."""
    theta, x = joint_simulations(cell, task)
    base, _ = parse_method_spec(cell.method)
    fit = _fit_simformer if base in SIMFORMER_ATTENTION else _fit_baseline
    torch.manual_seed(cell.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conditional, epochs = fit(task, theta, x, cell.method, show)
    return conditional, epochs, time.perf_counter() - start


def _draw(
    cell: Cell,
    task: ConditionalTask,
    conditions: Sequence[EvaluationMask],
    conditional: Conditional,
    settings: ConditionalSettings,
) -> list[tuple[Tensor, Tensor, float, object]]:
    """Per mask: reference and method samples of the latent entries, the seconds
    spent sampling, and the reference's diagnostics."""
    drawn = []
    for condition in conditions:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the diagnostics go into the rows
            observation, reference, diagnostics = conditional_reference(
                task,
                condition.mask,
                condition.observation_seed,
                settings.num_samples,
                cache_dir=settings.cache_dir,
            )
        where = f"{cell}, {condition.kind} mask {condition.bits}"
        torch.manual_seed(seed_of(cell.seed, condition.observation_seed))
        start = time.perf_counter()
        samples = _sample(
            conditional(condition),
            observation[condition.mask][None],
            settings.run_settings(),
            where,
        )
        seconds = time.perf_counter() - start
        drawn.append((reference[:, ~condition.mask], samples, seconds, diagnostics))
    return drawn


def _scores(
    pairs: Sequence[tuple[Tensor, Tensor]], classifier: str, device: str
) -> list[tuple[float, float]]:
    """The runner's C2ST and seconds per ``(reference, samples)`` pair; pairs of
    the same width are scored together (the torch MLPs stack their classifiers)."""
    scores: list[tuple[float, float]] = [(math.nan, 0.0)] * len(pairs)
    widths = [reference.shape[1] for reference, _ in pairs]
    for width in set(widths):
        group = [i for i, w in enumerate(widths) if w == width]
        values = _c2st([pairs[i] for i in group], classifier, device)
        for i, score in zip(group, values, strict=True):
            scores[i] = score
    return scores


def run_conditional_cell(cell: Cell, settings: ConditionalSettings) -> list[dict]:
    """Train one cell and score it on every mask of the kinds its method has.

    Args:
        cell: Task (of :mod:`.conditional_tasks`), method, budget, seed.
        settings: What to score on.

    Returns:
        One row (over :data:`~.conditional_results.CONDITIONAL_COLUMNS`) per mask
        and classifier; ``[]`` if the method has none of the requested kinds.
    """
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
        threadpool_limits(settings.threads)
    task = conditional_task(cell.task)
    kinds = [k for k in settings.mask_kinds if k in method_mask_kinds(cell.method)]
    if not kinds:
        return []
    conditions = evaluation_conditions(task, kinds, settings.masks_per_kind)
    conditional, epochs, train_time = _fit(cell, task, settings.show_progress_bars)
    drawn = _draw(cell, task, conditions, conditional, settings)
    pairs = [(reference, samples) for reference, samples, _, _ in drawn]
    classifiers = settings.run_settings().classifiers
    scores = {c: _scores(pairs, c, settings.device) for c in classifiers}
    return [
        {
            **asdict(cell),
            "mask_kind": condition.kind,
            "mask_index": condition.index,
            "mask": condition.bits,
            "observation_seed": condition.observation_seed,
            "num_latent": int((~condition.mask).sum()),
            "c2st": scores[classifier][i][0],
            "classifier": classifier,
            "num_samples": settings.num_samples,
            "reference_max_rhat": diagnostics.max_rhat if diagnostics else math.nan,
            "reference_min_ess": diagnostics.min_bulk_ess if diagnostics else math.nan,
            "train_time_s": round(train_time, 3),
            "sample_time_s": round(sample_time, 3),
            "c2st_time_s": round(scores[classifier][i][1], 3),
            "epochs": epochs,
            "sbi_version": sbi.__version__,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        for i, (condition, (_, _, sample_time, diagnostics)) in enumerate(
            zip(conditions, drawn, strict=True)
        )
        for classifier in classifiers
    ]


def _wanted(
    cells: Sequence[Cell], settings: ConditionalSettings
) -> dict[tuple, set[tuple[str, int, str]]]:
    classifiers = settings.run_settings().classifiers
    return {
        cell.key(): {
            (kind, index, classifier)
            for kind in settings.mask_kinds
            if kind in method_mask_kinds(cell.method)
            for index in range(settings.masks_per_kind)
            for classifier in classifiers
        }
        for cell in cells
    }


def run_conditionals(
    cells: Sequence[Cell],
    settings: ConditionalSettings,
    out_dir: str | Path,
    show_progress_bars: bool = True,
) -> list[tuple[Cell, BaseException]]:
    """Run the cells not yet finished in ``out_dir``, here, one after another;
    append each finished cell's rows to ``out_dir/conditionals.csv``.

    Args:
        cells: Cells of :func:`conditional_cells`.
        settings: Shared scoring settings.
        out_dir: Results folder; created if missing.
        show_progress_bars: Show a progress bar over cells.

    Returns:
        The cells that failed, with their exceptions (finished cells are saved).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = _wanted(cells, settings)
    done = completed_conditional_cells(out_dir, settings.num_samples, wanted)
    todo = [cell for cell in cells if cell.key() not in done]
    failures = []
    bar = tqdm(
        total=len(cells), initial=len(cells) - len(todo), desc="cells",
        disable=not show_progress_bars,
    )  # fmt: skip
    with bar:
        for cell in todo:
            bar.set_postfix_str(f"{cell.task}/{cell.method}/{cell.budget}/s{cell.seed}")
            try:
                append_conditional_results(
                    out_dir, run_conditional_cell(cell, settings)
                )
            except Exception as error:  # a failed cell must not stop the sweep
                failures.append((cell, error))
            bar.update()
    return failures


def add_conditional_arguments(bench: argparse.ArgumentParser) -> None:
    """The options of ``bench --target conditionals``: masks and reference cache."""
    group = bench.add_argument_group("--target conditionals")
    group.add_argument(
        "--masks-per-kind",
        type=int,
        default=ConditionalSettings.masks_per_kind,
        help="condition masks (each with its own observation) per mask kind",
    )
    group.add_argument(
        "--mask-kinds",
        type=lambda text: tuple(k.strip() for k in text.split(",") if k.strip()),
        default=ConditionalSettings.mask_kinds,
        help="comma-separated kinds of posterior, likelihood, mixed, random",
    )
    group.add_argument(
        "--reference-cache",
        default=ConditionalSettings.cache_dir,
        help="folder of the cached MCMC reference samples",
    )


def bench_conditionals(args: argparse.Namespace) -> int:
    """``sbi-allinone bench --target conditionals``: run, then print the table.

    Args:
        args: The parsed ``bench`` arguments (``--observations``, ``--jobs`` and
            ``--scheduler`` do not apply: cells run here, one after another).

    Returns:
        The exit code: 0, 1 if a cell failed, 2 for bad arguments.
    """
    _warn_ignored(args)
    try:
        settings = ConditionalSettings(
            masks_per_kind=args.masks_per_kind,
            mask_kinds=tuple(args.mask_kinds),
            num_samples=args.num_samples,
            classifier=args.classifier,
            threads=args.threads,
            max_sampling_time=args.max_sampling_time,
            device=args.device,
            cache_dir=args.reference_cache,
        )
        cells = conditional_cells(args.tasks, args.methods, args.budgets, args.seeds)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failures = run_conditionals(cells, settings, args.out)
    for cell, error in failures:
        print(f"cell {cell} failed: {type(error).__name__}: {error}", file=sys.stderr)
    if args.report:
        report_conditionals(args.out)
    return 1 if failures else 0


def _given(args: argparse.Namespace, name: str, default: object) -> bool:
    value = getattr(args, name, None)
    return value is not None and tuple(value) != tuple(default)


def _warn_ignored(args: argparse.Namespace) -> None:
    ignored = [
        f"--{name}"
        for name, unused in (
            ("jobs", getattr(args, "jobs", 1) not in (None, 1)),
            ("scheduler", getattr(args, "scheduler", None) is not None),
            ("observations", _given(args, "observations", RunSettings().observations)),
        )
        if unused
    ]
    if ignored:
        print(
            f"warning: {', '.join(ignored)} do not apply to --target conditionals "
            "(observations are drawn per mask; cells run one after another here)",
            file=sys.stderr,
        )


def report_conditionals(out_dir: str | Path, classifier: str | None = None) -> int:
    """Print the table of ``out_dir/conditionals.csv`` (and write it next to it,
    as ``report_conditionals.md``); 2 without rows."""
    table = conditional_table(read_conditional_results(out_dir), classifier)
    if not table:
        print(f"error: no {CONDITIONALS_FILE} rows in {out_dir!s}", file=sys.stderr)
        return 2
    (Path(out_dir) / "report_conditionals.md").write_text(table + "\n")
    print(table)
    return 0
