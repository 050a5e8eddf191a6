"""Simformer sampling cost against accuracy: Heun (ODE) and stochastic steps.

Loads posteriors saved by ``simformer_training_steps.py --save DIR`` and scores
10 000 samples per observation, drawn with each sampler and step count, by the
runner's torch MLP C2ST against sbibm's reference. The 500-step ODE is the
reference sampler (the first of ``--samplers``): the default is the smallest step
count within 0.01 of it. ``heun`` and ``multistep`` solve the probability-flow ODE;
``sde`` is EDM's stochastic sampler.

    cd docs/benchmarks
    python simformer_sampling_steps.py ../../results/models/*.pt \\
        --observations 1-3 > simformer_sampling_steps.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sbi_allinone.benchmarks import get_task
from sbi_allinone.benchmarks.c2st import c2st_batch

SAMPLERS = (("heun", 500), ("heun", 8), ("heun", 12), ("heun", 16), ("heun", 24),
            ("heun", 32), ("multistep", 8), ("multistep", 12), ("multistep", 16),
            ("multistep", 24), ("multistep", 32), ("multistep", 48), ("sde", 32),
            ("sde", 64), ("sde", 128))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--observations", default="1-3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samplers", default=None, help="e.g. heun:32,multistep:16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    first, last = (int(o) for o in args.observations.split("-"))
    observations = range(first, last + 1)
    samplers = SAMPLERS
    if args.samplers:
        pairs = (item.split(":") for item in args.samplers.split(","))
        samplers = tuple((name, int(steps)) for name, steps in pairs)
    print("# Simformer: C2ST against sampler steps\n")
    print(f"Observations {args.observations}, 10 000 samples each, torch MLP C2ST; "
          "seconds per observation (1 thread).\n")  # fmt: skip
    print("| model | sampler | steps | network calls | C2ST (mean) | C2ST − first "
          "| seconds |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for path in args.models:
        posterior = torch.load(path, weights_only=False)
        task = get_task(path.stem.split("_1000")[0].split("_10000")[0])
        references = [task.get_reference_posterior_samples(o) for o in observations]
        baseline = None
        for sampler, steps in samplers:
            posterior.sample_with = "sde" if sampler == "sde" else "ode"
            posterior.ode_solver, posterior.steps = sampler, steps
            pairs, seconds = [], []
            for observation, reference in zip(observations, references, strict=True):
                torch.manual_seed(observation)
                start = time.perf_counter()
                samples = posterior.sample(
                    (10_000,), x=task.get_observation(observation)
                )
                seconds.append(time.perf_counter() - start)
                pairs.append((reference, samples))
            score = sum(c2st_batch(pairs)) / len(pairs)
            baseline = score if baseline is None else baseline
            calls = steps if sampler == "multistep" else 2 * steps - 1
            print(f"| {path.stem} | {sampler} | {steps} | {calls} | "
                  f"{score:.3f} | {score - baseline:+.3f} | "
                  f"{sum(seconds) / len(seconds):.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
