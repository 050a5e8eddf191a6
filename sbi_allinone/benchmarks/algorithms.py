"""sbibm-style algorithm functions for every registered method.

sbibm's benchmark scripts call ``run(task, num_samples, num_simulations,
num_observation=None, observation=None, **kwargs)``; this module exposes one such
function per registered method, so our methods run next to sbibm's baselines::

    from sbi_allinone.benchmarks import algorithms
    samples, num_simulations, log_prob_true = algorithms.npe(
        sbibm.get_task("two_moons"), num_samples=10_000, num_simulations=1_000,
        num_observation=1,
    )

``task`` may be an sbibm task or a :class:`~sbi_allinone.benchmarks.tasks.Task`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sbi_allinone.benchmarks.methods import available_methods, get_method

if TYPE_CHECKING:
    from sbibm.tasks.task import Task as SbibmTask

    from sbi_allinone.benchmarks.tasks import Task

__all__ = ["run", "sbibm_algorithm"]


def run(
    task: SbibmTask | Task,
    num_samples: int,
    num_simulations: int,
    num_observation: int | None = None,
    observation: Tensor | None = None,
    *,
    method: str,
    show_progress_bars: bool = False,
) -> tuple[Tensor, int, Tensor | None]:
    """Train ``method`` on ``num_simulations`` simulations and sample one posterior.

    Args:
        task: An sbibm task (or ours, :class:`~.tasks.Task`): ``get_prior_dist``,
            ``get_prior``, ``get_simulator``, ``get_observation``,
            ``get_true_parameters``.
        num_samples: Number of posterior samples to return.
        num_simulations: Simulation budget.
        num_observation: sbibm observation number; exclusive with ``observation``.
        observation: Observation, shape ``(1, dim_data)``.
        method: Registered method name.
        show_progress_bars: Show training progress.

    Returns:
        ``(samples, num_simulations_used, log_prob_true_parameters)`` as sbibm
        expects: samples ``(num_samples, dim_parameters)``; the log-probability of the
        true parameters ``(1,)`` when ``num_observation`` is given and the method's
        density is normalized, else ``None``.
    """
    if (num_observation is None) == (observation is None):
        raise ValueError("Pass exactly one of `num_observation` and `observation`.")
    spec = get_method(method)
    if observation is None:
        observation = task.get_observation(num_observation)
    prior = task.get_prior_dist()
    theta = task.get_prior()(num_samples=num_simulations)
    x = task.get_simulator()(theta)
    trained = spec.fit(
        theta, x, prior, show_progress_bars, task=getattr(task, "name", None)
    )
    posterior = trained.posterior
    samples = posterior.sample((num_samples,), x=observation, show_progress_bars=False)
    log_prob_true = None
    if num_observation is not None and spec.normalized_log_prob:
        true_parameters = task.get_true_parameters(num_observation)
        with torch.no_grad():
            log_prob_true = posterior.log_prob(true_parameters, x=observation)
    return samples.reshape(num_samples, -1), num_simulations, log_prob_true


def sbibm_algorithm(method: str) -> Callable[..., tuple[Tensor, int, Tensor | None]]:
    """Return sbibm's ``run(task, num_samples, num_simulations, ...)`` for a method."""
    get_method(method)
    return functools.partial(run, method=method)


def __getattr__(name: str) -> Callable[..., tuple[Tensor, int, Tensor | None]]:
    # `algorithms.npe`, `algorithms.npse`, ...: one function per registered method,
    # including methods registered after this module was imported.
    if name in available_methods():
        return sbibm_algorithm(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
