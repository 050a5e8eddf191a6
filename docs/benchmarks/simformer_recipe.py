"""C2ST of the Simformer's posterior against training recipe, on one runner cell.

Trains ``Simformer(prior)`` on the runner's simulations of ``(task, budget,
--data-seed)`` with training seed ``--seed`` (both default to 1; the runner, too,
seeds the training with the cell's seed after drawing the simulations) and the
given network and training options, then scores 10 000 posterior samples of
observations ``--observations`` with the runner's C2ST (MLP and random forest).
Prints training seconds, milliseconds per step and the mean C2STs, one line per
recipe, so that recipes can be compared at equal training time.

    python docs/benchmarks/simformer_recipe.py two_moons 10000 --steps 5000 \
        --train learning_rate=3e-3 --net num_layers=4

``--net KEY=VALUE`` goes to ``SimformerNet`` (``net_kwargs``), ``--train
KEY=VALUE`` to ``train`` and ``--option KEY=VALUE`` to ``Simformer`` (values read as
Python literals, else as strings). ``--samplers`` scores the one trained model with
several samplers, e.g. ``--samplers default,sde:32,sde:64`` (``default``: the
posterior's own; ``ode:N`` or ``sde:N``: ``build_posterior(sample_with=..., steps=N)``;
``bf16``: the posterior's own with bfloat16 matrix products), one line each. Every
sampler but ``bf16`` uses float32 products, whatever ``--net matmul_dtype=...``
trained with.
"""

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import torch

from sbi_allinone import Simformer
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.graphs import task_graph
from sbi_allinone.benchmarks.runner import _c2st
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.tracking import NullTracker

sys.path.insert(0, str(Path(__file__).parent))
from iflow_seed_spread import _option  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("budget", type=int)
    parser.add_argument("--steps", type=int, default=None, help="train(num_steps=)")
    parser.add_argument("--observations", default="1-3")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument(
        "--data-seed", type=int, default=1, help="the runner's seed of the simulations"
    )
    parser.add_argument("--net", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--train", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE")
    parser.add_argument(
        "--samplers",
        type=_samplers,
        default="default",
        help="default, bf16, ode:N or sde:N, comma-separated",
    )
    args = parser.parse_args()
    net = dict(_option(text) for text in args.net)
    train = dict(_option(text) for text in args.train)
    options = dict(_option(text) for text in args.option)
    if options.get("attention", "dense") != "dense":
        options["graph"] = task_graph(args.task)
    first, _, last = args.observations.partition("-")
    observations = range(int(first), int(last or first) + 1)
    torch.set_num_threads(1)
    task = get_task(args.task)
    cell = Cell(args.task, "simformer", args.budget, args.data_seed)
    theta, x = cell_simulations(cell, task)
    # After the simulations, which seed the generator themselves (as the runner).
    torch.manual_seed(args.seed)
    inference = Simformer(
        task.prior,
        net_kwargs=net,
        tracker=NullTracker(),
        show_progress_bars=False,
        **options,
    )
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        inference.append_simulations(theta, x).train(num_steps=args.steps, **train)
    seconds = time.perf_counter() - start
    steps = inference._num_steps
    for sampler, arguments in args.samplers:
        dtype = "bfloat16" if arguments.pop("bf16", False) else "float32"
        for module in inference._trained.modules():
            if isinstance(module, SimformerNet):
                module.set_matmul_dtype(dtype)
        posterior = inference.build_posterior(**arguments)
        start = time.perf_counter()
        scores = _scores(task, posterior, observations)
        sampling = (time.perf_counter() - start) / len(observations)
        print(
            f"{args.task} {args.budget} steps {steps} net {net or '-'} train "
            f"{train or '-'} options {_shown(options)}: train {seconds:.0f} s "
            f"({1000 * seconds / steps:.0f} ms/step), sampler {sampler} "
            f"({sampling:.0f} s per observation, with C2ST), "
            f"MLP {scores['mlp']:.3f}, RF {scores['rf']:.3f}",
            flush=True,
        )


def _samplers(text: str) -> list[tuple[str, dict]]:
    """``default,sde:64`` to ``[("default", {}), ("sde:64", {"sample_with": "sde",
    "steps": 64})]``: each sampler's name and its ``build_posterior`` arguments."""
    samplers = []
    for name in text.split(","):
        kind, _, steps = name.partition(":")
        if name in ("default", "bf16"):
            samplers.append((name, {"bf16": True} if name == "bf16" else {}))
        elif kind in ("ode", "sde") and steps.isdigit():
            samplers.append((name, {"sample_with": kind, "steps": int(steps)}))
        else:
            raise argparse.ArgumentTypeError(
                f"each sampler is 'default', 'bf16', 'ode:N' or 'sde:N', got {name!r}"
            )
    return samplers


def _shown(options: dict) -> str:
    return str({k: v for k, v in options.items() if k != "graph"} or "-")


def _scores(task, posterior, observations) -> dict[str, float]:  # noqa: ANN001
    pairs = []
    with contextlib.redirect_stderr(io.StringIO()):
        for observation in observations:
            reference = task.get_reference_posterior_samples(observation)[:10_000]
            x_o = task.get_observation(observation)
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            pairs.append((reference, samples))
    return {
        classifier: sum(s for s, _ in _c2st(pairs, classifier, "cpu")) / len(pairs)
        for classifier in ("mlp", "rf")
    }


if __name__ == "__main__":
    main()
