"""Accuracy against training steps of a Simformer on series (any number of points,
at any times), on a toy with an exact posterior.

a ~ N(0, 1); y(t) = a t + 0.1 eps, observed at 1-6 random times in [0, 2] per
simulation (2 000 simulations). The posterior of a given points (t_i, y_i) is
Gaussian with precision 1 + sum t_i^2 / 0.01. Evaluated on observations of 1, 6 and
10 points (10: more than any simulation had), y_i = 1.5 t_i at evenly spaced times.

Run: ``python docs/benchmarks/simformer_series.py --steps 500,1500,3000``
"""

from __future__ import annotations

import argparse
import time

import torch

from sbi_allinone.benchmarks.series_toy import (
    linear_series_posterior,
    train_linear_series,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="500,1500,3000")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| steps | train s | " + " | ".join(
        f"{n} pts mean / std (exact)" for n in (1, 6, 10)
    ) + " |")  # fmt: skip
    print("|---|---|---|---|---|")
    for steps in map(int, args.steps.split(",")):
        torch.manual_seed(0)
        start = time.perf_counter()
        inference = train_linear_series(2000, steps)
        seconds = time.perf_counter() - start
        posterior = inference.build_posterior()
        cells = []
        for num in (1, 6, 10):
            t = torch.linspace(0.3, 1.9, num)[None]
            samples = posterior.sample(
                (2000,), x={"y": 1.5 * t}, metadata={"time": {"y": t}}
            )
            mean, std = linear_series_posterior(t, 1.5 * t)
            cells.append(
                f"{samples.mean():.3f} / {samples.std():.3f} ({mean:.3f} / {std:.3f})"
            )
        print(f"| {steps} | {seconds:.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
