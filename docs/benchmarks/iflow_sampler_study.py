"""Inflationary flow: C2ST against sampling solver and network calls, and against the
training budget.

One ``InflationaryFlow`` per (task, budget, training steps), trained at the defaults
on the runner's simulations of the cell of seed 1 (``num_steps`` set where the
``--train-steps`` list says so: ``4000``, ``4000@500`` with a batch of 500, or
``default+hidden_features=32`` with options of ``InflationaryFlow``), then
sampled with each solver setting through sbi's ``DirectPosterior`` (10 000 samples
per observation) and scored with the runner's torch MLP C2ST. Rows are appended to
``--out``; finished trainings are skipped.

    python docs/benchmarks/iflow_sampler_study.py --tasks two_moons,gaussian_mixture \
        --budgets 1000 --train-steps 3000 \
        --out docs/benchmarks/2026-12-02-iflow-sampler/results.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks.c2st import c2st_batch
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.inflationary import sampling

#: (solver, steps): Heun steps cost two network calls each, multistep steps one.
SAMPLERS = "heun:32,heun:16,multistep:16,multistep:24,multistep:32,multistep:48"
FIELDS = "task budget train_steps train_s solver steps observation c2st sample_s"


def score(posterior, estimator, task, observations, samplers):
    """``[(solver, steps, observation, c2st, seconds per 10 000 samples)]``."""
    rows, pairs = [], []
    for solver, steps in samplers:
        estimator.sample_solver, estimator.sample_steps = solver, steps
        for observation in observations:
            x_o = task.get_observation(observation)
            torch.manual_seed(observation)
            start = time.perf_counter()
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            seconds = time.perf_counter() - start
            pairs.append((task.get_reference_posterior_samples(observation), samples))
            rows.append((solver, steps, observation, seconds))
    scores = c2st_batch(pairs)
    return [(s, n, o, c, t) for (s, n, o, t), c in zip(rows, scores, strict=True)]


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".e") else int(text)


def run(task_name, budget, spec, observations, samplers, out):
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "iflow", budget, 1), task)
    torch.manual_seed(1)
    train_steps, *flow_options = spec.split("+")
    flow = {k: _number(v) for k, v in (o.split("=") for o in flow_options)}
    inference = InflationaryFlow(task.prior, show_progress_bars=False, **flow)
    start = time.perf_counter()
    steps, _, batch = train_steps.replace("default", "").partition("@")
    options = {"training_batch_size": int(batch)} if batch else {}
    inference.append_simulations(theta, x).train(
        num_steps=int(steps) if steps else None, **options
    )
    trained = time.perf_counter() - start
    posterior = inference.build_posterior()
    estimator = posterior.posterior_estimator
    results = score(posterior, estimator, task, observations, samplers)
    with out.open("a", newline="") as file:
        writer = csv.writer(file)
        for solver, steps, observation, c2st, seconds in results:
            writer.writerow(
                [task_name, budget, spec, round(trained, 1),
                 solver, steps, observation, round(c2st, 4), round(seconds, 3)]
            )  # fmt: skip
    for solver, steps in samplers:
        mine = [r for r in results if r[:2] == (solver, steps)]
        mean = sum(r[3] for r in mine) / len(mine)
        seconds = sum(r[4] for r in mine) / len(mine)
        print(f"{task_name} {budget} {spec} {trained:.0f}s {solver} {steps}: "
              f"{mean:.3f} ({seconds:.2f} s)")  # fmt: skip


def done(out: Path) -> set[tuple[str, str, str]]:
    with out.open() as file:
        rows = csv.DictReader(file)
        return {(r["task"], r["budget"], r["train_steps"]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="two_moons")
    parser.add_argument("--budgets", default="1000")
    parser.add_argument("--train-steps", default="default")
    parser.add_argument("--observations", default="1,2,3")
    parser.add_argument("--samplers", default=SAMPLERS, help="solver:steps,...")
    parser.add_argument(
        "--first-step-to", type=float, help="sampling.FIRST_STEP_TO for this run"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sampling.FIRST_STEP_TO = args.first_step_to
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        args.out.write_text(",".join(FIELDS.split()) + "\n")
    observations = [int(o) for o in args.observations.split(",")]
    pairs = (pair.split(":") for pair in args.samplers.split(","))
    samplers = [(solver, int(steps)) for solver, steps in pairs]
    finished = done(args.out)
    for budget in args.budgets.split(","):
        for task_name in args.tasks.split(","):
            for steps in args.train_steps.split(","):
                if (task_name, budget, steps) in finished:
                    continue
                run(task_name, int(budget), steps, observations, samplers, args.out)


if __name__ == "__main__":
    main()
