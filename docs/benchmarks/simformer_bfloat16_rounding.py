"""Which bfloat16 rounding moves the Simformer's posterior? One model, many roundings.

Trains ``Simformer(prior)`` (float32 products) on the runner's simulations of one
cell, then samples it with the matrix products of the transformer blocks rounded
in different ways and scores each with the runner's C2ST (MLP and random forest,
10 000 samples per observation, the same sampling seed per observation):

- ``float32``: no rounding;
- ``bfloat16``: the option as shipped (every block but the first in bfloat16);
- ``bfloat16-all``: every block in bfloat16 (the first version of the option);
- ``inputs``, ``weights``, ``outputs``: float32 products of every block, the first
  included, with only the inputs, only the weights and biases, or only the results
  rounded to bfloat16 (emulated: slower than either, and only for the diagnosis).

    python docs/benchmarks/simformer_bfloat16_rounding.py gaussian_mixture 10000 \\
        --steps 3000 --observations 1-3
"""

import argparse
import contextlib
import io
import time

import torch
import torch.nn.functional as F
from torch import nn

from sbi_allinone import Simformer
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.runner import _c2st
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.simformer import network
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.tracking import NullTracker

ROUNDINGS = ("float32", "bfloat16", "bfloat16-all", "inputs", "weights", "outputs")


def _rounded(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.bfloat16).to(tensor.dtype)


def _emulated_linear(rounding: str):  # noqa: ANN202
    """A stand-in for ``network._linear`` that rounds one operand of the product."""

    def linear(inputs: torch.Tensor, layer: nn.Linear, dtype) -> torch.Tensor:  # noqa: ANN001, ARG001
        weight, bias = layer.weight, layer.bias
        if rounding == "inputs":
            inputs = _rounded(inputs)
        if rounding == "weights":
            weight, bias = _rounded(weight), _rounded(bias)
        out = F.linear(inputs, weight, bias)
        return _rounded(out) if rounding == "outputs" else out

    return linear


def _emulated_mlp(linear):  # noqa: ANN001, ANN202
    def mlp(block, inputs: torch.Tensor, dtype) -> torch.Tensor:  # noqa: ANN001
        first, _, second = block.mlp
        return linear(F.gelu(linear(inputs, first, dtype)), second, dtype)

    return mlp


@contextlib.contextmanager
def rounding_of(nets: list[SimformerNet], rounding: str):  # noqa: ANN201
    """Round the networks' block products as ``rounding`` inside the with-block."""
    saved = network._linear, network._Block._mlp
    if rounding in ("inputs", "weights", "outputs"):
        linear = _emulated_linear(rounding)
        network._linear, network._Block._mlp = linear, _emulated_mlp(linear)
    for net in nets:
        net.set_matmul_dtype("float32" if rounding == "float32" else "bfloat16")
        if rounding not in ("float32", "bfloat16"):
            # Every block, the first included (a dtype routes it through _linear).
            net.blocks[0].matmul_dtype = torch.bfloat16
    try:
        yield
    finally:
        network._linear, network._Block._mlp = saved
        for net in nets:
            net.set_matmul_dtype("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("budget", type=int)
    parser.add_argument("--steps", type=int, default=None, help="train(num_steps=)")
    parser.add_argument("--observations", default="1-3")
    parser.add_argument("--roundings", default=",".join(ROUNDINGS))
    args = parser.parse_args()
    first, _, last = args.observations.partition("-")
    observations = range(int(first), int(last or first) + 1)
    torch.set_num_threads(1)
    task = get_task(args.task)
    theta, x = cell_simulations(Cell(args.task, "simformer", args.budget, 1), task)
    torch.manual_seed(1)
    inference = Simformer(task.prior, tracker=NullTracker(), show_progress_bars=False)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        inference.append_simulations(theta, x).train(num_steps=args.steps)
    print(f"{args.task} {args.budget}: trained {time.perf_counter() - start:.0f} s")
    nets = [m for m in inference._trained.modules() if isinstance(m, SimformerNet)]
    posterior = inference.build_posterior()
    for rounding in args.roundings.split(","):
        with rounding_of(nets, rounding):
            scores, seconds = _scores(task, posterior, observations)
        print(
            f"{rounding:13s} {seconds:5.1f} s per 10 000 samples  "
            f"MLP {_mean(scores['mlp']):.3f}  RF {_mean(scores['rf']):.3f}  "
            f"per observation {scores}",
            flush=True,
        )


def _scores(task, posterior, observations) -> tuple[dict, float]:  # noqa: ANN001
    pairs, seconds = [], 0.0
    with contextlib.redirect_stderr(io.StringIO()):
        for observation in observations:
            reference = task.get_reference_posterior_samples(observation)[:10_000]
            x_o = task.get_observation(observation)
            torch.manual_seed(observation)
            start = time.perf_counter()
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            seconds += time.perf_counter() - start
            pairs.append((reference, samples))
    scores = {
        classifier: [round(float(s), 3) for s, _ in _c2st(pairs, classifier, "cpu")]
        for classifier in ("mlp", "rf")
    }
    return scores, seconds / len(observations)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
