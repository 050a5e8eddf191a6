"""Sweeps on a Dask cluster: workers run cells, the client alone writes the results.

Needs the ``dask`` extra (``pip install "sbi-allinone[dask]"``). A cell is submitted
as one task, ``run_cell(cell, settings, method)``; the client appends a cell's rows to
``results.csv`` when its task finishes, so the file has one writer and each cell is
written once. A worker that dies takes its running cell with it: the scheduler runs
that cell again on another worker (Dask's ``distributed.scheduler.allowed-failures``
times, 3 by default), and only the finished run is written. An interrupted client
writes the cells finished so far and cancels what is left (a local cluster is shut
down); run the same command again and it resumes from the file.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from sbi_allinone.benchmarks.cells import Cell, RunSettings
from sbi_allinone.benchmarks.methods import get_method
from sbi_allinone.benchmarks.results import append_results, report_failure
from sbi_allinone.benchmarks.runner import run_cell

__all__ = ["dask_client", "run_on_dask"]


@contextmanager
def dask_client(scheduler: str, workers: int = 1):
    """A ``dask.distributed.Client`` for a scheduler, closed on exit.

    Args:
        scheduler: ``"local"`` for a cluster of worker processes on this machine,
            or a scheduler's address (``"tcp://host:8786"``).
        workers: Number of worker processes of a local cluster (one thread each).

    Yields:
        The connected client.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError(
            "`scheduler` needs Dask: pip install 'sbi-allinone[dask]'."
        ) from None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        with cluster, Client(cluster) as client:
            yield client
    else:
        with Client(scheduler) as client:
            yield client


def run_on_dask(
    cells: Sequence[Cell],
    settings: RunSettings,
    out_dir: str | Path,
    client,  # noqa: ANN001 -- dask.distributed.Client, an optional dependency
    on_finished=None,  # noqa: ANN001
) -> list[tuple[Cell, BaseException]]:
    """Run cells on a Dask cluster; append each finished cell's rows to ``out_dir``.

    Args:
        cells: Cells to run (none of them finished yet).
        settings: Shared evaluation settings.
        out_dir: Results folder.
        client: Connected ``dask.distributed.Client``.
        on_finished: Called with each cell once it has finished or failed.

    Returns:
        The cells that failed, with their exceptions.
    """
    from dask.distributed import as_completed

    futures = {
        client.submit(
            run_cell, cell, settings, get_method(cell.method),
            key=f"cell-{cell.task}-{cell.method}-{cell.budget}-{cell.seed}-"
            f"{uuid.uuid4().hex[:8]}",
            pure=False,
            # Prefer the given order (small budgets first), as the local runner.
            priority=len(cells) - position,
        ): cell
        for position, cell in enumerate(cells)
    }  # fmt: skip
    failures: list[tuple[Cell, BaseException]] = []
    try:
        for future in as_completed(futures):
            cell = futures.pop(future)
            if future.status == "finished":
                append_results(out_dir, future.result(), settings.target)
            else:
                failures.append(report_failure(cell, future.exception()))
            if on_finished is not None:
                on_finished(cell)
    except KeyboardInterrupt:
        # Cells that finished before the interrupt but are not written yet.
        for future in [f for f in futures if f.status == "finished"]:
            append_results(out_dir, future.result(), settings.target)
        raise
    finally:
        # Interrupted (Ctrl-C, a failed write): nothing else runs for this client.
        client.cancel(list(futures))
    return failures
