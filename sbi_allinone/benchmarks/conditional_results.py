"""Results of the all-conditional benchmark: a tidy CSV file and its table.

One row per (task, method, budget, seed, mask kind, mask index, classifier) in
``conditionals.csv`` of a results folder; rows are appended cell by cell, durably,
so that an interrupted sweep resumes (:func:`completed_conditional_cells`).
:func:`conditional_table` averages the C2ST per task, budget and mask kind, one
column per method.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from sbi_allinone.benchmarks.results import append_csv, read_csv

__all__ = [
    "CONDITIONALS_FILE",
    "CONDITIONAL_COLUMNS",
    "append_conditional_results",
    "completed_conditional_cells",
    "conditional_table",
    "read_conditional_results",
]

CONDITIONALS_FILE = "conditionals.csv"

CONDITIONAL_COLUMNS = (
    "task",
    "method",
    "budget",
    "seed",
    "mask_kind",
    "mask_index",
    "mask",
    "observation_seed",
    "num_latent",
    "c2st",
    "classifier",
    "num_samples",
    "reference_max_rhat",
    "reference_min_ess",
    "train_time_s",
    "sample_time_s",
    "c2st_time_s",
    "epochs",
    "sbi_version",
    "finished_at",
)
_INTEGERS = ("budget", "seed", "mask_index", "observation_seed", "num_latent")
_INTEGERS += ("num_samples", "epochs")
_FLOATS = ("c2st", "reference_max_rhat", "reference_min_ess", "train_time_s")
_FLOATS += ("sample_time_s", "c2st_time_s")


def read_conditional_results(out_dir: str | Path) -> list[dict]:
    """Rows of a results folder's ``conditionals.csv``, numbers converted.

    Args:
        out_dir: Results folder.

    Returns:
        The rows (``[]`` without a file); ``mask`` stays a bit string such as
        ``"0001111"`` (``1`` = conditioned entry of ``[theta, x]``). Damaged
        lines are skipped with a warning naming the line (:func:`~.results.read_csv`).
    """
    return read_csv(Path(out_dir) / CONDITIONALS_FILE, CONDITIONAL_COLUMNS, _parse)


def _parse(row: dict) -> dict:
    row.update({key: int(row[key]) for key in _INTEGERS})
    row.update({key: float(row[key]) for key in _FLOATS})
    return row


def append_conditional_results(out_dir: str | Path, rows: Sequence[dict]) -> None:
    """Append rows (dicts over :data:`CONDITIONAL_COLUMNS`) durably.

    Args:
        out_dir: Results folder (created if missing).
        rows: The rows of one finished cell.
    """
    path = Path(out_dir) / CONDITIONALS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    append_csv(path, CONDITIONAL_COLUMNS, rows)


def completed_conditional_cells(
    out_dir: str | Path,
    num_samples: int,
    wanted: dict[tuple, set[tuple[str, int, str]]],
) -> set[tuple]:
    """Keys of cells whose rows already cover everything they are asked for.

    Args:
        out_dir: Results folder.
        num_samples: Samples per conditional of the sweep (rows with another count
            do not count).
        wanted: Per cell key ``(task, method, budget, seed)``, the
            ``(mask_kind, mask_index, classifier)`` triples the sweep needs.

    Returns:
        The keys of ``wanted`` whose triples are all present.
    """
    covered: dict[tuple, set[tuple[str, int, str]]] = defaultdict(set)
    for row in read_conditional_results(out_dir):
        if row["num_samples"] == num_samples:
            key = (row["task"], row["method"], row["budget"], row["seed"])
            covered[key].add((row["mask_kind"], row["mask_index"], row["classifier"]))
    return {key for key, triples in wanted.items() if triples <= covered[key]}


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def conditional_table(rows: Sequence[dict], classifier: str | None = None) -> str:
    """Markdown table: mean C2ST per (task, budget, mask kind), a column per method.

    Means are over masks, observations and seeds; ``n`` in brackets counts the
    rows, ``–`` marks a method without that kind of conditional (e.g. NPE on
    likelihood masks).

    Args:
        rows: Rows of :func:`read_conditional_results`.
        classifier: Only rows of this C2ST classifier (default: the first one of
            the rows).

    Returns:
        The table (empty string without rows).
    """
    if not rows:
        return ""
    classifier = classifier or rows[0]["classifier"]
    rows = [row for row in rows if row["classifier"] == classifier]
    methods = list(dict.fromkeys(row["method"] for row in rows))
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["task"], row["budget"], row["mask_kind"])
        groups[key][row["method"]].append(row["c2st"])
    header = ["task", "budget", "mask kind", *methods]
    lines = [
        f"C2ST ({classifier}), mean over masks, observations and seeds (rows):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (task, budget, kind), by_method in sorted(groups.items()):
        cells = [
            f"{_mean(by_method[m]):.3f} ({len(by_method[m])})" if by_method[m] else "–"
            for m in methods
        ]
        lines.append("| " + " | ".join([task, str(budget), kind, *cells]) + " |")
    return "\n".join(lines)
