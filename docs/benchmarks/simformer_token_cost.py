"""Time per Simformer training step on slcp_distractors, one value per token against
ten (``x_per_token``). Record: ``simformer_slcp_distractors.md``.

Run: ``python docs/benchmarks/simformer_token_cost.py``
"""

import time
import warnings

import torch

from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.tracking import NullTracker


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = get_task("slcp_distractors")
    theta = task.prior.sample((3000,))
    x = task.simulate(theta)
    for per_token in (10, 1):
        inference = Simformer(
            task.prior,
            tracker=NullTracker(),
            show_progress_bars=False,
            x_per_token=per_token,
        )
        inference.append_simulations(theta, x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference.train(num_steps=4, training_batch_size=100)  # warm-up
            start = time.perf_counter()
            inference.train(num_steps=40, training_batch_size=100)
        seconds = (time.perf_counter() - start) / 40
        tokens = 5 + -(-100 // per_token)
        print(f"| {tokens} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
