"""C2ST of the inflationary flow over training seeds on one cell's simulations.

Trains ``InflationaryFlow(prior)`` at its defaults once per training seed on the
runner's simulations of ``(task, budget, seed 1)``, samples 10 000 posterior draws
for observations 1-10 (with each number of multistep calls asked for) and scores
them with the runner's torch MLP C2ST. Training seed 1 reproduces the runner's cell.

    python docs/benchmarks/iflow_seed_spread.py sir 1000 --seeds 1,2,3
    python docs/benchmarks/iflow_seed_spread.py two_moons 10000 --seeds 1 \
        --calls 20,28,40,64
    python docs/benchmarks/iflow_seed_spread.py two_moons 10000 --seeds 1 \
        --option training_noise=log_uniform --option linear_adjustment=False
    python docs/benchmarks/iflow_seed_spread.py two_moons 10000 --seeds 1 \
        --noise -2.0,1.8

``--option KEY=VALUE`` passes a keyword to ``InflationaryFlow`` (the value is read as
a Python literal, else as a string); ``--noise MEAN,STD`` sets
``training_noise=LogNormalNoise(MEAN, STD)``; ``--steps N`` trains ``N`` steps;
``--train KEY=VALUE`` passes a keyword to ``train`` (``--train lr_decay=constant``).
"""

import argparse
import ast
import contextlib
import io

import torch

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.runner import _c2st
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.diffusion import LogNormalNoise
from sbi_allinone.tracking import NullTracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("budget", type=int)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--calls", default="", help="multistep calls (default: 20)")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--noise", default="", help="MEAN,STD of log-normal levels")
    parser.add_argument("--steps", type=int, default=None, help="train(num_steps=)")
    parser.add_argument("--train", action="append", default=[], help="KEY=VALUE")
    args = parser.parse_args()
    options = dict(_option(text) for text in args.option)
    train_options = dict(_option(text) for text in args.train)
    if args.noise:
        mean, std = (float(v) for v in args.noise.split(","))
        options["training_noise"] = LogNormalNoise(mean, std)
    torch.set_num_threads(1)
    task = get_task(args.task)
    theta, x = cell_simulations(Cell(args.task, "iflow", args.budget, 1), task)
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        trainer = InflationaryFlow(task.prior, tracker=NullTracker(), **options)
        with contextlib.redirect_stderr(io.StringIO()):
            estimator = trainer.append_simulations(theta, x).train(
                num_steps=args.steps, **train_options
            )
            posterior = trainer.build_posterior()
        for calls in [int(c) for c in args.calls.split(",") if c] or [None]:
            if calls is not None:
                estimator.sample_steps = calls
            print(args.task, args.budget, "seed", seed, "calls", calls,
                  f"C2ST {_mean_c2st(task, posterior):.3f}", options or "",
                  train_options or "",
                  flush=True)  # fmt: skip


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _mean_c2st(task, posterior) -> float:  # noqa: ANN001
    pairs = []
    with contextlib.redirect_stderr(io.StringIO()):
        for observation in range(1, 11):
            reference = task.get_reference_posterior_samples(observation)[:10_000]
            x_o = task.get_observation(observation)
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            pairs.append((reference, samples))
    scores = [score for score, _ in _c2st(pairs, "mlp", "cpu")]
    return sum(scores) / len(scores)


if __name__ == "__main__":
    main()
