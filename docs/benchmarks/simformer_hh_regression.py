r"""Is the energy's dependence on θ inside the posterior learnable from the simulations?

Companion of ``simformer_hh_oracle.py``: there the Simformer's energy, sampled given θ
and the features, was uncorrelated with the simulated energy of posterior samples. Here
a plain regression network (an MLP from the 7 parameters to log-energy, trained with
Adam on the same 20 000 simulations for ``--epochs`` epochs) predicts the energy of
the Simformer's posterior samples; its correlation with their simulated energy, and
the rate at which samples it puts below the threshold simulate below it, say what a
model of the joint could reach with these simulations. Run (one thread)::

    python docs/benchmarks/simformer_hh_regression.py --model results/hh_simformer.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import simformer_hh as hh  # noqa: E402
from simformer_hh_oracle import base_parser, below, correlation, rate  # noqa: E402


def arguments() -> argparse.Namespace:
    parser = base_parser()
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    args.num_steps, args.log_energy = None, False
    return args


def fit_log_regression(theta: torch.Tensor, energy: torch.Tensor, epochs: int):
    """An MLP ``theta (n, 7) -> log energy (n,)``, on z-scored inputs, differentiable
    in ``theta`` (its weights frozen after training)."""
    mean, std = theta.mean(0), theta.std(0)
    target = energy.clamp_min(1.0).log()
    net = nn.Sequential(
        nn.Linear(theta.shape[1], 256), nn.SiLU(),
        nn.Linear(256, 256), nn.SiLU(),
        nn.Linear(256, 256), nn.SiLU(),
        nn.Linear(256, 1),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    inputs = (theta - mean) / std
    for _ in range(epochs):
        for batch in torch.randperm(len(theta)).split(256):
            loss = (net(inputs[batch]).squeeze(-1) - target[batch]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    net.requires_grad_(False)
    return lambda t: net((t - mean) / std).squeeze(-1)


def simformer_and_regression(args: argparse.Namespace):
    """The Simformer (``hh.train``), the prior-predictive sd of x, and
    :func:`fit_log_regression` on the same simulations (seeded by ``args.seed``)."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    simformer, sd, _ = hh.train(args)
    theta, x = hh.simulate_task(
        args.simulations, generator=torch.Generator().manual_seed(args.seed)
    )
    valid = x.isfinite().all(dim=1)
    start = time.perf_counter()
    log_energy = fit_log_regression(theta[valid], x[valid, -1], args.epochs)
    print(f"regression trained in {time.perf_counter() - start:.0f} s")
    return simformer, sd, log_energy


def main() -> None:
    args = arguments()
    simformer, _, log_energy = simformer_and_regression(args)
    print(
        "| obs (thr) | corr(predicted E, simulated E) | simulated ≤ thr given "
        "predicted ≤ thr | simulated ≤ thr (all) |"
    )
    print("|---|---|---|---|")
    for index, theta_o in enumerate(hh.observations(args)):
        _, _, x_o = hh.simulate(theta_o[None], seed=args.seed + 100 + index)
        features = x_o[:, : len(hh.FEATURE_NAMES)]
        free = simformer.build_conditional(hh.features_mask())
        samples = free.sample((args.samples,), x=features, show_progress_bars=False)
        threshold = float(samples[:, -1].quantile(args.quantile))
        simulated = hh.simulate(samples[:, : hh.P], seed=args.seed + 7)[2][:, -1]
        predicted = log_energy(samples[:, : hh.P]).exp()
        everyone = torch.ones(len(samples), dtype=torch.bool)
        skill = correlation(predicted, simulated)
        print(
            f"| {index + 1} ({threshold:.0f}) | {skill:.2f} "
            f"| {rate(below(simulated, threshold), below(predicted, threshold))} "
            f"| {rate(below(simulated, threshold), everyone)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
