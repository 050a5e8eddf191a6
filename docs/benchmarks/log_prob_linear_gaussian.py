"""``log_prob`` of the diffusion methods against a known posterior density.

theta ~ N(0, I_D), x = theta + 0.5 eps: the posterior is N(x / 1.25, 0.2 I). Trains
the Simformer and the inflationary flow at their defaults on the same simulations,
evaluates ``log_prob`` at 500 exact posterior draws for each of three observations
and reports the correlation with the true log density and the mean absolute error
in nats.

    cd docs/benchmarks
    python log_prob_linear_gaussian.py > log_prob_linear_gaussian.md
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.distributions import MultivariateNormal

from sbi_allinone import InflationaryFlow, Simformer
from sbi_allinone.tracking import NullTracker


def _posterior(x_o: torch.Tensor) -> MultivariateNormal:
    dim = x_o.numel()
    return MultivariateNormal(x_o.flatten() / 1.25, 0.2 * torch.eye(dim))


def _train(method: str, prior, theta, x):  # noqa: ANN001, ANN202
    torch.manual_seed(1)
    if method == "simformer":
        trainer = Simformer(prior, tracker=NullTracker(), show_progress_bars=False)
        trainer.append_simulations(theta, x).train()
        return trainer.build_posterior()
    trainer = InflationaryFlow(prior, tracker=NullTracker(), show_progress_bars=False)
    trainer.append_simulations(theta, x).train()
    return trainer.build_posterior()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--methods", default="simformer,iflow")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    prior = MultivariateNormal(torch.zeros(args.dim), torch.eye(args.dim))
    theta = prior.sample((args.simulations,))
    x = theta + 0.5 * torch.randn_like(theta)
    observations = torch.tensor([[0.0] * args.dim, [1.0] * args.dim, [-2.0] * args.dim])
    print(f"# log_prob against the exact posterior: linear Gaussian, D = {args.dim}, "
          f"{args.simulations} simulations\n")  # fmt: skip
    print("| method | x_o | correlation | mean abs error (nats) | mean error "
          "| train s | log_prob s (500) |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for method in args.methods.split(","):
        start = time.perf_counter()
        posterior = _train(method, prior, theta, x)
        train_s = time.perf_counter() - start
        for x_o in observations:
            exact = _posterior(x_o)
            torch.manual_seed(2)
            points = exact.sample((500,))
            start = time.perf_counter()
            got = posterior.log_prob(points, x=x_o.unsqueeze(0))
            seconds = time.perf_counter() - start
            true = exact.log_prob(points)
            corr = torch.corrcoef(torch.stack([got, true]))[0, 1].item()
            error = got - true
            print(f"| {method} | {x_o[0].item():+.0f} | {corr:.3f} | "
                  f"{error.abs().mean():.3f} | {error.mean():+.3f} | {train_s:.0f} | "
                  f"{seconds:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
