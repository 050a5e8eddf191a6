"""Issue 23's table: the inflationary flow against its bars, from one runner folder.

Reads ``iflow`` and ``npe`` rows (MLP C2ST, observations 1-10) from the folder, the
2026-11-30 record's ``iflow`` rows (``2026-11-30-iflow-resnet/posterior.csv``) and
``npe_sbibm`` and ``npse`` from the issue-17 grid (same simulations: C2ST comparable,
seconds not). Prints the markdown table and which bars each cell misses:

    python docs/benchmarks/issue23_table.py docs/benchmarks/2026-12-03-issue23c

Bold marks a cell worse than its accuracy bar (the record, or npe where there is
none) or over a time bar (training 3x, sampling 10x npe's, same run).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path
from statistics import mean

HERE = Path(__file__).parent
RECORD = HERE / "2026-11-30-iflow-resnet" / "posterior.csv"
GRID = HERE / "2026-12-02-issue17-grid" / "results.csv"
TASKS = (
    "two_moons", "gaussian_linear", "slcp", "gaussian_mixture", "sir",
    "gaussian_linear_uniform",
)  # fmt: skip
BUDGETS = (1000, 10000)
MAX_TRAIN_RATIO, MAX_SAMPLE_RATIO = 3.0, 10.0


def _cells(path: Path, methods: tuple[str, ...]) -> dict[tuple, dict[str, float]]:
    """Mean C2ST and times per (task, budget, method), MLP rows only."""
    rows: dict[tuple, list[dict]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["method"] in methods and row["classifier"] == "mlp":
                rows[(row["task"], int(row["budget"]), row["method"])].append(row)
    return {
        key: {
            "c2st": mean(float(r["c2st"]) for r in found),
            "train": float(found[0]["train_time_s"]),
            "sample": mean(float(r["sample_time_s"]) for r in found),
        }
        for key, found in rows.items()
    }


def _fmt(value: float | None, digits: int = 3, bold: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return f"**{text}**" if bold else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    run = _cells(args.folder / "results.csv", ("iflow", "npe"))
    record = _cells(RECORD, ("iflow",))
    grid = _cells(GRID, ("npe_sbibm", "npse"))
    print(
        "| task | sims | iflow | record | npe | npe_sbibm | npse | iflow train s "
        "| npe train s | train ÷ npe | iflow sample s | npe sample s | sample ÷ npe |"
    )
    print("|---" * 13 + "|")
    misses = []
    for budget in BUDGETS:
        for task in TASKS:
            flow, npe = run.get((task, budget, "iflow")), run.get((task, budget, "npe"))
            if flow is None or npe is None:
                continue
            rec = record.get((task, budget, "iflow"))
            bar = rec["c2st"] if rec else npe["c2st"]
            train_ratio = flow["train"] / npe["train"]
            sample_ratio = flow["sample"] / npe["sample"]
            worse = round(flow["c2st"], 3) > round(bar, 3)
            slow = train_ratio > MAX_TRAIN_RATIO
            slow_sampling = sample_ratio > MAX_SAMPLE_RATIO
            if worse or slow or slow_sampling:
                misses.append(f"{task} {budget}")
            cells = [
                task, str(budget), _fmt(flow["c2st"], bold=worse),
                _fmt(rec and rec["c2st"]), _fmt(npe["c2st"]),
                _fmt(grid.get((task, budget, "npe_sbibm"), {}).get("c2st")),
                _fmt(grid.get((task, budget, "npse"), {}).get("c2st")),
                _fmt(flow["train"], 1), _fmt(npe["train"], 1),
                _fmt(train_ratio, 2, bold=slow), _fmt(flow["sample"], 2),
                _fmt(npe["sample"], 3), _fmt(sample_ratio, 1, bold=slow_sampling),
            ]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
    print(f"\nCells missing a bar: {', '.join(misses) or 'none'}")


if __name__ == "__main__":
    main()
