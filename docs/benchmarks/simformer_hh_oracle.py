r"""What rate of re-simulated samples can an energy bound on Hodgkin–Huxley promise?

A bound on the *sampled* energy (a latent data variable) constrains one draw of the
simulator's output per sample; a re-simulation of the same parameters is a fresh
draw. Even a perfect model cannot promise more than the "oracle rate"

    P(E' <= thr | E <= thr),  θ ~ p(θ | features),  E, E' two simulations at θ,

the rate at which exact samples of the constrained conditional p(θ, E | features,
E <= thr) meet the bound when simulated again. This script estimates it by simulating
every posterior sample twice (rejection ABC on the first simulation), next to:

- the model's joint: of the unconstrained samples whose *sampled* energy is below
  the threshold, how many simulate below it (the same quantity with the model's
  energy in place of the first simulation);
- the guided samples (``Interval``, self-recurrence 5): how many simulate below it;
- the model's likelihood: the energy sampled from the conditional with θ *and* the
  features observed, ``p(E | θ, features)``, one draw per posterior sample; of the
  samples whose energy drawn this way is below the threshold (rejection on the
  model's own conditional: exact samples of the constrained conditional if the
  model's conditionals are), how many simulate below it.

The threshold is the ``--quantile`` quantile of the unconstrained posterior's sampled
energy, as in ``simformer_hh.py``, whose functions and trained model this reuses
(``--model``; trained here, ``--num-steps`` Adam steps, if the file does not exist).
Run (one thread)::

    python docs/benchmarks/simformer_hh_oracle.py --model results/hh_simformer.pt \
        --observations 3 --samples 2000 --guided 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import simformer_hh as hh  # noqa: E402


def base_parser() -> argparse.ArgumentParser:
    """The options this script shares with ``simformer_hh_regression.py``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="saved by simformer_hh.py")
    parser.add_argument("--simulations", type=int, default=20_000)
    parser.add_argument("--observations", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--quantile", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=1)
    return parser


def arguments() -> argparse.Namespace:
    parser = base_parser()
    parser.add_argument("--guided", type=int, default=300)
    hh.add_guidance_options(parser)
    parser.add_argument("--log-energy", action="store_true")
    parser.add_argument(
        "--num-steps", type=int, default=None, help="training steps if --model is new"
    )
    return parser.parse_args()


def below(energies: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(n,)`` booleans; a failed simulation (NaN) counts as not below."""
    return energies.nan_to_num(float("inf")) <= threshold


def rate(event: torch.Tensor, given: torch.Tensor) -> str:
    """``P(event | given)`` with its count, as text."""
    n = int(given.sum())
    return f"{float(event[given].float().mean()):.2f} (n={n})" if n else "– (n=0)"


def likelihood_energy(simformer, theta: torch.Tensor, features: torch.Tensor):
    """One draw of the energy from ``p(E | theta, features)`` per row: ``(n,)``."""
    mask = hh.features_mask().clone()
    mask[: hh.P] = True  # theta observed too; only the energy is latent
    conditional = simformer.build_conditional(mask)
    condition = torch.cat([theta, features.expand(len(theta), -1)], dim=1)
    draws = conditional.sample_batched((1,), x=condition, show_progress_bars=False)
    return draws[0, :, 0]


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation over the rows where both are finite."""
    ok = a.isfinite() & b.isfinite()
    return float(torch.corrcoef(torch.stack([a[ok], b[ok]]))[0, 1])


def observed_features(theta_o: torch.Tensor, args, index: int) -> torch.Tensor:
    """The features of observation ``index`` (as every HH script simulates it):
    ``(1, 7)``."""
    _, _, x_o = hh.simulate(theta_o[None], seed=args.seed + 100 + index)
    return x_o[:, : len(hh.FEATURE_NAMES)]


def study(
    simformer, theta_o: torch.Tensor, args, index: int, threshold: float | None = None
) -> dict:
    """The columns of the table for one observation; ``threshold`` (learned units)
    defaults to the ``--quantile`` quantile of the sampled energy."""
    features = observed_features(theta_o, args, index)
    free = simformer.build_conditional(hh.features_mask())
    samples = free.sample((args.samples,), x=features, show_progress_bars=False)
    if threshold is None:
        threshold = float(samples[:, -1].quantile(args.quantile))
    first = hh.simulate(samples[:, : hh.P], seed=args.seed + 7)[2][:, -1]
    second = hh.simulate(samples[:, : hh.P], seed=args.seed + 8)[2][:, -1]
    energy_given_theta = likelihood_energy(simformer, samples[:, : hh.P], features)
    guided = hh.conditionals(simformer, threshold, args.recurrence, args.constrain_by)[
        "interval"
    ]
    start = time.perf_counter()
    guided_samples = guided.sample((args.guided,), x=features, show_progress_bars=False)
    seconds = time.perf_counter() - start
    guided_sim = hh.simulate(guided_samples[:, : hh.P], seed=args.seed + 9)[2][:, -1]
    everyone = torch.ones(args.samples, dtype=torch.bool)
    return {
        "threshold": hh.in_units(threshold),
        "simulated": rate(below(first, threshold), everyone),
        "oracle": rate(below(second, threshold), below(first, threshold)),
        "model": rate(below(first, threshold), below(samples[:, -1], threshold)),
        "likelihood": rate(
            below(first, threshold), below(energy_given_theta, threshold)
        ),
        "correlation": correlation(energy_given_theta, first),
        "joint_correlation": correlation(samples[:, -1], first),
        "guided": rate(
            below(guided_sim, threshold), torch.ones(args.guided, dtype=torch.bool)
        ),
        "repeat": float(
            ((second - first).abs() / first.abs().clamp_min(1e-6)).nanmedian()
        ),
        "seconds": seconds,
        "samples": samples,
        "guided_samples": guided_samples,
    }


def main() -> None:
    args = arguments()
    hh.LOG_ENERGY = args.log_energy
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    simformer, _, _ = hh.train(args)
    print(
        "| obs (thr) | unconstrained: simulated ≤ thr | oracle: 2nd simulation ≤ thr "
        "given 1st ≤ thr | model joint: simulated ≤ thr given sampled ≤ thr "
        "| model likelihood: simulated ≤ thr given p(E | θ, features) draw ≤ thr "
        "| corr(sampled E, simulated E): joint, likelihood | guided "
        "(interval): simulated ≤ thr | median relative change of E between two "
        "simulations | guided s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for index, theta_o in enumerate(hh.observations(args)):
        r = study(simformer, theta_o, args, index)
        print(
            f"| {index + 1} ({r['threshold']:.0f}) | {r['simulated']} | {r['oracle']} "
            f"| {r['model']} | {r['likelihood']} | {r['joint_correlation']:.2f}, "
            f"{r['correlation']:.2f} | {r['guided']} | {r['repeat']:.3f} "
            f"| {r['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
