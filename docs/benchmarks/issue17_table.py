"""Issue 17's table: every method of the issue-17 grid, both classifiers, times and
their ratios to npse, from one or more runner folders (their rows merged; a later
folder's rows of the same cell and classifier replace an earlier one's).

    D=docs/benchmarks
    python $D/issue17_table.py $D/2026-12-02-issue17-grid \
        $D/2026-12-02-issue17-grid-simformer $D/2026-12-03-issue20-posterior \
        $D/2026-12-03-issue23b
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path
from statistics import mean

TASKS = ("two_moons", "gaussian_linear", "slcp", "gaussian_mixture")
METHODS = (
    "simformer", "simformer_undirected", "simformer_directed", "npe", "npe_sbibm",
    "npe_nsf", "npse", "fmpe", "iflow",
)  # fmt: skip
#: The paper's Simformer (best mask), random-forest C2ST.
PAPER = {
    ("two_moons", 1000): 0.611, ("gaussian_linear", 1000): 0.539,
    ("slcp", 1000): 0.831, ("gaussian_mixture", 1000): 0.572,
    ("two_moons", 10000): 0.521, ("gaussian_linear", 10000): 0.507,
    ("slcp", 10000): 0.646, ("gaussian_mixture", 10000): 0.515,
}  # fmt: skip


def _rows(folders: list[Path]) -> dict[tuple, list[dict]]:
    cells: dict[tuple, list[dict]] = {}
    for folder in folders:
        found: dict[tuple, list[dict]] = defaultdict(list)
        with (folder / "results.csv").open() as f:
            for row in csv.DictReader(f):
                task, method = row["task"], row["method"]
                found[(task, int(row["budget"]), method, row["classifier"])].append(row)
        cells.update(found)
    return cells


def _mean(rows: list[dict], column: str) -> float:
    return mean(float(row[column]) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    cells = _rows(args.folders)
    print("| task | sims | method | RF C2ST | MLP C2ST | paper (RF) | train s | "
          "sample s | train ÷ npse | sample ÷ npse |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for budget in (1000, 10000):
        for task in TASKS:
            npse = cells.get((task, budget, "npse", "mlp"))
            for method in METHODS:
                _print_row(cells, task, budget, method, npse)


def _print_row(cells, task, budget, method, npse) -> None:  # noqa: ANN001
    by_classifier = {c: cells.get((task, budget, method, c)) for c in ("rf", "mlp")}
    timed = by_classifier["mlp"] or by_classifier["rf"]
    if timed is None:
        return
    scores = [
        f"{_mean(rows, 'c2st'):.3f}" if rows else "–" for rows in by_classifier.values()
    ]
    train, sample = _mean(timed, "train_time_s"), _mean(timed, "sample_time_s")
    ratios = ["–", "–"]
    if npse:
        ratios = [
            f"{train / _mean(npse, 'train_time_s'):.2f}",
            f"{sample / _mean(npse, 'sample_time_s'):.2f}",
        ]
    paper = f"{PAPER[(task, budget)]:.3f}" if method.startswith("simformer") else ""
    print(f"| {task} | {budget} | {method} | {' | '.join(scores)} | {paper} | "
          f"{train:.1f} | {sample:.2f} | {' | '.join(ratios)} |")  # fmt: skip


if __name__ == "__main__":
    main()
