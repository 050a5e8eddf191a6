"""The smallest series task with an exact posterior, for tests and studies of the
Simformer on series.

a ~ N(0, 1); y(t) = a t + 0.1 eps, observed at 1 to ``max_points`` random times in
[0, 2] per simulation. Given points (t_i, y_i) the posterior of a is Gaussian with
precision 1 + sum t_i^2 / 0.01 and mean sum t_i y_i / 0.01 / precision.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from sbi_allinone.simformer import Simformer, Variables

__all__ = [
    "LINEAR_SERIES",
    "linear_series_posterior",
    "simulate_linear_series",
    "train_linear_series",
]

LINEAR_SERIES = Variables(theta={"a": 1}, x={"y": "series"})


def simulate_linear_series(
    num: int, max_points: int = 6
) -> tuple[Tensor, Tensor, Tensor]:
    """``a`` ``(num, 1)``, ``y`` and its times ``(num, max_points)`` (NaN-padded)."""
    a = torch.randn(num, 1)
    counts = torch.randint(1, max_points + 1, (num,))
    times = (torch.rand(num, max_points) * 2).sort(1).values
    times[torch.arange(max_points) >= counts[:, None]] = float("nan")
    return a, a * times + 0.1 * torch.randn(num, max_points), times


def linear_series_posterior(times: Tensor, y: Tensor) -> tuple[float, float]:
    """Exact posterior mean and standard deviation of ``a`` given the points."""
    precision = 1 + (times**2).sum() / 0.01
    return float((times * y).sum() / 0.01 / precision), float(precision.rsqrt())


def train_linear_series(
    num_simulations: int, num_steps: int, batch_size: int = 256
) -> Simformer:
    """A 2-layer Simformer trained on the task (seeded by the caller)."""
    a, y, times = simulate_linear_series(num_simulations)
    prior = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    inference = Simformer(
        prior, variables=LINEAR_SERIES, show_progress_bars=False,
        net_kwargs={"num_layers": 2},
    )  # fmt: skip
    inference.append_simulations({"a": a}, {"y": y}, metadata={"time": {"y": times}})
    inference.train(
        num_steps=num_steps, training_batch_size=batch_size, stop_after_epochs=10**4
    )
    return inference
