"""A/B of the Simformer's no-autograd network path (sampling seconds per 10 000).

Trains a Simformer for 4 steps on 500 simulations of a task (the cost of a call does
not depend on training), then draws 2 000 posterior samples three times with each
path: "new" as shipped, "old" with ``torch.is_grad_enabled`` patched to return True,
which sends attention and blocks down the differentiable path. Prints the first
sample mean of each (they agree up to rounding) and the best time per 10 000.

    python docs/benchmarks/simformer_nograd_ab.py gaussian_linear
"""

import contextlib
import io
import sys
import time

import torch

import sbi_allinone.simformer.network as network
from sbi_allinone import Simformer
from sbi_allinone.benchmarks.tasks import get_task


def main() -> None:
    torch.set_num_threads(1)
    task = get_task(sys.argv[1])
    torch.manual_seed(0)
    theta = task.prior.sample((500,))
    x = task.simulate(theta)
    simformer = Simformer(task.prior, show_progress_bars=False)
    quiet = io.StringIO()
    with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        simformer.append_simulations(theta, x).train(num_steps=4)
    posterior, x_o = simformer.build_posterior(), task.get_observation(1)
    enabled = torch.is_grad_enabled
    seconds: dict[str, list[float]] = {"new": [], "old": []}
    try:
        for repeat in range(3):
            for path in ("new", "old"):
                # The patch is global: everything takes its differentiable path.
                network.torch.is_grad_enabled = (
                    (lambda: True) if path == "old" else enabled
                )
                torch.manual_seed(1)
                start = time.perf_counter()
                samples = posterior.sample((2000,), x=x_o, show_progress_bars=False)
                seconds[path].append((time.perf_counter() - start) * 5)
                if repeat == 0:
                    print(path, "first sample mean", samples.mean().item())
    finally:
        network.torch.is_grad_enabled = enabled
    best = {path: f"{min(values):.1f}" for path, values in seconds.items()}
    print(sys.argv[1], best, "s per 10 000 samples")


if __name__ == "__main__":
    main()
