"""Benchmark runner: trains each (task, method, budget, seed) cell once and scores it.

A cell simulates ``budget`` prior draws (the same data for every method: the data
seed depends on task, budget and seed only), trains the method, draws
``num_samples`` posterior samples for each requested observation and scores them
with C2ST against sbibm's reference samples. With ``target="likelihood"`` it scores
the method's likelihood instead: samples of ``p(x | theta)`` at each observation's
true parameters against fresh simulations there (methods that provide a likelihood
only, e.g. the Simformer). The C2ST of all of a cell's observations is computed
together (:func:`sbi_allinone.benchmarks.c2st.c2st_batch`).

:func:`run_benchmark` runs cells here (optionally in ``jobs`` processes) or on a Dask
cluster (``scheduler=``, :mod:`sbi_allinone.benchmarks.cluster`) and appends each
finished cell's rows to a tidy CSV file, so an interrupted sweep resumes where it
stopped and never loses finished cells. :func:`run_cell` is a plain, picklable
function of plain arguments, so cells can also be handed to any other executor.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import time
import warnings
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import sbi
import torch
from sbi.utils.metrics import c2st as sklearn_c2st
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from sbi_allinone.benchmarks.c2st import SBIBM_SETTINGS, MLPSettings, c2st_batch
from sbi_allinone.benchmarks.methods import Method, get_method
from sbi_allinone.benchmarks.tasks import Task, check_task_name, get_task

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

RESULTS_FILE = "results.csv"
TARGETS = ("posterior", "likelihood")
# "mlp": sbi's MLP test (sbibm's network, early stopping) in torch
# (sbi_allinone.benchmarks.c2st); "mlp_sklearn": the same test by sbi's sklearn C2ST;
# "mlp_sbibm": sbibm's own MLP test (no early stopping) in torch, the metric of
# sbibm's published numbers; "rf": sbi's random forest (the Simformer paper's).
CLASSIFIERS = ("mlp", "mlp_sklearn", "mlp_sbibm", "rf")
_FILES = {"posterior": RESULTS_FILE, "likelihood": "likelihood.csv"}


def results_file(target: str = "posterior") -> str:
    """Name of the CSV file holding a target's rows in a results folder."""
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}, got {target!r}.")
    return _FILES[target]


COLUMNS = (
    "task",
    "method",
    "budget",
    "seed",
    "observation",
    "c2st",
    "classifier",
    "num_samples",
    "train_time_s",
    "sample_time_s",
    "c2st_time_s",
    "epochs",
    "num_valid_simulations",
    "sbi_version",
    "finished_at",
)


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method trained once on one task at one budget and seed."""

    task: str
    method: str
    budget: int
    seed: int

    def key(self) -> tuple[str, str, int, int]:
        return (self.task, self.method, self.budget, self.seed)


@dataclass(frozen=True)
class RunSettings:
    """What every cell of a sweep shares.

    Args:
        observations: sbibm observation numbers (1–10) to evaluate on.
        num_samples: Posterior samples per observation (sbibm uses 10 000).
        classifier: C2ST classifier: ``"mlp"`` (sbi's MLP test, sbibm's network
            with early stopping, in torch: :mod:`sbi_allinone.benchmarks.c2st`),
            ``"mlp_sklearn"`` (the same test by sbi's sklearn ``c2st``, slower),
            ``"mlp_sbibm"`` (sbibm's own test, without early stopping, in torch:
            the metric of sbibm's published numbers, slower), ``"rf"`` (random
            forest, the Simformer paper's), or several, comma-separated
            (``"mlp,rf"``): the same samples are then scored by each, one row per
            classifier.
        threads: Torch threads per cell; ``None`` leaves torch's default.
        show_progress_bars: Show training progress bars inside cells.
        target: ``"posterior"`` (C2ST against reference posterior samples) or
            ``"likelihood"`` (C2ST of the method's likelihood samples against
            simulations at each observation's true parameters).
        max_sampling_time: Seconds a posterior's rejection of samples outside the
            prior may take per observation (for posteriors that reject, like sbi's
            ``DirectPosterior``). A posterior whose mass lies mostly outside the
            prior would otherwise never finish; what is missing then is filled with
            samples drawn without rejection, and a warning says how many.
        device: Device of the torch C2ST (``"mlp"``, ``"mlp_sbibm"``); training
            stays where the method puts it.
    """

    observations: tuple[int, ...] = tuple(range(1, 11))
    num_samples: int = 10_000
    classifier: str = "mlp"
    threads: int | None = None
    show_progress_bars: bool = False
    target: str = "posterior"
    max_sampling_time: float = 120.0
    device: str = "cpu"

    @property
    def classifiers(self) -> tuple[str, ...]:
        """The C2ST classifiers, in order."""
        return tuple(c.strip() for c in self.classifier.split(",") if c.strip())

    def __post_init__(self) -> None:
        results_file(self.target)
        if not self.classifiers or any(c not in CLASSIFIERS for c in self.classifiers):
            raise ValueError(
                f"`classifier` must be one or several of {', '.join(CLASSIFIERS)} "
                f"(comma-separated), got {self.classifier!r}."
            )
        if not self.observations or any(
            o not in range(1, 11) for o in self.observations
        ):
            raise ValueError(
                f"`observations` must be numbers in 1..10, got {self.observations}."
            )
        if not self.max_sampling_time > 0:
            raise ValueError(
                "`max_sampling_time` must be positive (seconds), got "
                f"{self.max_sampling_time}."
            )
        if self.num_samples < 1:
            raise ValueError(f"`num_samples` must be positive, got {self.num_samples}.")


def make_cells(
    tasks: Iterable[str],
    methods: Iterable[str],
    budgets: Iterable[int],
    seeds: Iterable[int],
) -> list[Cell]:
    """All cells of a sweep; unknown tasks or methods raise ``ValueError``."""
    tasks, methods, budgets, seeds = (
        list(tasks),
        list(methods),
        list(budgets),
        list(seeds),
    )
    # Canonical names: "iflow[ steps = 64 ]" and "iflow[steps=64]" are one method.
    methods = [get_method(name).name for name in methods]
    for name in tasks:
        check_task_name(name)
    if any(b < 2 for b in budgets):
        raise ValueError(f"`budgets` must be at least 2 simulations, got {budgets}.")
    return [
        # Small budgets first: a partial sweep gives a complete low-budget table.
        Cell(t, m, b, s)
        for b in sorted(budgets)
        for t in tasks
        for m in methods
        for s in seeds
    ]


def data_seed(cell: Cell) -> int:
    """Seed of a cell's simulations: shared by all methods of a (task, budget, seed)."""
    return zlib.crc32(f"{cell.task}/{cell.budget}/{cell.seed}".encode())


def cell_simulations(
    cell: Cell, task: Task | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The simulations a cell trains on: the same for every method of a
    (task, budget, seed), so studies outside the runner can reuse them.

    Args:
        cell: The cell; its method does not matter.
        task: ``get_task(cell.task)``, if already at hand.

    Returns:
        ``theta`` ``(budget, dim_theta)`` and ``x`` ``(budget, dim_x)``.
    """
    task = task if task is not None else get_task(cell.task)
    torch.manual_seed(data_seed(cell))
    theta = task.prior.sample((cell.budget,))
    return theta, task.simulate(theta)


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
        One row (dict over :data:`COLUMNS`) per observation.
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

    estimator = trained.posterior
    if settings.target == "likelihood":
        if trained.likelihood is None:
            raise ValueError(f"Method {method.name!r} provides no likelihood.")
        estimator = trained.likelihood
    drawn = []
    for observation in settings.observations:
        condition, reference = _condition_and_reference(
            task, observation, settings, cell
        )
        start = time.perf_counter()
        samples = _sample(estimator, condition, settings, f"{cell}, obs {observation}")
        drawn.append((reference, samples, time.perf_counter() - start))
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
            "were drawn without rejection (outside the prior's support, so C2ST "
            "counts them against the method).",
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
    seconds are then an equal share. NaN or infinite samples score NaN.
    """
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
            seed=1,
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
            value = float(sklearn_c2st(reference, samples, seed=1, classifier=name))
            scores[i] = (round(value, 4), time.perf_counter() - start)
    return [scores[i] for i in range(len(pairs))]


def read_results(out_dir: str | Path, target: str = "posterior") -> list[dict]:
    """Rows of a results folder's CSV file, numbers converted; ``[]`` if none.

    Files written before the torch C2ST (no ``c2st_time_s`` column) were scored by
    sklearn: their ``"mlp"`` rows are read as ``"mlp_sklearn"``.

    Args:
        out_dir: Results folder.
        target: ``"posterior"`` or ``"likelihood"`` rows.
    """
    path = Path(out_dir) / results_file(target)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        legacy = "c2st_time_s" not in (reader.fieldnames or ())
        return [_parse_row(row, legacy) for row in reader]


def _parse_row(row: dict, legacy: bool = False) -> dict:
    for key in ("budget", "seed", "observation", "num_samples", "epochs"):
        row[key] = int(row[key])
    row["num_valid_simulations"] = int(row["num_valid_simulations"])
    if legacy:
        row["c2st_time_s"] = math.nan
        if row["classifier"] == "mlp":
            row["classifier"] = "mlp_sklearn"
    for key in ("c2st", "train_time_s", "sample_time_s", "c2st_time_s"):
        row[key] = float(row[key])
    return row


def completed_cells(out_dir: str | Path, settings: RunSettings) -> set[tuple]:
    """Keys of cells whose rows already cover all requested observations."""
    covered: dict[tuple, set[tuple[int, str]]] = {}
    for row in read_results(out_dir, settings.target):
        if row["num_samples"] == settings.num_samples:
            key = (row["task"], row["method"], row["budget"], row["seed"])
            covered.setdefault(key, set()).add((row["observation"], row["classifier"]))
    wanted = {(o, c) for o in settings.observations for c in settings.classifiers}
    return {key for key, done in covered.items() if wanted <= done}


def append_results(
    out_dir: str | Path, rows: Sequence[dict], target: str = "posterior"
) -> None:
    """Append rows (dicts over :data:`COLUMNS`) to the target's CSV file, durably.

    A file with older columns is first rewritten with the current ones (its
    ``"mlp"`` rows renamed ``"mlp_sklearn"``, see :func:`read_results`).
    """
    path = Path(out_dir) / results_file(target)
    if path.exists() and _header(path) != list(COLUMNS):
        _write_rows(path, read_results(out_dir, target))
    new_file = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


def _write_rows(path: Path, rows: Sequence[dict]) -> None:
    """Replace ``path`` by ``rows`` at once (a new file moved over the old one)."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


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
        if scheduler is not None:
            from sbi_allinone.benchmarks.cluster import dask_client, run_on_dask

            with dask_client(scheduler, jobs) as client:
                return run_on_dask(
                    todo, settings, out_dir, client, lambda _: bar.update()
                )
        if jobs == 1:
            return _run_here(todo, settings, out_dir, bar)
        return _run_in_processes(todo, settings, out_dir, jobs, bar)
    finally:
        bar.close()


def _run_here(
    cells: Sequence[Cell], settings: RunSettings, out_dir: Path, bar
) -> list[tuple[Cell, BaseException]]:
    failures = []
    for cell in cells:
        bar.set_postfix_str(f"{cell.task}/{cell.method}/{cell.budget}/s{cell.seed}")
        try:
            append_results(out_dir, run_cell(cell, settings), settings.target)
        except Exception as error:  # a failed cell must not stop the sweep
            failures.append((cell, error))
        bar.update()
    return failures


def _run_in_processes(
    cells: Sequence[Cell], settings: RunSettings, out_dir: Path, jobs: int, bar
) -> list[tuple[Cell, BaseException]]:
    failures = []
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures: dict[Future, Cell] = {
            pool.submit(run_cell, cell, settings, get_method(cell.method)): cell
            for cell in cells
        }
        for future in as_completed(futures):
            error = future.exception()
            if error is None:
                append_results(out_dir, future.result(), settings.target)
            else:
                failures.append((futures[future], error))
            bar.update()
    return failures
