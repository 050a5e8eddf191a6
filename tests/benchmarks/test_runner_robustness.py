"""The runner against faults: Ctrl-C mid-C2ST, damaged CSV files, an interrupted
parallel sweep, bad command lines."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from sbi_allinone.benchmarks import read_results
from sbi_allinone.benchmarks.cli import main
from sbi_allinone.benchmarks.results import COLUMNS, append_results, results_file

from .helpers import STARTS_LOG, register_test_methods

ROOT = Path(__file__).resolve().parents[2]
CHEAP = ["--tasks", "two_moons", "--methods", "test_prior_or_stuck"]
CHEAP += ["--budgets", "50", "--observations", "1", "--num-samples", "100"]


@pytest.fixture(autouse=True)
def _methods():
    register_test_methods()


def _row(budget: int, observation: int = 1) -> dict:
    values = {"task": "two_moons", "method": "npe", "budget": budget, "seed": 1}
    values |= {"observation": observation, "c2st": 0.75, "classifier": "rf"}
    values |= {"num_samples": 100, "train_time_s": 1.0, "sample_time_s": 0.5}
    values |= {"c2st_time_s": 0.25, "epochs": 3, "num_valid_simulations": budget}
    values |= {"sbi_version": "0", "finished_at": "2026-01-01T00:00:00"}
    assert set(values) == set(COLUMNS)
    return values


def test_ctrl_c_swallowed_by_the_classifier_records_nothing(
    tmp_path, monkeypatch, capsys
):
    """Finding 2: sklearn's MLP catches Ctrl-C and returns an under-trained
    classifier; the cell must not be written, and the sweep must exit 130."""

    def swallowing_c2st(reference, samples, seed, classifier):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of fit()
            time.sleep(2)
        except KeyboardInterrupt:
            pass  # MLPClassifier.fit: "Training interrupted by user."
        return 0.5

    monkeypatch.setattr("sbi_allinone.benchmarks.runner.sklearn_c2st", swallowing_c2st)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args = [*CHEAP, "--classifier", "mlp_sklearn", "--out", str(tmp_path)]
        assert main(["bench", *args]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "interrupted" in capsys.readouterr().err
    assert read_results(tmp_path) == []


@pytest.mark.parametrize("target", ["posterior", "likelihood"])
def test_damaged_lines_are_reported_and_skipped(tmp_path, target):
    """Finding 3: a garbled line, a line cut short by a crash and a missing final
    line break lose the damaged rows only, each named with file and line."""
    path = tmp_path / results_file(target)
    append_results(tmp_path, [_row(100), _row(200)], target)
    good = path.read_bytes()
    garbled = b"two_moons,npe,1\xff0,x,\x00,,,\n"
    path.write_bytes(good + garbled + good.splitlines(keepends=True)[2][:-40])

    # Resuming appends after the cut line, which stays apart from the new row.
    append_results(tmp_path, [_row(300)], target)
    for _ in range(2):  # the sweep's resume, then the report: neither crashes
        with pytest.warns(UserWarning) as caught:
            rows = read_results(tmp_path, target)
        assert [r["budget"] for r in rows] == [100, 200, 300]
        messages = [str(w.message) for w in caught]
        assert len(messages) == 2
        assert messages[0].startswith(f"{path}, line 4: damaged")
        assert messages[1].startswith(f"{path}, line 5: damaged")


def test_row_after_a_missing_final_line_break_is_kept(tmp_path):
    """Finding 3: a file whose last row lacks its line break (written by another
    tool, or cut right before it) must not swallow the next row."""
    append_results(tmp_path, [_row(100)])
    path = tmp_path / results_file()
    path.write_bytes(path.read_bytes().rstrip(b"\r\n"))
    append_results(tmp_path, [_row(200)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["budget"] for r in read_results(tmp_path)] == [100, 200]
    assert main(["report", str(tmp_path)]) == 0


SWEEP = textwrap.dedent(
    """
    import signal
    import sys
    from tests.benchmarks.helpers import register_test_methods
    from sbi_allinone.benchmarks.cli import main

    # A shell starts background jobs with SIGINT ignored; this stands for a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    register_test_methods()
    sys.exit(main(["bench", *sys.argv[1:]]))
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _started_pids(starts: Path) -> set[int]:
    if not starts.exists():
        return set()
    return {int(line.split()[1]) for line in starts.read_text().splitlines()}


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_interrupted_parallel_sweep_stops_its_workers(tmp_path):
    """Finding 4: Ctrl-C to the parent of ``--jobs 2`` stops the workers at once,
    exits 130 and keeps the cell that finished before."""
    starts = tmp_path / "starts.log"
    out = tmp_path / "out"
    args = [*CHEAP[:4], "--budgets", "50,60,70", *CHEAP[6:], "--classifier", "rf"]
    command = [sys.executable, "-c", SWEEP, *args, "--jobs", "2", "--out", str(out)]
    env = {**os.environ, STARTS_LOG: str(starts), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:

        def stuck_workers():  # both workers busy with a stuck cell (budget >= 60)
            if not starts.exists() or not (out / results_file()).exists():
                return None
            lines = [line.split() for line in starts.read_text().splitlines()]
            pids = {int(pid) for budget, pid in lines if int(budget) >= 60}
            return pids if len(pids) == 2 else None

        workers = _wait_for(stuck_workers, 120, "a finished cell, two stuck ones")
        parent.send_signal(signal.SIGINT)  # Ctrl-C to the parent only
        assert parent.wait(timeout=15) == 130
        _wait_for(lambda: not any(map(_alive, workers)), 5, "stopped workers")
    finally:
        parent.kill()
        for pid in _started_pids(starts):  # a failing run leaves no stuck workers
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert [row["budget"] for row in read_results(out)] == [50]
    assert "interrupted" in parent.stderr.read().decode()


@pytest.mark.parametrize(
    "bad",
    [
        ["--jobs", "0"],
        ["--threads", "0"],
        ["--tasks", ","],
        ["--methods", ","],
        ["--tasks", "nope"],
        ["--methods", "nope"],
        ["--out", "{file}/results"],
        ["--out", "{file}"],
    ],
)
def test_bad_command_lines_are_one_line_errors(tmp_path, capsys, bad):
    """Finding 9: one line on stderr and exit code 2, before any cell runs."""
    file = tmp_path / "a_file"
    file.write_text("")
    bad = [arg.format(file=file) for arg in bad]
    out = ["--out", str(tmp_path / "out")]
    assert main(["bench", *CHEAP, "--classifier", "rf", *out, *bad]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "out" / results_file()).exists()


def test_damaged_conditional_rows_are_reported_and_skipped(tmp_path):
    """Finding 3 for ``--target conditionals``: its reader skips a damaged line
    with a warning instead of crashing the resume and the report."""
    from sbi_allinone.benchmarks.conditional_results import (
        CONDITIONAL_COLUMNS,
        CONDITIONALS_FILE,
        append_conditional_results,
        read_conditional_results,
    )

    numbers = {c: "1" for c in CONDITIONAL_COLUMNS}
    row = {**numbers, "task": "tree", "method": "npe", "mask_kind": "posterior"}
    row.update({"mask": "0001111", "classifier": "mlp", "sbi_version": "0.27.0"})
    append_conditional_results(tmp_path, [row])
    path = tmp_path / CONDITIONALS_FILE
    path.write_bytes(path.read_bytes() + b"tree,npe,10")  # cut short by a crash
    append_conditional_results(tmp_path, [{**row, "budget": "2"}])
    with pytest.warns(UserWarning, match="line 3: damaged"):
        rows = read_conditional_results(tmp_path)
    assert [r["budget"] for r in rows] == [1, 2]


def test_a_failed_cell_is_reported_at_once_even_if_the_sweep_is_stopped(
    tmp_path, capsys
):
    """A sweep stopped after a cell failed (here by Ctrl-C in the next cell) still
    said which cell failed and why: the summary at the end never comes."""
    args = ["--tasks", "two_moons", "--methods", "test_broken,test_interrupted"]
    args += ["--budgets", "50", "--observations", "1", "--num-samples", "100"]
    assert main(["bench", *args, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "test_broken" in err and "RuntimeError" in err and "retries it" in err
    assert "interrupted" in err
