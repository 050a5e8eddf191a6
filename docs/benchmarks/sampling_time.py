"""Time for 10 000 posterior samples: the Simformer's samplers against NPSE's.

Sampling cost does not depend on how well a network is trained, so both methods
train for a few steps only (on the runner's simulations of each task) and are then
timed back to back in one process, alternating, on one thread; the table gives the
best of ``--repeats`` runs per sampler and its ratio to NPSE's default sampler.

    cd docs/benchmarks
    python sampling_time.py > sampling_time.md
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from sbi.inference import NPSE

from sbi_allinone import Simformer
from sbi_allinone.benchmarks import Cell, cell_simulations, get_task
from sbi_allinone.tracking import NullTracker

#: (sample_with, ode_solver, steps, matmul_dtype) of each Simformer row.
SIMFORMER_SAMPLERS = (
    ("ode", "multistep", 32, "float32"),
    ("ode", "multistep", 24, "float32"),
    ("ode", "multistep", 24, "bfloat16"),
    ("ode", "heun", 32, "float32"),
    ("sde", None, 32, "float32"),
)


def _best_time(posterior, x_o: torch.Tensor, num_samples: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        posterior.sample((num_samples,), x=x_o, show_progress_bars=False)
        times.append(time.perf_counter() - start)
    return min(times)


def _trained(task_name: str):
    """The task, a Simformer per matmul dtype, and NPSE's posterior."""
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "simformer", 1000, 1), task)
    simformers = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in {row[-1] for row in SIMFORMER_SAMPLERS}:
            simformers[dtype] = Simformer(
                task.prior,
                net_kwargs={"matmul_dtype": dtype},
                tracker=NullTracker(),
                show_progress_bars=False,
            )
            simformers[dtype].append_simulations(theta, x)
            simformers[dtype].train(num_steps=4, steps_per_epoch=2)
        npse = NPSE(task.prior, tracker=NullTracker(), show_progress_bars=False)
        npse.append_simulations(theta, x).train(max_num_epochs=2)
    return task, simformers, npse.build_posterior()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", default="two_moons,gaussian_mixture,slcp,gaussian_linear"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| task | tokens | sampler | network calls | seconds | / npse |")
    print("|---|---|---|---|---|---|")
    for task_name in args.tasks.split(","):
        task, simformers, npse = _trained(task_name)
        x_o = task.get_observation(1)
        reference = simformers["float32"]
        tokens = reference.num_parameters + reference.num_data
        base = _best_time(npse, x_o, args.num_samples, args.repeats)
        print(f"| {task_name} | – | npse (sbi default) | – | {base:.1f} | 1.00 |")
        for sample_with, solver, steps, dtype in SIMFORMER_SAMPLERS:
            posterior = simformers[dtype].build_posterior(
                sample_with=sample_with, steps=steps, ode_solver=solver
            )
            seconds = _best_time(posterior, x_o, args.num_samples, args.repeats)
            calls = steps if solver == "multistep" else 2 * steps - 1
            name = f"simformer {sample_with}" + (f" {solver}" if solver else "")
            name += " bfloat16" if dtype == "bfloat16" else ""
            print(
                f"| {task_name} | {tokens} | {name} | {calls + 1} | {seconds:.1f} | "
                f"{seconds / base:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
