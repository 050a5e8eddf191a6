"""Why are the Simformer's series posteriors too wide? Four variants on the linear
series toy (a ~ N(0, 1), y(t) = a t + 0.1 eps; observation: 6 points, y = 1.5 t),
2 000 simulations, a 2-layer network, 1 500 steps of 256. Record:
``simformer_series_width.md``.

Run: ``python docs/benchmarks/simformer_series_width.py [--metadata-scale 4]``
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch.distributions import Independent, Normal

import sbi_allinone.simformer.network as network
from sbi_allinone import Simformer
from sbi_allinone.benchmarks.series_toy import (
    LINEAR_SERIES,
    linear_series_posterior,
    simulate_linear_series,
)
from sbi_allinone.diffusion.embedding import FourierEmbedding
from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.simformer.condition import MASK_KINDS
from sbi_allinone.tracking import NullTracker

PRIOR = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
TIMES_O = torch.linspace(0.3, 1.9, 6)[None]
Y_O = 1.5 * TIMES_O
OPTIONS = {
    "show_progress_bars": False,
    "tracker": NullTracker(),
    "net_kwargs": {"num_layers": 2},
}
SCHEDULE = {"training_batch_size": 256, "stop_after_epochs": 10**4}


def train_series(
    num_steps: int, sde: str | LogNormalNoise = "edm", mask_weights: dict | None = None
) -> Simformer:
    torch.manual_seed(0)
    a, y, times = simulate_linear_series(2000)
    inference = Simformer(PRIOR, sde=sde, variables=LINEAR_SERIES, **OPTIONS)
    inference.append_simulations({"a": a}, {"y": y}, metadata={"time": {"y": times}})
    inference.train(num_steps=num_steps, mask_weights=mask_weights, **SCHEDULE)
    return inference


def train_fixed_vector(num_steps: int) -> Simformer:
    """The same data at the observation's 6 fixed times, one token per value."""
    torch.manual_seed(0)
    a = torch.randn(2000, 1)
    x = a * TIMES_O + 0.1 * torch.randn(2000, 6)
    inference = Simformer(PRIOR, **OPTIONS)
    inference.append_simulations(a, x).train(num_steps=num_steps, **SCHEDULE)
    return inference


def moments(samples: torch.Tensor) -> str:
    return f"{float(samples.mean()):.3f} / {float(samples.std()):.3f}"


def series_row(name: str, inference: Simformer, steps: int | None = None) -> None:
    posterior = inference.build_posterior(steps=steps)
    samples = posterior.sample((2000,), x={"y": Y_O}, metadata={"time": {"y": TIMES_O}})
    print(f"| {name} | {moments(samples)} |", flush=True)


def use_metadata_scale(scale: float) -> None:
    """Replaces the metadata embedding's Fourier scale (1) by ``scale``."""

    class Scaled(FourierEmbedding):
        def __init__(self, n: int, kind: str = "geometric", s: float = 16.0) -> None:
            super().__init__(n, kind, scale if s == 1.0 else s)

    network.FourierEmbedding = Scaled


def posterior_weights(share: float) -> dict[str, float]:
    """``mask_weights`` that replace ``share`` of the paper's masks by posterior
    masks (on top of the fifth that is posterior already)."""
    if share >= 1.0:
        return {"posterior": 1.0}
    weights = dict.fromkeys(MASK_KINDS, 1.0)
    weights["posterior"] = (1.0 + 4.0 * share) / (1.0 - share)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-steps", type=int, default=1500)
    parser.add_argument("--metadata-scale", type=float, default=None)
    parser.add_argument("--posterior-share", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    mean, std = linear_series_posterior(TIMES_O, Y_O)
    print(f"| exact | {mean:.3f} / {std:.3f} |")
    if args.posterior_share is not None:
        weights = posterior_weights(args.posterior_share)
        weighted = train_series(args.num_steps, mask_weights=weights)
        series_row(f"series, {args.posterior_share:.0%} more posterior masks", weighted)
        return
    if args.metadata_scale is not None:
        use_metadata_scale(args.metadata_scale)
        scaled = train_series(args.num_steps)
        series_row(f"series, metadata scale {args.metadata_scale}", scaled)
        return
    series = train_series(args.num_steps)
    series_row("series (default)", series)
    series_row("series, 200 sampler steps", series, steps=200)
    low_noise = train_series(args.num_steps, LogNormalNoise(p_mean=-3.5, p_std=1.6))
    series_row("series, p_mean = -3.5", low_noise)
    fixed = train_fixed_vector(args.num_steps).build_posterior()
    print(f"| fixed vector | {moments(fixed.sample((2000,), x=Y_O))} |")


if __name__ == "__main__":
    main()
