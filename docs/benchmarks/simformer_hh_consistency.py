r"""Are guided Hodgkin–Huxley samples samples of the model's constrained conditional?

Guidance with ``Interval(node=energy, high=thr)`` returns joint samples ``(θ, E)`` whose
sampled energy ``E`` is below the threshold. If they were samples of the model's
constrained conditional, the model's own likelihood ``p(E | θ, features)`` at the
guided θ would put the energy below the threshold too. For observations 2 and 3 (as in
``simformer_hh_oracle.py``; threshold the 25 % quantile of 1 000 unconstrained samples'
energy) this prints, for ``--guided`` guided samples: the share of sampled energies
below the threshold, the share of one draw from ``p(E | θ, features)`` per sample below
it, the share of re-simulated energies below it, the guided sampling's seconds, and the
mean θ of the unconstrained and guided samples. Run (one thread)::

    python docs/benchmarks/simformer_hh_consistency.py --model results/hh_simformer.pt
    python docs/benchmarks/simformer_hh_consistency.py --model results/hh_simformer.pt \
        --constrain-by guidance_through_network
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import simformer_hh as hh  # noqa: E402
from simformer_hh_oracle import below, likelihood_energy  # noqa: E402


def share(energy: torch.Tensor, threshold: float) -> float:
    """The share of ``energy`` ``(n,)`` at or below ``threshold`` (NaN: above)."""
    return float(below(energy, threshold).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="saved by simformer_hh.py")
    parser.add_argument("--guided", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    hh.add_guidance_options(parser)
    args = parser.parse_args()
    args.observations = 3
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    simformer = torch.load(args.model, weights_only=False)["simformer"]
    for index, theta_o in enumerate(hh.observations(args)):
        if index == 0:
            continue
        _, _, x_o = hh.simulate(theta_o[None], seed=args.seed + 100 + index)
        features = x_o[:, : len(hh.FEATURE_NAMES)]
        free = simformer.build_conditional(hh.features_mask())
        samples = free.sample((1000,), x=features, show_progress_bars=False)
        threshold = float(samples[:, -1].quantile(0.25))
        conditional = hh.conditionals(
            simformer, threshold, args.recurrence, args.constrain_by
        )["interval"]
        start = time.perf_counter()
        guided = conditional.sample(
            (args.guided,), x=features, show_progress_bars=False
        )
        seconds = time.perf_counter() - start
        theta = guided[:, : hh.P]
        model_energy = likelihood_energy(simformer, theta, features)
        simulated = hh.simulate(theta, seed=args.seed + 8)[2][:, -1]

        print(
            f"obs {index + 1}: guided sampled E <= thr "
            f"{share(guided[:, -1], threshold):.2f}, "
            f"p(E | theta, features) <= thr {share(model_energy, threshold):.2f}, "
            f"simulated <= thr {share(simulated, threshold):.2f}, "
            f"guided sampling {seconds:.0f} s"
        )
        unconstrained = samples[:, : hh.P].mean(0).numpy().round(2)
        print(f"  mean theta, unconstrained: {unconstrained}")
        print(f"  mean theta, guided:        {theta.mean(0).numpy().round(2)}")


if __name__ == "__main__":
    main()
