"""Benchmark runner: trains each (task, method, budget, seed) cell once and scores it.

A cell (:mod:`sbi_allinone.benchmarks.cells`) trains the method on its simulations,
draws ``num_samples`` posterior samples for each requested observation and scores
them with C2ST against sbibm's reference samples. With ``target="likelihood"`` it
scores the method's likelihood instead: samples of ``p(x | theta)`` at each
observation's true parameters against fresh simulations there (methods that provide
a likelihood only, e.g. the Simformer). The C2ST of all of a cell's observations is
computed together (:func:`sbi_allinone.benchmarks.c2st.c2st_batch`).

:func:`run_benchmark` runs cells here (optionally in ``jobs`` processes) or on a Dask
cluster (``scheduler=``, :mod:`sbi_allinone.benchmarks.cluster`) and appends each
finished cell's rows to a tidy CSV file (:mod:`sbi_allinone.benchmarks.results`), so
an interrupted sweep resumes where it stopped and never loses finished cells.
:func:`run_cell` is a plain, picklable function of plain arguments, so cells can also
be handed to any other executor.

The names of :mod:`~sbi_allinone.benchmarks.cells` and
:mod:`~sbi_allinone.benchmarks.results` this module used to define are still
importable from here.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import sbi
import torch
from sbi.utils.metrics import c2st as sklearn_c2st
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from sbi_allinone.benchmarks.c2st import (
    C2ST_SEED,
    SBIBM_SETTINGS,
    MLPSettings,
    c2st_batch,
)
from sbi_allinone.benchmarks.cells import (
    CLASSIFIERS,
    TARGETS,
    Cell,
    RunSettings,
    cell_simulations,
    data_seed,
    make_cells,
)
from sbi_allinone.benchmarks.interrupts import (
    interrupt_after_scoring,
    sigterm_as_interrupt,
    terminate_workers,
)
from sbi_allinone.benchmarks.methods import Method, TrainedPosterior, get_method
from sbi_allinone.benchmarks.results import (
    RESULTS_FILE,
    append_results,
    completed_cells,
    read_results,
    report_failure,
    results_file,
)
from sbi_allinone.benchmarks.tasks import Task, get_task

__all__ = [
    "CLASSIFIERS",
    "Cell",
    "RunSettings",
    "RESULTS_FILE",
    "TARGETS",
    "append_results",
    "cell_simulations",
    "completed_cells",
    "make_cells",
    "read_results",
    "results_file",
    "run_benchmark",
    "run_cell",
]


def run_cell(
    cell: Cell, settings: RunSettings, method: Method | None = None
) -> list[dict]:
    """Train one cell and score it on every requested observation.

    Args:
        cell: What to train.
        settings: What to evaluate.
        method: The method to train; default: the registry's entry for
            ``cell.method``. Workers get it passed, so that methods registered at
            run time (not on import) work in other processes too.

    Returns:
        One row (dict over :data:`~sbi_allinone.benchmarks.results.COLUMNS`) per
        observation.
    """
    if settings.threads is not None:
        # Both torch and the BLAS under sklearn's C2ST classifier: oversubscribed
        # cores make parallel cells slower than sequential ones.
        torch.set_num_threads(settings.threads)
        threadpool_limits(settings.threads)
    task, method = get_task(cell.task), method or get_method(cell.method)

    theta, x = cell_simulations(cell, task)
    num_valid = int(torch.isfinite(x).all(dim=1).sum())

    torch.manual_seed(cell.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = method.fit(
            theta, x, task.prior, settings.show_progress_bars, task=cell.task
        )
    train_time = time.perf_counter() - start

    drawn = _draw(task, trained, method.name, settings, cell)
    pairs = [(reference, samples) for reference, samples, _ in drawn]
    scores = {c: _c2st(pairs, c, settings.device) for c in settings.classifiers}
    return [
        {
            **asdict(cell),
            "observation": observation,
            "c2st": scores[classifier][i][0],
            "classifier": classifier,
            "num_samples": settings.num_samples,
            "train_time_s": round(train_time, 3),
            "sample_time_s": round(sample_time, 3),
            "c2st_time_s": round(scores[classifier][i][1], 3),
            "epochs": trained.epochs,
            "num_valid_simulations": num_valid,
            "sbi_version": sbi.__version__,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        for i, (observation, (_, _, sample_time)) in enumerate(
            zip(settings.observations, drawn, strict=True)
        )
        for classifier in settings.classifiers
    ]


def _draw(
    task: Task, trained: TrainedPosterior, name: str, settings: RunSettings, cell: Cell
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Each observation's reference samples, the method's samples and the seconds
    spent drawing them, for the posterior or the likelihood (``settings.target``)."""
    estimator = trained.posterior
    if settings.target == "likelihood":
        if trained.likelihood is None:
            raise ValueError(f"Method {name!r} provides no likelihood.")
        estimator = trained.likelihood
    drawn = []
    for observation in settings.observations:
        condition, reference = _condition_and_reference(
            task, observation, settings, cell
        )
        start = time.perf_counter()
        samples = _sample(estimator, condition, settings, f"{cell}, obs {observation}")
        drawn.append((reference, samples, time.perf_counter() - start))
    return drawn


def _sample(estimator, condition: torch.Tensor, settings: RunSettings, where: str):
    """``settings.num_samples`` samples; rejection sampling is bounded in time."""
    shape = (settings.num_samples,)
    parameters = inspect.signature(estimator.sample).parameters
    rejects = "return_partial_on_timeout" in parameters
    with warnings.catch_warnings():
        # sbi warns at every low acceptance rate; the shortfall is reported below.
        warnings.simplefilter("ignore")
        if not rejects:
            return estimator.sample(shape, x=condition, show_progress_bars=False)
        try:
            samples = estimator.sample(
                shape, x=condition, show_progress_bars=False,
                max_sampling_time=settings.max_sampling_time,
                return_partial_on_timeout=True,
            )  # fmt: skip
        except RuntimeError as error:
            # sbi returns partial results only if at least one sample was accepted.
            if "max_sampling_time" not in str(error):
                raise
            samples = torch.empty(0, *estimator.prior.event_shape)
        missing = settings.num_samples - len(samples)
        if missing > 0:
            unrejected = estimator.sample(
                (missing,), x=condition, show_progress_bars=False,
                reject_outside_prior=False,
            )  # fmt: skip
            samples = torch.cat([samples, unrejected])
    if missing > 0:
        warnings.warn(
            f"{where}: only {settings.num_samples - missing} of "
            f"{settings.num_samples} samples fell inside the prior within "
            f"max_sampling_time={settings.max_sampling_time} s; the other {missing} "
            "were drawn without rejection (those of them outside the prior's "
            "support count against the method in C2ST; raise --max-sampling-time "
            "for slow samplers).",
            stacklevel=2,
        )
    return samples.detach()


def _condition_and_reference(
    task, observation: int, settings: RunSettings, cell: Cell
) -> tuple[torch.Tensor, torch.Tensor]:
    if settings.target == "posterior":
        x_o = task.get_observation(observation)
        return x_o, task.get_reference_posterior_samples(observation)
    theta = task.get_true_parameters(observation)
    # Reference simulations: seeded apart from the training data and the method.
    torch.manual_seed(data_seed(cell) + observation)
    simulations = task.simulate(theta.repeat(settings.num_samples, 1))
    return theta, simulations[torch.isfinite(simulations).all(dim=1)]


_TORCH_MLP = {"mlp": MLPSettings(), "mlp_sbibm": SBIBM_SETTINGS}


def _c2st(
    pairs: list[tuple[torch.Tensor, torch.Tensor]], classifier: str, device: str
) -> list[tuple[float, float]]:
    """C2ST and seconds spent scoring, per ``(reference, samples)`` pair.

    The torch MLPs score all pairs together (one stack of classifiers); each pair's
    seconds are then an equal share. NaN or infinite samples score NaN. Ctrl-C
    while scoring raises ``KeyboardInterrupt``, even though sklearn's MLP catches it
    (and would return an under-trained classifier's score).
    """
    with interrupt_after_scoring():
        return _scores(pairs, classifier, device)


def _scores(
    pairs: list[tuple[torch.Tensor, torch.Tensor]], classifier: str, device: str
) -> list[tuple[float, float]]:
    """:func:`_c2st`, Ctrl-C aside."""
    trimmed = {}
    for i, (reference, samples) in enumerate(pairs):
        samples = samples.reshape(-1, reference.shape[1]).float()
        if torch.isfinite(samples).all():
            n = min(len(reference), len(samples))
            trimmed[i] = (reference[:n], samples[:n])
    scores = dict.fromkeys(range(len(pairs)), (math.nan, 0.0))
    if classifier in _TORCH_MLP and trimmed:
        start = time.perf_counter()
        values = c2st_batch(
            list(trimmed.values()),
            seed=C2ST_SEED,
            device=device,
            settings=_TORCH_MLP[classifier],
        )
        share = (time.perf_counter() - start) / len(trimmed)
        scores.update(
            {i: (round(v, 4), share) for i, v in zip(trimmed, values, strict=True)}
        )
    elif trimmed:
        name = {"mlp_sklearn": "mlp", "rf": "rf"}[classifier]
        for i, (reference, samples) in trimmed.items():
            start = time.perf_counter()
            value = float(
                sklearn_c2st(reference, samples, seed=C2ST_SEED, classifier=name)
            )
            scores[i] = (round(value, 4), time.perf_counter() - start)
    return [scores[i] for i in range(len(pairs))]


def run_benchmark(
    cells: Sequence[Cell],
    settings: RunSettings,
    out_dir: str | Path,
    jobs: int = 1,
    show_progress_bars: bool = True,
    scheduler: str | None = None,
) -> list[tuple[Cell, BaseException]]:
    """Run all cells not already finished in ``out_dir``; append rows as cells finish.

    Args:
        cells: Cells to run (see :func:`make_cells`).
        settings: Shared evaluation settings.
        out_dir: Results folder; created if missing.
        jobs: Number of worker processes on this machine (with ``scheduler="local"``:
            Dask workers); each gets ``cpu_count // jobs`` torch threads unless
            ``settings.threads`` is set.
        show_progress_bars: Show a progress bar over cells.
        scheduler: Run the cells on Dask (:mod:`sbi_allinone.benchmarks.cluster`):
            ``"local"`` for a cluster of ``jobs`` worker processes here, or a Dask
            scheduler's address. ``None``: this process, or a process pool for
            ``jobs > 1``.

    Returns:
        The cells that failed, with their exceptions (finished cells are saved).

    Raises:
        KeyboardInterrupt: On Ctrl-C or ``SIGTERM``: workers are stopped, finished
            cells saved, interrupted ones not.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = completed_cells(out_dir, settings)
    todo = [cell for cell in cells if cell.key() not in done]
    if jobs < 1:
        raise ValueError(f"`jobs` must be at least 1, got {jobs}.")
    local = scheduler in (None, "local")
    if local and (jobs > 1 or scheduler) and settings.threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        settings = RunSettings(**{**asdict(settings), "threads": threads})

    bar = tqdm(
        total=len(cells),
        initial=len(cells) - len(todo),
        desc="cells",
        disable=not show_progress_bars,
    )
    try:
        with sigterm_as_interrupt():  # `kill` stops a sweep as Ctrl-C does
            return _run(todo, settings, out_dir, jobs, scheduler, bar)
    finally:
        bar.close()


def _run(
    cells: Sequence[Cell],
    settings: RunSettings,
    out_dir: Path,
    jobs: int,
    scheduler: str | None,
    bar,  # noqa: ANN001 -- a tqdm progress bar
) -> list[tuple[Cell, BaseException]]:
    """Run ``cells`` here, in processes or on Dask (see :func:`run_benchmark`)."""
    if scheduler is None and jobs == 1:
        return _run_here(cells, settings, out_dir, bar)
    if scheduler is None:
        return _run_in_processes(cells, settings, out_dir, jobs, bar)
    from sbi_allinone.benchmarks.cluster import dask_client, run_on_dask

    with dask_client(scheduler, jobs) as client:
        return run_on_dask(cells, settings, out_dir, client, lambda _: bar.update())


def _run_here(
    cells: Sequence[Cell], settings: RunSettings, out_dir: Path, bar
) -> list[tuple[Cell, BaseException]]:
    failures = []
    for cell in cells:
        bar.set_postfix_str(f"{cell.task}/{cell.method}/{cell.budget}/s{cell.seed}")
        try:
            append_results(out_dir, run_cell(cell, settings), settings.target)
        except Exception as error:  # a failed cell must not stop the sweep
            failures.append(report_failure(cell, error))
        bar.update()
    return failures


def _run_in_processes(
    cells: Sequence[Cell], settings: RunSettings, out_dir: Path, jobs: int, bar
) -> list[tuple[Cell, BaseException]]:
    """Cells in ``jobs`` processes. An interrupt (of this process or of a worker)
    stops the workers at once, saves the cells finished so far, and is raised."""
    failures = []
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))
    futures: dict[Future, Cell] = {
        pool.submit(run_cell, cell, settings, get_method(cell.method)): cell
        for cell in cells
    }
    try:
        for future in as_completed(futures):
            cell, error = futures.pop(future), future.exception()
            if isinstance(error, KeyboardInterrupt):
                raise error
            if error is None:
                append_results(out_dir, future.result(), settings.target)
            else:
                failures.append(report_failure(cell, error))
            bar.update()
    except BaseException:
        terminate_workers(pool)
        _save_finished(futures, settings, out_dir)
        raise
    pool.shutdown()
    return failures


def _save_finished(
    futures: dict[Future, Cell], settings: RunSettings, out_dir: Path
) -> None:
    """Append the rows of the cells among ``futures`` that finished without error."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            append_results(out_dir, future.result(), settings.target)
