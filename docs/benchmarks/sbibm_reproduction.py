"""``npe_sbibm`` under sbibm's own protocol: one training per observation.

sbibm ran each algorithm once per observation, on fresh simulations, so its ten
published numbers per (task, budget) are ten independent trainings. The runner trains
once per cell and evaluates that one network on all ten observations, so its mean
over observations carries one training's luck, not ten. Here observation ``k`` is
evaluated by a cell of seed ``k`` (its own simulations and initialization), which is
sbibm's protocol, with the runner's ``run_cell``, so the rows are ordinary results
rows and ``sbi-allinone report --published`` compares them with the published NPE:

    cd docs/benchmarks
    python sbibm_reproduction.py ../../results/sbibm-protocol 1000 10000
    sbi-allinone report ../../results/sbibm-protocol --published NPE

Finished (task, budget, observation) rows are kept: a rerun resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sbi_allinone.benchmarks import Cell, RunSettings, read_results, run_cell
from sbi_allinone.benchmarks.runner import append_results

TASKS = (
    "two_moons",
    "gaussian_linear",
    "slcp",
    "gaussian_mixture",
    "bernoulli_glm",
    "sir",
)
OBSERVATIONS = range(1, 11)


def main(out: Path, budgets: list[int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    done = {
        (row["task"], row["budget"], row["observation"])
        for row in read_results(out)
        if row["seed"] == row["observation"] and row["classifier"] == "mlp"
    }
    for budget in budgets:
        for task in TASKS:
            for observation in OBSERVATIONS:
                if (task, budget, observation) in done:
                    continue
                cell = Cell(task, "npe_sbibm", budget, seed=observation)
                settings = RunSettings(observations=(observation,), threads=1)
                rows = run_cell(cell, settings)
                append_results(out, rows)
                print(task, budget, observation, rows[0]["c2st"], flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(b) for b in sys.argv[2:]])
