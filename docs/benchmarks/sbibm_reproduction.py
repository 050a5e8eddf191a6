"""``npe_sbibm`` under sbibm's own protocol: one training per observation.

sbibm ran each algorithm once per observation, on fresh simulations, so its ten
published numbers per (task, budget) are ten independent trainings. The runner trains
once per cell and evaluates that one network on all ten observations, so its mean
over observations carries one training's luck, not ten. Here observation ``k`` is
evaluated by a cell of seed ``k`` (its own simulations and initialization), which is
sbibm's protocol, with the runner's ``run_cell``, so the rows are ordinary results
rows and ``sbi-allinone report --published`` compares them with the published NPE:

    cd docs/benchmarks
    python sbibm_reproduction.py ../../results/sbibm-protocol --budgets 1000 10000
    # sbibm's own C2ST (slow in 10 dimensions) on some cells:
    python sbibm_reproduction.py ../../results/sbibm-protocol --budgets 1000 \\
        --tasks gaussian_linear --observations 1 2 3 --classifiers mlp_sbibm
    sbi-allinone report ../../results/sbibm-protocol --published NPE

Training runs on one thread, so a cell trains to the same network each time; a
classifier added later re-trains it rather than storing samples. Finished (task,
budget, observation, classifier) rows are kept: a rerun resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sbi_allinone.benchmarks import Cell, RunSettings, read_results, run_cell
from sbi_allinone.benchmarks.results import append_results

TASKS = (
    "two_moons",
    "gaussian_linear",
    "slcp",
    "gaussian_mixture",
    "bernoulli_glm",
    "sir",
)


def main(
    out: Path,
    budgets: list[int],
    tasks: list[str],
    observations: list[int],
    classifiers: list[str],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    done = {
        (row["task"], row["budget"], row["observation"], row["classifier"])
        for row in read_results(out)
        if row["seed"] == row["observation"]
    }
    for budget in budgets:
        for task in tasks:
            for observation in observations:
                missing = [
                    c for c in classifiers if (task, budget, observation, c) not in done
                ]
                if not missing:
                    continue
                cell = Cell(task, "npe_sbibm", budget, seed=observation)
                settings = RunSettings(
                    observations=(observation,),
                    threads=1,
                    classifier=",".join(missing),
                )
                rows = run_cell(cell, settings)
                append_results(out, rows)
                for row in rows:
                    print(
                        task,
                        budget,
                        observation,
                        row["classifier"],
                        row["c2st"],
                        flush=True,
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--observations", type=int, nargs="+", default=range(1, 11))
    parser.add_argument("--classifiers", nargs="+", default=["mlp"])
    args = parser.parse_args()
    main(args.out, args.budgets, args.tasks, list(args.observations), args.classifiers)
