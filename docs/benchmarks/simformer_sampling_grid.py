"""The Simformer's multistep sampler: EDM's rho-grid against the log grid (issue 17).

For each task, one Simformer at its defaults is trained on the runner's simulations
of the cell (budget, seed 1) and sampled with several samplers: the multistep solver
on EDM's grid (``edm``), on :func:`sbi_allinone.diffusion.ode.log_grid` with its
long first step to 5 (``log``) or without it (``loguniform``; ``loguniform3``: the
third-order solver), at several network calls (``--samplers``). Every sampler's
samples are scored by the runner's MLP C2ST against the task's reference posterior;
the reference sampler is ``edm:128``.
Rows are appended to ``OUT`` as they finish, and a rerun skips finished rows.

Usage::

    python docs/benchmarks/simformer_sampling_grid.py --tasks two_moons,slcp \
        --budget 1000 --observations 1-2 --out results/sampling-grid.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from sbi_allinone.benchmarks.c2st import c2st
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.methods import get_method
from sbi_allinone.benchmarks.results import append_csv
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.simformer import sampling

SAMPLERS = "edm:128,edm:32,log:32,log:24,log:20,log:16"
FIRST_STEP = {"edm": None, "log": 5.0, "loguniform": None, "loguniform3": None}
COLUMNS = ("task", "budget", "observation", "sampler", "calls", "c2st", "seconds")


def _done(path: Path) -> set[tuple[str, str, str]]:
    if not path.exists():
        return set()
    with path.open() as f:
        return {(r["task"], r["observation"], r["sampler"]) for r in csv.DictReader(f)}


def run_task(
    task_name: str, budget: int, observations: list[int], out: Path, samplers: str
) -> None:
    """Train one Simformer and score every sampler on ``observations``."""
    done = _done(out)
    todo = [
        (o, s) for o in observations for s in samplers.split(",")
        if (task_name, str(o), s) not in done
    ]  # fmt: skip
    if not todo:
        return
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "simformer", budget, 1), task)
    torch.manual_seed(1)
    started = time.perf_counter()
    posterior = get_method("simformer").fit(theta, x, task.prior, task=task_name)
    posterior = posterior.posterior
    print(f"{task_name}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    for observation, sampler in todo:
        grid, calls = sampler.split(":")
        sampling.MULTISTEP_GRID = "edm" if grid == "edm" else "log"
        sampling.FIRST_STEP_TO = FIRST_STEP[grid]
        sampling.MULTISTEP_ORDER = 3 if grid.endswith("3") else 2
        posterior.steps = int(calls)
        torch.manual_seed(observation)
        started = time.perf_counter()
        samples = posterior.sample(
            (10_000,), x=task.get_observation(observation), show_progress_bars=False
        )
        seconds = time.perf_counter() - started
        reference = task.get_reference_posterior_samples(observation)[:10_000]
        score = c2st(reference, samples)
        row = dict(
            task=task_name, budget=budget, observation=observation, sampler=sampler,
            calls=calls, c2st=f"{score:.4f}", seconds=f"{seconds:.1f}",
        )  # fmt: skip
        append_csv(out, COLUMNS, [row])
        print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="two_moons,slcp,gaussian_mixture")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--observations", default="1-2")
    parser.add_argument("--out", type=Path, default=Path("sampling-grid.csv"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samplers", default=SAMPLERS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    first, _, last = args.observations.partition("-")
    observations = list(range(int(first), int(last or first) + 1))
    for task_name in args.tasks.split(","):
        run_task(task_name, args.budget, observations, args.out, args.samplers)


if __name__ == "__main__":
    main()
