"""Inflationary flow: C2ST against training compute, and against sampling steps.

One training run per (task, budget, configuration) on the runner's simulations of
the cell of seed 1, scored at checkpoints along the way: at each checkpoint the
weight-averaged denoiser draws 10 000 posterior samples per observation (sbi's
``DirectPosterior``, as in the runner) and the runner's torch MLP C2ST scores them.
At the last checkpoint the samples are drawn at several Heun step counts too.

The loop is sbi's NPE step without its epochs: Adam, gradient clipping at 5, the
estimator's loss (which moves the weight average), minibatches drawn without
replacement. Rows are appended to ``--out`` (a CSV); finished runs are skipped, so
the study resumes.

    python docs/benchmarks/iflow_training_cost.py --tasks two_moons --budgets 1000 \
        --configs b200,b1000 --out docs/benchmarks/2026-12-02-iflow-cost/curves.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sbi.inference.posteriors import DirectPosterior

from sbi_allinone.benchmarks.c2st import c2st_batch
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.inflationary import inflationary_flow_nn


@dataclass(frozen=True)
class Config:
    """A training configuration: batch, learning rate, and the checkpoints (in
    steps) at 1 000 and at 10 000 simulations."""

    batch: int
    learning_rate: float
    checkpoints: tuple[tuple[int, ...], tuple[int, ...]]
    unbounded: bool = True
    hidden_features: int = 128
    cosine: bool = False  # learning rate decays to 0 by the last checkpoint

    def steps(self, budget: int) -> tuple[int, ...]:
        return self.checkpoints[budget > 1000]


B200 = ((1000, 2000, 3000, 5000, 8000), (2000, 5000, 10_000, 20_000, 40_000))
B1000 = ((250, 500, 1000, 2000, 3000), (500, 1000, 2000, 4000, 8000))
CONFIGS = {
    "b200": Config(200, 1e-3, B200),
    "b200_bounded": Config(200, 1e-3, B200, unbounded=False),
    "b1000": Config(1000, 2e-3, B1000),
    "b1000_h64": Config(1000, 2e-3, B1000, hidden_features=64),
    "b200_cos": Config(200, 2e-3, ((3000,), (20_000,)), cosine=True),
    "b200_h64_cos": Config(
        200, 2e-3, ((3000,), (20_000,)), hidden_features=64, cosine=True
    ),
}
FIELDS = (
    "task budget config step examples train_s observation sample_steps c2st sample_s"
).split()


def build(theta, x, prior, config: Config):
    """The estimator as ``InflationaryFlow(prior)`` would build it."""
    unbounded = {"z_score_theta": "transform_to_unconstrained", "x_dist": prior}
    builder = inflationary_flow_nn(
        hidden_features=config.hidden_features,
        **(unbounded if config.unbounded else {}),
    )
    return builder(theta, x)


def score(estimator, task, observations, sample_steps):
    """``[(observation, steps, c2st, seconds per 10 000 samples)]``."""
    estimator.eval()
    posterior = DirectPosterior(estimator, task.prior)
    rows, pairs = [], []
    for steps in sample_steps:
        estimator.sample_steps = steps
        for observation in observations:
            x_o = task.get_observation(observation)
            start = time.perf_counter()
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            seconds = time.perf_counter() - start
            reference = task.get_reference_posterior_samples(observation)
            pairs.append((reference, samples))
            rows.append((observation, steps, seconds))
    scores = c2st_batch(pairs)
    estimator.sample_steps, _ = 16, estimator.train()
    return [(o, s, c, t) for (o, s, t), c in zip(rows, scores, strict=True)]


def run(task_name, budget, name, observations, out: Path):
    config = CONFIGS[name]
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "iflow", budget, 1), task)
    torch.manual_seed(1)
    estimator = build(theta, x, task.prior, config)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=config.learning_rate)
    total = config.steps(budget)[-1]
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            0.5 * (1 + math.cos(math.pi * step / total)) if config.cosine else 1
        ),
    )
    estimator.train()
    order, position, trained, step = torch.randperm(budget), 0, 0.0, 0
    for checkpoint in config.steps(budget):
        start = time.perf_counter()
        while step < checkpoint:
            if position + config.batch > budget:
                order, position = torch.randperm(budget), 0
            rows = order[position : position + config.batch]
            position += config.batch
            optimizer.zero_grad()
            estimator.loss(theta[rows], x[rows]).mean().backward()
            torch.nn.utils.clip_grad_norm_(estimator.parameters(), 5.0)
            optimizer.step()
            decay.step()
            step += 1
        trained += time.perf_counter() - start
        last = checkpoint == config.steps(budget)[-1]
        steps = (8, 16, 32, 64) if last else (16,)
        results = score(estimator, task, observations, steps)
        with out.open("a", newline="") as file:
            writer = csv.writer(file)
            for observation, sample_steps, c2st, seconds in results:
                writer.writerow(
                    [task_name, budget, name, step, step * config.batch,
                     round(trained, 2), observation, sample_steps, round(c2st, 4),
                     round(seconds, 3)]
                )  # fmt: skip
        mean = sum(r[2] for r in results if r[1] == 16) / len(observations)
        print(f"{task_name} {budget} {name} step {step}: {trained:.0f} s, {mean:.3f}")


def done(out: Path) -> set[tuple[str, int, str]]:
    if not out.exists():
        return set()
    with out.open() as file:
        rows = list(csv.DictReader(file))
    finished = {}
    for row in rows:
        key = (row["task"], int(row["budget"]), row["config"])
        finished[key] = max(finished.get(key, 0), int(row["step"]))
    return {k for k, step in finished.items() if step == CONFIGS[k[2]].steps(k[1])[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="two_moons")
    parser.add_argument("--budgets", default="1000")
    parser.add_argument("--configs", default="b200,b1000")
    parser.add_argument("--observations", default="1,2,3")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        args.out.write_text(",".join(FIELDS) + "\n")
    observations = [int(o) for o in args.observations.split(",")]
    finished = done(args.out)
    for budget in (int(b) for b in args.budgets.split(",")):
        for task_name in args.tasks.split(","):
            for name in args.configs.split(","):
                if (task_name, budget, name) not in finished:
                    run(task_name, budget, name, observations, args.out)


if __name__ == "__main__":
    main()
