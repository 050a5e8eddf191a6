"""Why the linear adjustment hurts gaussian_linear_uniform at 10 000 simulations.

Three measurements (``docs/benchmarks/2026-12-04-iflow-adjustment-cause/``):

``bayes``: per parameter of gaussian_linear_uniform (the prior box and the
likelihood factorize, so one dimension is exact), the weighted denoising loss of the
untrained denoiser (the exact denoiser of a Gaussian with the coordinates' variance)
and of the Bayes-optimal one, averaged over the training noise levels, with and
without the adjustment. Their difference is what training can gain.

``toy``: ``theta ~ U(-1, 1)^D``, ``x = theta + N(0, 0.1 I)`` (gaussian_linear_uniform
for ``D = 10``), 10 000 simulations, ``InflationaryFlow`` with and without the
adjustment: the validation loss before and after training, and the error of the
posterior mean at ``x = (c, ..., c)`` against the exact truncated-normal mean.

``task``: one runner cell (simulations of seed 1, training seed 1): the MLP C2ST of
each observation 1-10 and the fraction of the flow's samples outside the prior
(which sbi's posterior rejects).

    python docs/benchmarks/iflow_adjustment_signal.py bayes
    python docs/benchmarks/iflow_adjustment_signal.py toy --dims 2,10
    python docs/benchmarks/iflow_adjustment_signal.py task \
        gaussian_linear_uniform 10000 --option linear_adjustment=True
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
from sbi.utils import BoxUniform

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks.cells import Cell, cell_simulations
from sbi_allinone.benchmarks.runner import _c2st
from sbi_allinone.benchmarks.tasks import get_task
from sbi_allinone.inflationary.builder import LOG_NORMAL_LEVELS
from sbi_allinone.tracking import NullTracker

sys.path.insert(0, str(Path(__file__).parent))
from iflow_seed_spread import _option  # noqa: E402

#: Likelihood variance of gaussian_linear_uniform.
NOISE_VARIANCE = 0.1


def bayes_gain(num: int = 20_000, seed: int = 0) -> None:
    """Print the attainable loss gain per parameter, with and without adjustment."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, num)
    x = theta + rng.normal(0, math.sqrt(NOISE_VARIANCE), num)
    theta_std, x_std = (theta - theta.mean()) / theta.std(), (x - x.mean()) / x.std()
    slope = float(np.dot(theta_std, x_std) / num)  # the regression on z-scored data
    grid = np.linspace(-1, 1, 801)
    grid_std = (grid - theta.mean()) / theta.std()
    mean, std = LOG_NORMAL_LEVELS
    sigma = np.exp(rng.normal(mean, std, num)).clip(2e-3, 80.0)
    for a in (0.0, slope):
        residual = theta_std - a * x_std
        data_variance = residual.var()
        noised = residual + sigma * rng.normal(size=num)
        # Posterior of the residual given x and the noised residual, on the grid.
        log_w = -((x[:, None] - grid[None, :]) ** 2) / (2 * NOISE_VARIANCE)
        grid_residual = grid_std[None, :] - a * x_std[:, None]
        log_w -= (noised[:, None] - grid_residual) ** 2 / (2 * sigma[:, None] ** 2)
        w = np.exp(log_w - log_w.max(1, keepdims=True))
        bayes = (w * grid_residual).sum(1) / w.sum(1)
        weight = (sigma**2 + data_variance) / (sigma**2 * data_variance)
        untrained = data_variance / (sigma**2 + data_variance) * noised
        loss_untrained = np.mean(weight * (untrained - residual) ** 2)
        loss_bayes = np.mean(weight * (bayes - residual) ** 2)
        print(
            f"adjustment slope {a:.3f}: coordinate variance {data_variance:.3f}, "
            f"loss untrained {loss_untrained:.3f}, Bayes {loss_bayes:.3f}, "
            f"attainable gain {loss_untrained - loss_bayes:.3f} per parameter"
        )


def truncated_mean(centre: float) -> float:
    """Mean of ``N(centre, 0.1)`` truncated to ``[-1, 1]``."""
    scale = math.sqrt(NOISE_VARIANCE)
    standard = torch.distributions.Normal(0.0, 1.0)
    ends = (torch.tensor([-1.0, 1.0], dtype=torch.float64) - centre) / scale
    density, mass = standard.log_prob(ends).exp(), standard.cdf(ends)
    shift = (density[0] - density[1]) / (mass[1] - mass[0])
    return centre + scale * shift.item()


def toy(dims: list[int], options: dict, train_options: dict) -> None:
    """Print validation losses and posterior-mean errors on the box toy."""
    for dim in dims:
        prior = BoxUniform(-torch.ones(dim), torch.ones(dim))
        torch.manual_seed(0)
        theta = prior.sample((10_000,))
        x = theta + math.sqrt(NOISE_VARIANCE) * torch.randn_like(theta)
        for adjust in (False, True):
            torch.manual_seed(1)
            trainer = InflationaryFlow(
                prior, tracker=NullTracker(), linear_adjustment=adjust, **options
            )
            with _quiet():
                estimator = trainer.append_simulations(theta, x).train(**train_options)
            losses = trainer.summary["validation_loss"]
            errors = []
            for centre in (-0.8, 0.0, 0.8):
                samples = estimator.sample(
                    (4_000,), condition=torch.full((1, dim), centre)
                ).reshape(4_000, dim)
                inside = samples[((samples > -1) & (samples < 1)).all(-1)]
                errors.append(inside.mean().item() - truncated_mean(centre))
            print(
                f"D={dim} adjustment={adjust} {options or ''}{train_options or ''}: "
                f"validation loss {losses[0]:.3f} -> {min(losses):.3f}, "
                "posterior-mean error at x=-0.8, 0, 0.8: "
                + " ".join(f"{e:+.3f}" for e in errors)
            )


def task_cell(name: str, budget: int, options: dict) -> None:
    """Print per-observation C2ST and the fraction of samples outside the prior."""
    task = get_task(name)
    theta, x = cell_simulations(Cell(name, "iflow", budget, 1), task)
    torch.manual_seed(1)
    trainer = InflationaryFlow(task.prior, tracker=NullTracker(), **options)
    with _quiet():
        estimator = trainer.append_simulations(theta, x).train()
        posterior = trainer.build_posterior()
    pairs, outside, raws = [], [], []
    with _quiet():
        for observation in range(1, 11):
            x_o = task.get_observation(observation)
            raw = estimator.sample((10_000,), condition=x_o.reshape(1, -1))
            raws.append(raw.reshape(10_000, -1))
            in_prior = torch.isfinite(task.prior.log_prob(raws[-1]))
            outside.append(1 - in_prior.float().mean().item())
            samples = posterior.sample((10_000,), x=x_o, show_progress_bars=False)
            reference = task.get_reference_posterior_samples(observation)[:10_000]
            pairs.append((reference, samples))
    scores = [score for score, _ in _c2st(pairs, "mlp", "cpu")]
    losses = trainer.summary["validation_loss"]
    print(f"{name} {budget} {options}: mean C2ST {sum(scores) / len(scores):.3f}")
    print(f"  validation loss {losses[0]:.3f} (epoch 1) -> {min(losses):.3f} (best)")
    print("  C2ST    ", " ".join(f"{s:.3f}" for s in scores))
    print("  outside ", " ".join(f"{f:.3f}" for f in outside))
    _describe_observation_1(task, raws[0])
    _denoised_means(estimator, task.dim_data)


def _describe_observation_1(task, raw: torch.Tensor) -> None:  # noqa: ANN001
    """Per-dimension mean and spread of the flow's samples ``raw`` ``(N, D)`` of
    observation 1, before rejection, against the reference."""
    x_o = task.get_observation(1)
    inside = raw[torch.isfinite(task.prior.log_prob(raw))]
    reference = task.get_reference_posterior_samples(1)[:10_000]
    rows = {
        "x_o": x_o.reshape(-1),
        "reference mean": reference.mean(0),
        "flow mean (inside)": inside.mean(0),
        "reference spread": reference.std(0),
        "flow spread (raw)": raw.std(0),
    }
    for label, values in rows.items():
        print(f"  obs 1 {label:20s}", " ".join(f"{v:+.2f}" for v in values))


def _denoised_means(estimator, dim_data: int) -> None:  # noqa: ANN001
    """The denoised first parameter at a noised value of 0 in the flow's
    coordinates, for x_1 = -2..2 (other data 0), at three noise levels: how the
    network's output depends on x."""
    denoiser = estimator.net.eval()
    condition = torch.zeros(5, dim_data)
    condition[:, 0] = torch.linspace(-2, 2, 5)
    context = estimator._embed(condition)
    for log_sigma in (-2.0, 0.0, 2.0):
        variance = torch.tensor([[math.exp(2 * log_sigma)]])
        t = denoiser.schedule.time_of_base_variance(variance).expand(5, 1)
        with torch.no_grad():
            denoised = denoiser(torch.zeros(5, estimator.dim_theta), t, context)
            theta = estimator.from_pca(denoised, context)
        print(
            f"  denoised theta_1 at log sigma {log_sigma:+.0f}, x_1 = -2..2:",
            " ".join(f"{v:+.3f}" for v in theta[:, 0]),
        )


@contextlib.contextmanager
def _quiet():  # noqa: ANN202
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("bayes", "toy", "task"))
    parser.add_argument("task", nargs="?", default="gaussian_linear_uniform")
    parser.add_argument("budget", nargs="?", type=int, default=10_000)
    parser.add_argument("--dims", default="2,10")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--train", action="append", default=[], help="KEY=VALUE")
    args = parser.parse_args()
    options = dict(_option(text) for text in args.option)
    train_options = dict(_option(text) for text in args.train)
    torch.set_num_threads(1)
    if args.mode == "bayes":
        bayes_gain()
    elif args.mode == "toy":
        toy([int(d) for d in args.dims.split(",")], options, train_options)
    else:
        task_cell(args.task, args.budget, options)


if __name__ == "__main__":
    main()
