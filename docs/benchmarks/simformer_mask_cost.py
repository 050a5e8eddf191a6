"""Cost of the Simformer's attention masks in a training step, at 20 variables.

A nonlinear Markov chain graph (theta_i <- theta_{i-1}, x_i <- theta_i; 10 + 10
variables), the default network and the default batch for 20 variables (200
examples), condition masks drawn per example from the paper's mixture. Times one
optimizer step (forward, backward, Adam) with each attention mask, and the directed
mask's construction alone (the faithful inversion of every distinct condition mask
in the batch).

Run: ``python docs/benchmarks/simformer_mask_cost.py``
"""

from __future__ import annotations

import argparse
import time

import torch

from sbi_allinone.diffusion.noise import make_noise
from sbi_allinone.simformer.condition import sample_condition_masks
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.masks import (
    adjacency_from_parents,
    directed_mask,
    faithful_inversion,
)
from sbi_allinone.simformer.network import SimformerNet

NUM_THETA = 10
ATTENTIONS = ("dense", "undirected", "directed")


def markov_chain_graph() -> torch.Tensor:
    parents = {i: [i - 1] for i in range(1, NUM_THETA)}
    parents.update({NUM_THETA + i: [i] for i in range(NUM_THETA)})
    return adjacency_from_parents(parents, 2 * NUM_THETA)


def step_seconds(steps: int, batch: int) -> dict[str, float]:
    """Median seconds of one optimizer step with each attention mask; the three
    take turns, step by step, so that a shared machine's load hits them alike."""
    torch.manual_seed(0)
    n = 2 * NUM_THETA
    estimators = {
        attention: SimformerEstimator(
            SimformerNet(n),
            make_noise("edm"),
            NUM_THETA,
            torch.zeros(n),
            torch.ones(n),
            graph=markov_chain_graph(),
            attention=attention,
            ema_decay=None,
        )  # fmt: skip
        for attention in ATTENTIONS
    }
    optimizers = {
        name: torch.optim.Adam(estimator.net.parameters(), lr=1e-4)
        for name, estimator in estimators.items()
    }
    times: dict[str, list[float]] = {name: [] for name in ATTENTIONS}
    for _ in range(steps):
        values = torch.randn(batch, n)
        for name, estimator in estimators.items():
            start = time.perf_counter()
            masks = sample_condition_masks(batch, NUM_THETA, NUM_THETA)
            optimizers[name].zero_grad()
            estimator.loss(values, masks).mean().backward()
            optimizers[name].step()
            times[name].append(time.perf_counter() - start)
    return {name: float(torch.tensor(t[2:]).median()) for name, t in times.items()}


def one_by_one(graph: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The unbatched inversion, one distinct condition mask at a time."""
    unique, index = torch.unique(masks, dim=0, return_inverse=True)
    return torch.stack([faithful_inversion(graph, c) for c in unique])[index]


def mask_seconds(steps: int, batch: int, build=directed_mask) -> float:  # noqa: ANN001
    graph, times = markov_chain_graph(), []
    for _ in range(steps):
        masks = sample_condition_masks(batch, NUM_THETA, NUM_THETA)
        start = time.perf_counter()
        build(graph, masks)
        times.append(time.perf_counter() - start)
    return float(torch.tensor(times).median())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mask = mask_seconds(args.steps, args.batch)
    python = mask_seconds(args.steps, args.batch, one_by_one)
    seconds = step_seconds(args.steps, args.batch)
    dense = seconds["dense"]
    print(
        f"directed masks of one batch ({args.batch}): batched {1000 * mask:.1f} ms "
        f"({mask / dense:.1%} of a dense step), one by one {1000 * python:.0f} ms "
        f"({python / dense:.0%})"
    )
    print("| attention | ms per step | / dense |")
    print("|---|---|---|")
    for attention in ATTENTIONS:
        step = seconds[attention]
        print(f"| {attention} | {1000 * step:.0f} | {step / dense:.2f} |")


if __name__ == "__main__":
    main()
