"""Sweeps on Dask: a killed worker and an interrupted client lose and repeat nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from dask.distributed import LocalCluster

from sbi_allinone.benchmarks import RunSettings, make_cells, read_results, run_benchmark
from sbi_allinone.benchmarks.results import RESULTS_FILE

from .helpers import STARTS_LOG, register_test_methods

SETTINGS = RunSettings(observations=(1,), num_samples=200, classifier="rf")
BUDGETS = [50, 60, 70, 80, 90, 100]
ROOT = Path(__file__).resolve().parents[2]


def _cells():
    register_test_methods()
    return make_cells(["two_moons"], ["test_slow_prior"], BUDGETS, [1])


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _starts(path: Path) -> list[tuple[int, int]]:
    """(budget, worker process id) of each cell start so far."""
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def test_sweep_survives_a_killed_worker(tmp_path, monkeypatch):
    starts = tmp_path / "starts.log"
    monkeypatch.setenv(STARTS_LOG, str(starts))  # inherited by the workers
    cells, failures = _cells(), []
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        sweep = threading.Thread(
            target=lambda: failures.extend(
                run_benchmark(
                    cells,
                    SETTINGS,
                    tmp_path,
                    show_progress_bars=False,
                    scheduler=cluster.scheduler_address,
                )  # fmt: skip
            )
        )
        sweep.start()
        # Kill the first worker that starts a cell, in the middle of it.
        killed, pid = _wait_for(lambda: _starts(starts), 60, "a started cell")[0]
        os.kill(pid, signal.SIGKILL)
        sweep.join(timeout=180)
        assert not sweep.is_alive()

    assert failures == []
    rows = read_results(tmp_path)
    assert sorted(row["budget"] for row in rows) == BUDGETS  # each cell exactly once
    # The killed cell ran again, on a fresh worker.
    again = [p for budget, p in _starts(starts) if budget == killed]
    assert len(again) == 2 and again[1] != pid


SWEEP = textwrap.dedent(
    """
    import signal
    import sys
    from tests.benchmarks.helpers import register_test_methods
    from tests.benchmarks.test_cluster import SETTINGS, _cells
    from sbi_allinone.benchmarks import run_benchmark

    # A shell starts background jobs with SIGINT ignored, and Python keeps that;
    # this client stands for one in a terminal, where Ctrl-C raises.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    register_test_methods()
    run_benchmark(_cells(), SETTINGS, sys.argv[1], jobs=2, scheduler="local",
                  show_progress_bars=False)
    """
)


def _rows_written(out: Path) -> int:
    path = out / RESULTS_FILE
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def test_interrupted_client_resumes(tmp_path):
    command = [sys.executable, "-c", SWEEP, str(tmp_path)]
    first = subprocess.Popen(command, cwd=ROOT)
    try:
        _wait_for(lambda: _rows_written(tmp_path) >= 1, 120, "a first finished cell")
        first.send_signal(signal.SIGINT)  # Ctrl-C to the client only
        assert first.wait(timeout=60) != 0
    finally:
        first.kill()
    saved = read_results(tmp_path)
    assert 1 <= len(saved) < len(BUDGETS)

    subprocess.run(command, cwd=ROOT, check=True, timeout=180)
    rows = read_results(tmp_path)
    assert rows[: len(saved)] == saved  # finished cells are kept as they were
    assert sorted(row["budget"] for row in rows) == BUDGETS  # and none is repeated
