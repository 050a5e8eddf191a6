"""C2ST of ``iflow`` on one runner cell's simulations for a given training length.

Trains :class:`sbi_allinone.InflationaryFlow` at its defaults on the simulations of
``Cell(task, "iflow", budget, 1)`` with the given ``stop_after_epochs`` and
``max_num_epochs`` and prints the MLP C2ST on observations 1-3:

    cd docs/benchmarks
    python iflow_training_length.py two_moons 1000 6000 5000
"""

from __future__ import annotations

import sys
import time

import torch
from sbi.utils.metrics import c2st

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks import Cell, cell_simulations, get_task
from sbi_allinone.tracking import NullTracker


def main(task_name: str, budget: int, patience: int, max_epochs: int) -> None:
    torch.set_num_threads(1)
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "iflow", budget, 1), task)
    torch.manual_seed(0)
    inference = InflationaryFlow(
        task.prior, tracker=NullTracker(), show_progress_bars=False
    )
    start = time.perf_counter()
    inference.append_simulations(theta, x).train(
        stop_after_epochs=patience, max_num_epochs=max_epochs
    )
    train_time = time.perf_counter() - start
    posterior = inference.build_posterior()
    scores = []
    for observation in (1, 2, 3):
        x_o = task.get_observation(observation)
        samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
        reference = task.get_reference_posterior_samples(observation)[:10_000]
        scores.append(float(c2st(samples, reference, classifier="mlp")))
    epochs = inference.summary["epochs_trained"][-1]
    print(
        f"{task_name} {budget}: {epochs} epochs, {train_time:.0f} s, C2ST "
        + ", ".join(f"{score:.3f}" for score in scores)
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
