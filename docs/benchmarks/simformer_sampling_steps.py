"""Simformer sampling cost vs. accuracy: reverse-SDE and probability-flow ODE steps.

Trains the benchmark's `simformer` method once on two_moons (1 000 simulations, the
runner's data seed) and scores posterior samples drawn with different samplers and
step counts by C2ST (MLP, as the runner) on observations 1-2.

    cd docs/benchmarks
    python simformer_sampling_steps.py > simformer_sampling_steps.md
"""

import time

import torch
from sbi.utils.metrics import c2st

from sbi_allinone.benchmarks import Cell, cell_simulations, get_method, get_task

TASK, BUDGET, NUM_SAMPLES, OBSERVATIONS = "two_moons", 1000, 10_000, (1, 2)
SAMPLERS = [
    ("sde", 20),
    ("sde", 50),
    ("sde", 100),
    ("sde", 500),
    ("ode", 25),
    ("ode", 50),
]


def main() -> None:
    task = get_task(TASK)
    theta, x = cell_simulations(Cell(TASK, "simformer", BUDGET, 1), task)
    torch.manual_seed(1)
    posterior = get_method("simformer").fit(theta, x, task.prior).posterior
    print(f"{TASK}, {BUDGET} simulations, {NUM_SAMPLES} samples per observation\n")
    print("| sampler | steps | C2ST per observation | mean | seconds per observation |")
    print("|---|---|---|---|---|")
    for sampler, steps in SAMPLERS:
        posterior.sample_with, posterior.steps = sampler, steps
        scores, seconds = [], []
        for observation in OBSERVATIONS:
            torch.manual_seed(observation)
            start = time.perf_counter()
            samples = posterior.sample(
                (NUM_SAMPLES,), x=task.get_observation(observation)
            )
            seconds.append(time.perf_counter() - start)
            reference = task.get_reference_posterior_samples(observation)
            scores.append(float(c2st(reference, samples, seed=1, classifier="mlp")))
        per_obs = ", ".join(f"{s:.3f}" for s in scores)
        print(
            f"| {sampler} | {steps} | {per_obs} | {sum(scores) / len(scores):.3f} "
            f"| {sum(seconds) / len(seconds):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
