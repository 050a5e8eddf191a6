"""The Simformer on Lotka-Volterra observed at irregular times, in varying numbers.

Trains one Simformer on simulations whose prey and predator series each have 1-20
points at random times (``sbi_allinone.benchmarks.unstructured``), then scores its
posterior by C2ST against the MCMC reference of each stored observation (3, 6, 12
and 20 points per series). The Simformer learns log theta and log x: the prior is
log-normal and the noise multiplicative, so both are Gaussian-like in log space.

Run: ``python docs/benchmarks/simformer_lv_unstructured.py --simulations 10000``
"""

from __future__ import annotations

import argparse
import time

import torch
from simformer_series_width import posterior_weights

from sbi_allinone import Simformer
from sbi_allinone.benchmarks.c2st import c2st
from sbi_allinone.benchmarks.ode_models import lotka_volterra_prior
from sbi_allinone.benchmarks.unstructured import (
    REFERENCE_POINTS,
    lv_unstructured_observation,
    lv_unstructured_predictive,
    simulate_lv_unstructured,
)
from sbi_allinone.simformer import Variables

SPEC = Variables(
    theta={"log_alpha": 1, "log_beta": 1, "log_gamma": 1, "log_delta": 1},
    x={"log_prey": "series", "log_predator": "series"},
)


def as_series(x: torch.Tensor, times: torch.Tensor) -> tuple[dict, dict]:
    """The data contract ``(N, 2 M)`` as the Simformer's dicts (log values)."""
    half = x.shape[1] // 2
    values = {"log_prey": x[:, :half].log(), "log_predator": x[:, half:].log()}
    metadata = {"log_prey": times[:, :half], "log_predator": times[:, half:]}
    return values, {"time": metadata}


def as_theta(theta: torch.Tensor) -> dict:
    return dict(zip(SPEC.theta, theta.log().split(1, dim=1), strict=True))


#: Unobserved times of the posterior-predictive check.
QUERY_TIMES = torch.linspace(1.0, 19.0, 7)


def with_queries(x: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Appends NaN values at :data:`QUERY_TIMES` to each series (to be sampled)."""
    half, k = x.shape[1] // 2, len(QUERY_TIMES)
    nan = torch.full((1, k), float("nan"))
    query = QUERY_TIMES[None]
    x = torch.cat([x[:, :half], nan, x[:, half:], nan], dim=1)
    times = torch.cat([times[:, :half], query, times[:, half:], query], dim=1)
    return x, times


def predictive_c2st(posterior, x_o, times_o, reference, num_samples) -> float:
    """C2ST of the joint log prey and log predator at :data:`QUERY_TIMES`: the
    Simformer's samples against the reference posterior pushed through the
    simulator."""
    observed, observed_times = as_series(*with_queries(x_o, times_o))
    sampled = posterior.sample(
        (num_samples,), x=observed, metadata=observed_times, theta=None
    )
    k = len(QUERY_TIMES)
    ours = torch.cat(
        [sampled["log_prey"][..., -k:], sampled["log_predator"][..., -k:]], dim=-1
    ).reshape(num_samples, -1)
    _, noise = lv_unstructured_predictive(reference[:num_samples], QUERY_TIMES)
    truth = noise.sample().log().flatten(1).float()
    return float(c2st(truth, ours))


def moments(samples: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Graded where C2ST saturates: the error of the posterior mean in reference
    standard deviations, and the ratio of standard deviations, averaged over the
    parameters (log space)."""
    scale = reference.std(0)
    bias = ((samples.mean(0) - reference.mean(0)).abs() / scale).mean()
    return float(bias), float((samples.std(0) / scale).mean())


def training_set(simulations: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``theta`` and the NaN-padded ``x``, ``times`` of the simulations with at least
    one finite point, drawn from ``seed`` (shared with the NPE baseline)."""
    torch.manual_seed(seed)
    theta = lotka_volterra_prior().sample((simulations,))
    x, times = simulate_lv_unstructured(theta)
    valid = ~torch.isnan(x).all(dim=1)
    return theta[valid], x[valid], times[valid]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulations", type=int, default=10_000)
    parser.add_argument("--num-steps", type=int, default=None)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--posterior-share",
        type=float,
        default=None,
        help="replace this share of the training masks by posterior masks",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    theta, x, times = training_set(args.simulations, args.seed)
    values, metadata = as_series(x, times)
    inference = Simformer(variables=SPEC, show_progress_bars=False)
    inference.append_simulations(as_theta(theta), values, metadata=metadata)
    start = time.perf_counter()
    weights = None
    if args.posterior_share is not None:
        weights = posterior_weights(args.posterior_share)
    inference.train(num_steps=args.num_steps, mask_weights=weights)
    train_time = time.perf_counter() - start
    posterior = inference.build_posterior()
    print(
        f"{args.simulations} simulations ({len(theta)} finite), "
        f"training {train_time:.0f} s"
    )
    print(
        "| observation | points per series | C2ST | mean error / ref. std | "
        "std / ref. std | sample s | predictive C2ST |"
    )
    print("|---|---|---|---|---|---|---|")
    for number, points in enumerate(REFERENCE_POINTS, start=1):
        _, x_o, times_o, reference = lv_unstructured_observation(number)
        observed, observed_times = as_series(x_o, times_o)
        start = time.perf_counter()
        samples = posterior.sample(
            (args.samples,), x=observed, metadata=observed_times
        ).exp()
        seconds = time.perf_counter() - start
        score = c2st(reference[: args.samples], samples)
        bias, width = moments(samples.log(), reference.log())
        predictive = predictive_c2st(posterior, x_o, times_o, reference, args.samples)
        print(
            f"| {number} | {points} | {score:.3f} | {bias:.2f} | {width:.2f} | "
            f"{seconds:.0f} | {predictive:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
