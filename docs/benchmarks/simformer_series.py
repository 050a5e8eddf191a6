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
from torch.distributions import Independent, Normal

from sbi_allinone import Simformer
from sbi_allinone.simformer import Variables

SPEC = Variables(theta={"a": 1}, x={"y": "series"})


def simulate(num: int, max_points: int = 6) -> tuple:
    a = torch.randn(num, 1)
    counts = torch.randint(1, max_points + 1, (num,))
    times = (torch.rand(num, max_points) * 2).sort(1).values
    padding = torch.arange(max_points) >= counts[:, None]
    times[padding] = float("nan")
    y = a * times + 0.1 * torch.randn(num, max_points)
    return a, y, times


def exact(times: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    precision = 1 + (times**2).sum() / 0.01
    return float((times * y).sum() / 0.01 / precision), float(precision.rsqrt())


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
        a, y, times = simulate(2000)
        prior = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
        inference = Simformer(
            prior, variables=SPEC, show_progress_bars=False,
            net_kwargs={"num_layers": 2},
        )  # fmt: skip
        inference.append_simulations(
            {"a": a}, {"y": y}, metadata={"time": {"y": times}}
        )
        start = time.perf_counter()
        inference.train(
            num_steps=steps, training_batch_size=256, stop_after_epochs=10**4
        )
        seconds = time.perf_counter() - start
        posterior = inference.build_posterior()
        cells = []
        for num in (1, 6, 10):
            t = torch.linspace(0.3, 1.9, num)[None]
            samples = posterior.sample(
                (2000,), x={"y": 1.5 * t}, metadata={"time": {"y": t}}
            )
            mean, std = exact(t, 1.5 * t)
            cells.append(
                f"{samples.mean():.3f} / {samples.std():.3f} ({mean:.3f} / {std:.3f})"
            )
        print(f"| {steps} | {seconds:.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
