"""Benchmark results: tidy CSV files, one row per (cell, observation, classifier).

A results folder holds one file per target (:func:`results_file`: ``results.csv``
for posteriors, ``likelihood.csv`` for likelihoods). The runner appends each
finished cell's rows at once and durably (:func:`append_results`), so an interrupted
sweep resumes where it stopped (:func:`completed_cells`) and never loses finished
cells. A damaged file (a line cut short by a crash, garbled text) loses only its
damaged lines, each reported by a warning (:func:`read_csv`). Files written before
the torch C2ST are read, and rewritten on the next append, with their ``"mlp"`` rows
renamed ``"mlp_sklearn"`` (:func:`read_results`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from sbi_allinone.benchmarks.cells import RunSettings, check_target

__all__ = [
    "COLUMNS",
    "RESULTS_FILE",
    "append_csv",
    "append_results",
    "completed_cells",
    "read_csv",
    "read_results",
    "report_failure",
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


# The columns of files written before the torch C2ST.
_LEGACY_COLUMNS = tuple(c for c in COLUMNS if c != "c2st_time_s")


def read_results(out_dir: str | Path, target: str = "posterior") -> list[dict]:
    """Rows of a results folder's CSV file, numbers converted; ``[]`` if none.

    Files written before the torch C2ST (no ``c2st_time_s`` column) were scored by
    sklearn: their ``"mlp"`` rows are read as ``"mlp_sklearn"``. Damaged lines (cut
    short by a crash, garbled) are skipped, each with a warning (:func:`read_csv`).

    Args:
        out_dir: Results folder.
        target: ``"posterior"`` or ``"likelihood"`` rows.

    Returns:
        The readable rows, in file order.
    """
    path = Path(out_dir) / results_file(target)
    legacy = _header(path) == list(_LEGACY_COLUMNS)
    columns = _LEGACY_COLUMNS if legacy else COLUMNS
    return read_csv(path, columns, lambda row: _parse_row(row, legacy))


def read_csv(
    path: Path, columns: Sequence[str], parse: Callable[[dict], dict]
) -> list[dict]:
    """Rows of a CSV file written by :func:`append_csv`, each converted by ``parse``.

    A line that does not hold one value per column, or that ``parse`` rejects, is
    skipped with a warning naming the file and the line: a damaged file (a crash
    mid-write, garbled text) costs its damaged rows only. A header other than
    ``columns`` is warned about, and the rows are read as ``columns``.

    Args:
        path: The CSV file; none: no rows.
        columns: The columns the file should have.
        parse: Converts one row (a dict of strings) and raises ``ValueError``,
            ``KeyError`` or ``TypeError`` on bad values.

    Returns:
        The converted rows, in file order.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values = next(csv.reader([line.rstrip("\r")]))
            if len(values) != len(columns):
                raise ValueError(f"{len(values)} values for {len(columns)} columns")
            if number == 1:
                if values != list(columns):
                    raise ValueError(f"header is not {','.join(columns)}")
                continue
            rows.append(parse(dict(zip(columns, values, strict=True))))
        except (csv.Error, ValueError, KeyError, TypeError) as error:
            warnings.warn(
                f"{path}, line {number}: damaged, skipped ({error}): {line[:200]!r}",
                stacklevel=3,
            )
    return rows


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

    A file with the columns of before the torch C2ST is first rewritten with the
    current ones (its ``"mlp"`` rows renamed ``"mlp_sklearn"``, see
    :func:`read_results`).

    Args:
        out_dir: Results folder.
        rows: The rows of one finished cell.
        target: ``"posterior"`` or ``"likelihood"`` rows.
    """
    path = Path(out_dir) / results_file(target)
    if _header(path) == list(_LEGACY_COLUMNS):
        _write_rows(path, read_results(out_dir, target))
    append_csv(path, COLUMNS, rows)


def report_failure(cell: object, error: BaseException) -> tuple[object, BaseException]:
    """Say at once that a cell failed (a sweep may run for hours, or be stopped,
    before its summary), and return ``(cell, error)`` for that summary.

    Args:
        cell: The failed cell.
        error: Its exception.

    Returns:
        ``(cell, error)``.
    """
    print(
        f"cell {cell} failed: {type(error).__name__}: {error} (nothing recorded; "
        "running the same command again retries it)",
        file=sys.stderr,
        flush=True,
    )
    return cell, error


def append_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    """Append ``rows`` to the CSV file ``path`` (header first if it is new or empty)
    in one write, synced to disk: a killed run keeps every finished cell, and never
    leaves part of a row.

    A file whose last line lacks its line break (cut short by a crash) gets one
    first, so the damaged line stays apart (:func:`read_csv` skips it) and the new
    rows stay whole.

    Args:
        path: The CSV file.
        columns: Its columns, in order.
        rows: Dicts over ``columns``.
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns))
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode()
    with path.open("ab+") as f:
        if size > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _header(path: Path) -> list[str]:
    """The first line's values (``[]`` without a file or a readable first line)."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        first = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        return next(csv.reader([first]), [])
    except csv.Error:
        return []


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
