"""C2ST of ``iflow`` on one runner cell's simulations, for given builder arguments
and numbers of Heun steps (the same trained model is sampled at each).

Trains :class:`sbi_allinone.InflationaryFlow` with ``FLOW_KWARGS`` (JSON, passed to
:func:`sbi_allinone.inflationary_flow_nn`) on the simulations of
``Cell(task, "iflow", budget, 1)`` and prints, for each number of steps, the MLP
C2ST on observations 1-3 and the sampling time:

    cd docs/benchmarks
    python iflow_defaults.py slcp 10000 '{}' 64,256
    python iflow_defaults.py two_moons 1000 '{"ema_decay": null, "validation_draws": 1}'
"""

from __future__ import annotations

import json
import sys
import time

import torch
from sbi.utils.metrics import c2st

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks import Cell, cell_simulations, get_task
from sbi_allinone.tracking import NullTracker

OBSERVATIONS = (1, 2, 3)


def main(task_name: str, budget: int, flow_kwargs: dict, steps: list[int]) -> None:
    torch.set_num_threads(1)
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "iflow", budget, 1), task)
    torch.manual_seed(0)
    inference = InflationaryFlow(
        task.prior, tracker=NullTracker(), show_progress_bars=False, **flow_kwargs
    )
    start = time.perf_counter()
    inference.append_simulations(theta, x).train()
    train_time = time.perf_counter() - start
    posterior = inference.build_posterior()
    epochs = inference.summary["epochs_trained"][-1]
    for num_steps in steps:
        posterior.posterior_estimator.steps = num_steps
        scores, sample_time = [], 0.0
        for observation in OBSERVATIONS:
            x_o = task.get_observation(observation)
            start = time.perf_counter()
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            sample_time += time.perf_counter() - start
            reference = task.get_reference_posterior_samples(observation)[:10_000]
            scores.append(float(c2st(samples, reference, classifier="mlp")))
        print(
            f"{task_name} {budget} {flow_kwargs} steps={num_steps}: {epochs} epochs, "
            f"train {train_time:.0f} s, sample {sample_time:.0f} s, C2ST "
            + ", ".join(f"{score:.3f}" for score in scores)
            + f" (mean {sum(scores) / len(scores):.3f})",
            flush=True,
        )


if __name__ == "__main__":
    steps = [int(v) for v in (sys.argv[4] if len(sys.argv) > 4 else "64").split(",")]
    main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), steps)
