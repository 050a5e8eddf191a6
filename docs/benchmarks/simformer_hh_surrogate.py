r"""Guidance on a learned energy: the energy bound as a constraint on θ.

``simformer_hh_oracle.py`` found that a bound on the Simformer's own energy variable
keeps the bound in re-simulation only as well as the model has learned the energy
given θ, and that a plain regression network learns it far better from the same
simulations. Here the bound is given to guidance as a nonlinear constraint on the
parameters, ``FunctionConstraint(c)`` with ``c(v) = g(θ) - log(thr)`` and ``g`` that
regression (log energy, an MLP trained ``--epochs`` epochs on the same 20 000
simulations). For each observation: the threshold as in the other scripts (the
``--quantile`` quantile of the unconstrained posterior's sampled energy); the share of
re-simulated energies below it for the unconstrained samples, for rejection on the
regression (the unconstrained samples whose predicted energy is below), and for
``--guided`` samples guided by ``c`` (self-recurrence ``--recurrence``); and how well
the re-simulated features of each match the observed ones. Run (one
thread)::

    python docs/benchmarks/simformer_hh_surrogate.py --model results/hh_simformer.pt \
        --observations 3 --samples 2000 --guided 200
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import simformer_hh as hh  # noqa: E402
from simformer_hh_oracle import base_parser, below, rate  # noqa: E402
from simformer_hh_regression import simformer_and_regression  # noqa: E402

from sbi_allinone.simformer import FunctionConstraint  # noqa: E402


def arguments() -> argparse.Namespace:
    parser = base_parser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--guided", type=int, default=200)
    hh.add_guidance_options(parser)
    parser.add_argument(
        "--num-steps", type=int, default=None, help="training steps if --model is new"
    )
    args = parser.parse_args()
    args.log_energy = False
    return args


def feature_error(x_s: torch.Tensor, features: torch.Tensor, sd: torch.Tensor):
    """Median absolute error of the simulated features in prior-predictive sds,
    averaged over the features (as ``simformer_hh.score``)."""
    ok = x_s.isfinite().all(dim=1)
    error = ((x_s[ok, :-1] - features) / sd[:-1]).abs().median(dim=0).values
    return float(error.mean())


def study(simformer, log_energy, sd, theta_o, args, index: int) -> dict:
    _, _, x_o = hh.simulate(theta_o[None], seed=args.seed + 100 + index)
    features = x_o[:, : len(hh.FEATURE_NAMES)]
    mask = hh.features_mask()
    free = simformer.build_conditional(mask)
    samples = free.sample((args.samples,), x=features, show_progress_bars=False)
    threshold = float(samples[:, -1].quantile(args.quantile))
    simulated_x = hh.simulate(samples[:, : hh.P], seed=args.seed + 7)[2]
    simulated = simulated_x[:, -1]
    predicted = log_energy(samples[:, : hh.P])
    kept = predicted <= math.log(threshold)
    constraint = FunctionConstraint(
        lambda v: log_energy(v[:, : hh.P]) - math.log(threshold)
    )
    guided = simformer.build_conditional(
        mask,
        guidance=[constraint],
        recurrence=args.recurrence,
        constrain_by=args.constrain_by,
    )
    start = time.perf_counter()
    guided_samples = guided.sample((args.guided,), x=features, show_progress_bars=False)
    seconds = time.perf_counter() - start
    _, _, guided_x = hh.simulate(guided_samples[:, : hh.P], seed=args.seed + 9)
    everyone = torch.ones(args.samples, dtype=torch.bool)
    all_guided = torch.ones(args.guided, dtype=torch.bool)
    guided_predicted = log_energy(guided_samples[:, : hh.P])
    return {
        "threshold": hh.in_units(threshold),
        "unconstrained": rate(below(simulated, threshold), everyone),
        "rejection": rate(below(simulated, threshold), kept),
        "unconstrained_error": feature_error(simulated_x, features, sd),
        "rejection_error": feature_error(simulated_x[kept], features, sd),
        "guided_predicted": float(
            (guided_predicted <= math.log(threshold)).float().mean()
        ),
        "guided": rate(below(guided_x[:, -1], threshold), all_guided),
        "error": feature_error(guided_x, features, sd),
        "seconds": seconds,
    }


def main() -> None:
    args = arguments()
    simformer, sd, log_energy = simformer_and_regression(args)
    print(
        "| obs (thr) | unconstrained: simulated ≤ thr | rejection on the regression "
        "| guided by the regression: predicted ≤ thr | guided: simulated ≤ thr "
        "| feature error (sd): unconstrained, rejection, guided | guided s |"
    )
    print("|---|---|---|---|---|---|---|")
    for index, theta_o in enumerate(hh.observations(args)):
        r = study(simformer, log_energy, sd, theta_o, args, index)
        print(
            f"| {index + 1} ({r['threshold']:.0f}) | {r['unconstrained']} "
            f"| {r['rejection']} | {r['guided_predicted']:.2f} | {r['guided']} "
            f"| {r['unconstrained_error']:.2f}, {r['rejection_error']:.2f}, "
            f"{r['error']:.2f} | {r['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
