"""Benchmark results: tidy CSV files, one row per (cell, observation, classifier).

A results folder holds one file per target (:func:`results_file`: ``results.csv``
for posteriors, ``likelihood.csv`` for likelihoods). The runner appends each
finished cell's rows at once and durably (:func:`append_results`), so an interrupted
sweep resumes where it stopped (:func:`completed_cells`) and never loses finished
cells. Files written before the torch C2ST are read, and rewritten on the next
append, with their ``"mlp"`` rows renamed ``"mlp_sklearn"`` (:func:`read_results`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

from sbi_allinone.benchmarks.cells import RunSettings, check_target

__all__ = [
    "COLUMNS",
    "RESULTS_FILE",
    "append_csv",
    "append_results",
    "completed_cells",
    "read_results",
    "results_file",
]

RESULTS_FILE = "results.csv"
_FILES = {"posterior": RESULTS_FILE, "likelihood": "likelihood.csv"}


def results_file(target: str = "posterior") -> str:
    """Name of the CSV file holding a target's rows in a results folder."""
    check_target(target)
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
    append_csv(path, COLUMNS, rows)


def append_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    """Append ``rows`` to the CSV file ``path`` (header first if it is new), and
    sync it to disk: a killed run keeps every finished cell."""
    new_file = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
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
