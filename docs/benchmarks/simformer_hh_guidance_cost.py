"""Seconds of guided Hodgkin–Huxley sampling: the paper's guidance against guidance
through the network, interleaved in one process so that both see the same load.

For observation 2 of ``simformer_hh_oracle.py`` and an energy bound of 1 500
nC/cm² (about the 25 % quantile there), draws ``--samples`` guided samples with
each ``constrain_by`` in turn, ``--repeats`` times, and prints the seconds::

    python docs/benchmarks/simformer_hh_guidance_cost.py --model results/hh_simformer.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import simformer_hh as hh  # noqa: E402

MODES = ("guidance", "guidance_through_network")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved by simformer_hh.py")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=1500.0)
    args = parser.parse_args()
    args.observations, args.seed = 3, 1
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    simformer = torch.load(args.model, weights_only=False)["simformer"]
    theta_o = hh.observations(args)[1]
    _, _, x_o = hh.simulate(theta_o[None], seed=args.seed + 101)
    features = x_o[:, : len(hh.FEATURE_NAMES)]
    conditionals = {
        mode: hh.conditionals(simformer, args.threshold, 5, mode)["interval"]
        for mode in MODES
    }
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, conditional in conditionals.items():
            start = time.perf_counter()
            conditional.sample((args.samples,), x=features, show_progress_bars=False)
            seconds[mode].append(time.perf_counter() - start)
    for mode, values in seconds.items():
        print(f"{mode}: {', '.join(f'{v:.1f}' for v in values)} s")


if __name__ == "__main__":
    main()
