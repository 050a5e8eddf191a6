"""Simformer accuracy against training compute: C2ST for several training lengths.

For each task and budget (the runner's simulations, data seed of seed 1), trains
``Simformer(prior).train(num_steps=S, training_batch_size=B)`` for every requested
``S`` (a fresh run each: the learning-rate decay depends on the length), draws
10 000 posterior samples per observation with the default sampler and scores them
with the runner's torch MLP C2ST. Rows are appended to ``--out`` as they finish;
rows already there are skipped, so a sweep resumes. ``--save DIR`` also stores each
trained posterior (for ``simformer_sampling_steps.py``).

    cd docs/benchmarks
    python simformer_training_steps.py --tasks two_moons --budgets 1000 \\
        --steps 1000,3000,10000 --observations 1-3 --out ../../results/steps.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from sbi_allinone import Simformer
from sbi_allinone.benchmarks import Cell, cell_simulations, get_task
from sbi_allinone.benchmarks.c2st import c2st_batch
from sbi_allinone.benchmarks.graphs import task_graph
from sbi_allinone.tracking import NullTracker

COLUMNS = (
    "task", "budget", "attention", "sde", "batch", "steps", "observation", "c2st",
    "train_s", "sample_s", "epochs",
)  # fmt: skip


def _observations(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(o) for o in text.split(",")]


def _done(out: Path) -> set[tuple]:
    if not out.exists():
        return set()
    with out.open() as f:
        return {
            (r["task"], r["budget"], r["attention"], r["sde"], r["batch"], r["steps"])
            for r in csv.DictReader(f)
        }


def run(  # noqa: PLR0913
    task_name: str,
    budget: int,
    attention: str,
    sde: str,
    batch: int,
    steps: int,
    observations: list[int],
    save: Path | None,
) -> list[dict]:
    """Train once and score every observation; one row per observation."""
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "simformer", budget, 1), task)
    torch.manual_seed(1)
    graph = None if attention == "dense" else task_graph(task_name)
    trainer = Simformer(
        task.prior, sde=sde, attention=attention, graph=graph,
        tracker=NullTracker(), show_progress_bars=False,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.append_simulations(theta, x).train(
        num_steps=steps, training_batch_size=batch
    )
    train_s = time.perf_counter() - start
    posterior = trainer.build_posterior()
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        name = f"{task_name}_{budget}_{attention}_{sde}_{batch}_{steps}.pt"
        torch.save(posterior, save / name)
    pairs, seconds = [], []
    for observation in observations:
        torch.manual_seed(observation)
        start = time.perf_counter()
        samples = posterior.sample((10_000,), x=task.get_observation(observation))
        seconds.append(time.perf_counter() - start)
        pairs.append((task.get_reference_posterior_samples(observation), samples))
    scores = c2st_batch(pairs)
    epochs = trainer.summary["epochs_trained"][-1]
    return [
        dict(task=task_name, budget=budget, attention=attention, sde=sde,
             batch=batch, steps=steps, observation=o, c2st=round(float(c), 4),
             train_s=round(train_s, 1), sample_s=round(s, 2), epochs=epochs)
        for o, c, s in zip(observations, scores, seconds, strict=True)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="two_moons")
    parser.add_argument("--budgets", default="1000")
    parser.add_argument("--steps", default="1000,3000,10000")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sde", default="edm")
    parser.add_argument("--attention", default="dense")
    parser.add_argument("--observations", default="1-3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    observations = _observations(args.observations)
    done = _done(args.out)
    for task in args.tasks.split(","):
        for budget in (int(b) for b in args.budgets.split(",")):
            for steps in (int(s) for s in args.steps.split(",")):
                for sde in args.sde.split(","):
                    key = (task, str(budget), args.attention, sde, str(args.batch),
                           str(steps))  # fmt: skip
                    if key in done:
                        continue
                    rows = run(task, budget, args.attention, sde, args.batch, steps,
                               observations, args.save)  # fmt: skip
                    new = not args.out.exists()
                    with args.out.open("a", newline="") as f:
                        writer = csv.DictWriter(f, COLUMNS)
                        if new:
                            writer.writeheader()
                        writer.writerows(rows)
                    mean = sum(r["c2st"] for r in rows) / len(rows)
                    print(f"{key}: C2ST {mean:.3f}, train {rows[0]['train_s']} s, "
                          f"sample {rows[0]['sample_s']} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
