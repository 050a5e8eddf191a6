"""Benchmarks: sbibm's tasks on current sbi, a method registry, a runner and reports."""

from sbi_allinone.benchmarks.cells import (
    Cell,
    RunSettings,
    cell_simulations,
    make_cells,
)
from sbi_allinone.benchmarks.methods import (
    Method,
    TrainedPosterior,
    available_methods,
    get_method,
    register_method,
)
from sbi_allinone.benchmarks.report import write_report
from sbi_allinone.benchmarks.results import read_results
from sbi_allinone.benchmarks.runner import run_benchmark, run_cell
from sbi_allinone.benchmarks.tasks import TASK_NAMES, Task, get_task

__all__ = [
    "TASK_NAMES",
    "Cell",
    "Method",
    "RunSettings",
    "Task",
    "TrainedPosterior",
    "available_methods",
    "cell_simulations",
    "get_method",
    "get_task",
    "make_cells",
    "read_results",
    "register_method",
    "run_benchmark",
    "run_cell",
    "write_report",
]
