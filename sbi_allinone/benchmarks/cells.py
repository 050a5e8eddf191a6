"""What a benchmark sweep is made of: cells, the settings they share, their data.

A cell is one (task, method, budget, seed): the method trained once on ``budget``
prior draws and their simulations. The simulations are the same for every method of
a (task, budget, seed): their seed depends on task, budget and seed only
(:func:`data_seed`), so methods are compared on the same data and studies outside the
runner can reuse them (:func:`cell_simulations`). :class:`RunSettings` says what
every cell of a sweep is scored on: observations, number of samples, classifiers, and
the target (``"posterior"`` or ``"likelihood"``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from sbi_allinone.benchmarks.methods import get_method
from sbi_allinone.benchmarks.tasks import Task, check_task_name, get_task

__all__ = [
    "CLASSIFIERS",
    "Cell",
    "RunSettings",
    "TARGETS",
    "cell_simulations",
    "check_target",
    "data_seed",
    "make_cells",
]

TARGETS = ("posterior", "likelihood")
# "mlp": sbi's MLP test (sbibm's network, early stopping) in torch
# (sbi_allinone.benchmarks.c2st); "mlp_sklearn": the same test by sbi's sklearn C2ST;
# "mlp_sbibm": sbibm's own MLP test (no early stopping) in torch, the metric of
# sbibm's published numbers; "rf": sbi's random forest (the Simformer paper's).
CLASSIFIERS = ("mlp", "mlp_sklearn", "mlp_sbibm", "rf")


def check_target(target: str) -> None:
    """Raise ``ValueError`` unless ``target`` is one of :data:`TARGETS`."""
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}, got {target!r}.")


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
        check_target(self.target)
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
    check_task: Callable[[str], Any] | None = None,
) -> list[Cell]:
    """All cells of a sweep; unknown tasks or methods raise ``ValueError``
    (tasks checked by ``check_task``, default the sbibm task registry)."""
    tasks, methods, budgets, seeds = (
        list(tasks),
        list(methods),
        list(budgets),
        list(seeds),
    )
    # Canonical names: "iflow[ steps = 64 ]" and "iflow[steps=64]" are one method.
    methods = [get_method(name).name for name in methods]
    for name in tasks:
        (check_task or check_task_name)(name)
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
