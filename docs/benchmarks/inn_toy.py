"""Mode weights of the INN paper's multi-modal toy, for each training mode.

Trains ``INN(mode=...)`` at its defaults on ``MultimodalToy`` simulations and prints,
for each colour, the fraction of 10 000 posterior samples nearest each mode next to
the exact posterior weights.

    cd docs/benchmarks
    python inn_toy.py 10000 > inn_toy.md
"""

import sys
import time

import torch

from sbi_allinone import INN
from sbi_allinone.inn.toy import MultimodalToy
from sbi_allinone.tracking import NullTracker


def main(num_simulations: int) -> None:
    toy = MultimodalToy()
    torch.manual_seed(0)
    theta = toy.prior.sample((num_simulations,))
    x = toy.simulator(theta)
    print(f"{num_simulations} simulations; 10 000 samples per colour.\n")
    print("| mode | colour | exact weights | INN weights | max abs error | train s |")
    print("|---|---|---|---|---|---|")
    for mode in ("ml", "hybrid", "mmd"):
        torch.manual_seed(1)
        start = time.perf_counter()
        inference = INN(
            toy.prior, mode=mode, tracker=NullTracker(), show_progress_bars=False
        )
        inference.append_simulations(theta, x).train()
        seconds = time.perf_counter() - start
        posterior = inference.build_posterior()
        for colour in range(toy.num_colours):
            samples = posterior.sample(
                (10_000,), x=toy.observation(colour), show_progress_bars=False
            )
            weights, exact = toy.mode_weights(samples), toy.true_mode_weights(colour)
            print(
                f"| {mode} | {colour} | {_fmt(exact)} | {_fmt(weights)} "
                f"| {(weights - exact).abs().max():.3f} | {seconds:.0f} |",
                flush=True,
            )


def _fmt(weights: torch.Tensor) -> str:
    return " ".join(f"{w:.2f}" for w in weights.tolist())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
