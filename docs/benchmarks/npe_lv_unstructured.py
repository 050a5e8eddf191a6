"""NPE baselines on Lotka-Volterra observed at irregular times, in varying numbers.

The baseline of ``simformer_lv_unstructured.py``: the same simulations (same seed),
the same stored observations (3, 6, 12 and 20 points per series) and the same
metrics, but sbi's NPE (neural spline flow) on log theta, conditioned on a fixed-size
representation of the unstructured data:

- ``padded``: for each series, its 20 slots as (time / 20, log value, present), with
  absent slots all 0; a flat vector of 120 numbers (z-scored by NPE).
- ``set``: the 40 possible points as (time / 20, log prey, log predator, is prey,
  is predator), one of the two values 0, padded rows all 0; a permutation-invariant
  embedding averages a per-point network over the present points only (padded rows
  are masked out) and appends the number of points per species. sbi 0.27's
  ``PermutationInvariantEmbedding`` is not used: it counts the present points of
  every batch row from the first row's NaN pattern (``reshape(-1)[:batch]``).

Run: ``python docs/benchmarks/npe_lv_unstructured.py --simulations 3000``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from sbi.inference import NPE
from sbi.neural_nets import posterior_nn
from sbi.neural_nets.embedding_nets import FCEmbedding
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from sbi_allinone.benchmarks.c2st import c2st
from sbi_allinone.benchmarks.ode_models import lotka_volterra_prior
from sbi_allinone.benchmarks.unstructured import (
    LV_T_MAX,
    REFERENCE_POINTS,
    lv_unstructured_observation,
)

sys.path.insert(0, str(Path(__file__).parent))
from simformer_lv_unstructured import moments, training_set  # noqa: E402


def padded_features(x: Tensor, times: Tensor) -> Tensor:
    """The data contract ``(N, 2 M)`` as ``(N, 2 M, 3)``: per slot (time / 20,
    log value, present), absent slots all 0."""
    present = ~x.isnan()
    log_x = torch.where(present, x.log(), 0.0)
    t = torch.where(present, times / LV_T_MAX, 0.0)
    return torch.stack([t, log_x, present.float()], dim=-1)


def point_features(x: Tensor, times: Tensor) -> Tensor:
    """The data contract as a set of ``2 M`` points ``(N, 2 M * 5)``: per point
    (time / 20, log prey, log predator, is prey, is predator), absent rows all 0."""
    t, log_x, present = padded_features(x, times).unbind(-1)
    half = x.shape[1] // 2
    prey = torch.zeros_like(present)
    prey[:, :half] = present[:, :half]
    predator = present - prey
    points = [t, log_x * prey, log_x * predator, prey, predator]
    return torch.stack(points, dim=-1).flatten(1)


class MaskedSetEmbedding(nn.Module):
    """Mean of a per-point network over the present points, then a head on it and
    the fraction of the ``M`` slots used per species. Padded rows get weight 0."""

    def __init__(self, loc: Tensor, scale: Tensor, max_points: int, width: int = 64):
        super().__init__()
        self.register_buffer("loc", loc)  # of the 3 continuous features
        self.register_buffer("scale", scale)
        self.max_points = max_points
        self.point_net = FCEmbedding(5, width, num_layers=3, num_hiddens=width)
        self.head = FCEmbedding(width + 2, 32, num_layers=3, num_hiddens=width)

    def forward(self, x: Tensor) -> Tensor:
        points = x.reshape(len(x), -1, 5)
        species = points[..., 3:]
        mask = species.sum(-1, keepdim=True)
        values = (points[..., :3] - self.loc) / self.scale * mask
        h = self.point_net(torch.cat([values, species], dim=-1)) * mask
        pooled = h.sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(torch.cat([pooled, species.sum(1) / self.max_points], -1))


def log_prior() -> Independent:
    """The log-normal prior of ``lotka_volterra_prior`` as a normal on log theta."""
    base = lotka_volterra_prior().base_dist
    return Independent(Normal(base.loc, base.scale), 1)


def featurize(variant: str, x: Tensor, times: Tensor) -> Tensor:
    if variant == "padded":
        return padded_features(x, times).flatten(1)
    return point_features(x, times)


def train_npe(variant: str, x: Tensor, times: Tensor, log_theta: Tensor, args):
    """NPE on log theta given one representation; the posterior and training s."""
    features = featurize(variant, x, times)
    if variant == "padded":
        builder = posterior_nn(args.density_estimator)
    else:
        continuous = features.view(len(x), -1, 5)[..., :3]
        present = features.view(len(x), -1, 5)[..., 3:].sum(-1).bool()
        rows = continuous[present]
        loc, scale = rows.mean(0), rows.std(0)
        embedding = MaskedSetEmbedding(loc, scale, x.shape[1] // 2)
        builder = posterior_nn(
            args.density_estimator, z_score_x="none", embedding_net=embedding
        )
    torch.manual_seed(args.seed)
    inference = NPE(log_prior(), density_estimator=builder, show_progress_bars=False)
    inference.append_simulations(log_theta, features)
    start = time.perf_counter()
    estimator = inference.train()
    seconds = time.perf_counter() - start
    epochs = inference.summary["epochs_trained"][-1]
    return inference.build_posterior(estimator), seconds, epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulations", type=int, default=3_000)
    parser.add_argument("--variant", choices=("padded", "set", "both"), default="both")
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--density-estimator", default="nsf")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # The Simformer record's simulations: the same seed gives the same data.
    theta, x, times = training_set(args.simulations, args.seed)
    log_theta = theta.log()
    observations = [lv_unstructured_observation(n) for n in (1, 2, 3, 4)]
    variants = ("padded", "set") if args.variant == "both" else (args.variant,)
    for variant in variants:
        posterior, train_time, epochs = train_npe(variant, x, times, log_theta, args)
        print(
            f"\n{variant}: {args.simulations} simulations ({len(theta)} "
            f"finite), {args.density_estimator}, training {train_time:.0f} s "
            f"({epochs} epochs)"
        )
        print(
            "| observation | points per series | C2ST | mean error / ref. std | "
            "std / ref. std | training s | sample s |"
        )
        print("|---|---|---|---|---|---|---|")
        for number, points in enumerate(REFERENCE_POINTS, start=1):
            _, x_o, times_o, reference = observations[number - 1]
            x_feat = featurize(variant, x_o, times_o)
            start = time.perf_counter()
            log_samples = posterior.sample(
                (args.samples,), x=x_feat, show_progress_bars=False
            )
            seconds = time.perf_counter() - start
            # As the Simformer script: C2ST on theta, moments on log theta.
            score = c2st(reference[: args.samples], log_samples.exp())
            bias, width = moments(log_samples, reference.log())
            print(
                f"| {number} | {points} | {score:.3f} | {bias:.2f} | {width:.2f} | "
                f"{train_time:.0f} | {seconds:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
