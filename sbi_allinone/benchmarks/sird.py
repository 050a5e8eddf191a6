r"""SIRD epidemic with a time-varying contact rate :math:`\beta(t)`, for the Simformer.

The function-valued-parameter task of the Simformer paper (Gloeckler et al., ICML
2024, appendix). On :math:`t \in [0, 50]`: recovery and death rates
:math:`\gamma, \delta \sim U(0, 0.5)`, initially infected :math:`I_0 \sim U(0, 0.2)`
and the contact rate :math:`\beta(t) = \mathrm{sigmoid}(f(t))` with
:math:`f \sim GP(0, k)`, :math:`k(s, t) = 2.5^2 \exp(-(s - t)^2 / (2 \cdot 7^2))`;

.. math::
    \dot S = -\beta S I, \quad \dot I = \beta S I - (\gamma + \delta) I, \quad
    \dot R = \gamma I, \quad \dot D = \delta I,

from :math:`S = 1` (the paper's; so :math:`S + I + R + D = 1 + I_0`), :math:`I = I_0`,
:math:`R = D = 0`. I, R and D are observed with log-normal noise
:math:`x = y \exp(0.05 \varepsilon)`; S is not observed.

Choices:

- :math:`f` is drawn on :data:`GRID` (101 times, spacing 0.5) with the Cholesky
  factor of the kernel plus ``1e-6 k(0)`` on the diagonal; between grid times it is
  linear, and :math:`\beta = \mathrm{sigmoid}(f)` everywhere (ODE, tokens and plots
  use this one :math:`\beta`).
- RK4 in float64 with step 0.1 (5 steps per grid interval: each step lies in one
  linear piece of :math:`f`); between steps the cubic Hermite interpolant of the
  states and their derivatives. Both are linear in right-hand sides that sum to zero,
  so :math:`S + I + R + D` is conserved to rounding. Against scipy's DOP853
  (``rtol=1e-11``), three prior draws: largest error 1.3e-8, relative error of I, R,
  D at most 5e-6 (the noise is 5e-2).
- I, R and D each have their own 1 to 15 uniform random times in (0, 50] (float32,
  sorted, NaN-padded at the end of the row, NaN time = padding).
- :math:`\beta` is given at 5 to 15 uniform random times per simulation (its
  tokens, time as metadata), so that the Simformer learns it as a function of time
  and can be queried at any times. (Both counts are options of
  :func:`simulate_sird`; ``docs/benchmarks/simformer_sird.md`` uses 1-10 and 5-10.)
- The Simformer learns :math:`f = \mathrm{logit}\,\beta` (Gaussian prior) and log I,
  log R, log D (Gaussian noise) by default; ``log_data`` and ``logit_beta`` switch to
  the natural values. :data:`SIRD_VARIABLES` names the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Generator, Tensor

from sbi_allinone.simformer import Simformer, Variables

__all__ = [
    "GRID",
    "OBSERVED",
    "PRIOR_UPPER",
    "SIRD_VARIABLES",
    "SIRDSimulations",
    "gp_kernel",
    "interpolate",
    "observation_inputs",
    "random_times",
    "sample_sird_prior",
    "simformer_inputs",
    "simulate_sird",
    "sird_states",
    "train_sird_simformer",
]

T_MAX = 50.0
GRID = torch.linspace(0.0, T_MAX, 101, dtype=torch.float64)
"""The 101 times in ``[0, 50]`` at which ``beta`` and the states are simulated."""
LENGTH_SCALE, GP_STD, JITTER = 7.0, 2.5, 1e-6
PRIOR_UPPER = {"gamma": 0.5, "delta": 0.5, "i0": 0.2}  # uniform priors on (0, upper)
NOISE_SD = 0.05
STEP = 0.1  # RK4 step: 5 per grid interval
OBSERVED = ("I", "R", "D")  # indices 1, 2, 3 of the states (S, I, R, D)
SIRD_VARIABLES = Variables(
    theta={"gamma": 1, "delta": 1, "i0": 1, "beta": "series"},
    x={name: "series" for name in OBSERVED},
)
"""The Simformer's variables: three scalar rates, ``beta`` a series parameter, and
I, R, D series data."""


@dataclass(frozen=True)
class SIRDSimulations:
    """Simulations: parameters, the true contact rate and the observations.

    Args:
        parameters: ``(N, 3)`` columns gamma, delta, I0.
        logit_beta: ``(N, 101)`` :math:`f = \\mathrm{logit}\\,\\beta` on :data:`GRID`.
        beta_times: ``(N, Kb)`` times at which beta is given for training (NaN =
            padding).
        values: ``"I"``, ``"R"``, ``"D"`` to noisy ``(N, K)`` values (NaN = padding).
        times: The same names to their ``(N, K)`` times (NaN exactly at padding).
    """

    parameters: Tensor
    logit_beta: Tensor
    beta_times: Tensor
    values: dict[str, Tensor]
    times: dict[str, Tensor]

    def beta(self, times: Tensor) -> Tensor:
        """``beta`` at ``(K,)``, ``(1, K)`` or ``(N, K)`` times: ``(N, K)``, NaN at
        NaN times."""
        return torch.sigmoid(interpolate(GRID, self.logit_beta, times))

    def rows(self, index: Tensor | slice | int) -> SIRDSimulations:
        """The simulations of ``index`` (an int keeps a batch of 1)."""
        index = slice(index, index + 1) if isinstance(index, int) else index
        return SIRDSimulations(
            self.parameters[index], self.logit_beta[index], self.beta_times[index],
            {k: v[index] for k, v in self.values.items()},
            {k: v[index] for k, v in self.times.items()},
        )  # fmt: skip


def gp_kernel(s: Tensor, t: Tensor) -> Tensor:
    """The prior covariance of :math:`f`: ``(len(s), len(t))`` for 1-d times."""
    return GP_STD**2 * torch.exp(-((s[:, None] - t[None]) ** 2) / (2 * LENGTH_SCALE**2))


def sample_sird_prior(
    num: int, generator: Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Prior draws.

    Args:
        num: Number of draws ``N``.
        generator: Random generator (``None``: torch's global one).

    Returns:
        ``(N, 3)`` gamma, delta, I0 and ``(N, 101)`` :math:`f` on :data:`GRID`, both
        float64.
    """
    upper = torch.tensor(list(PRIOR_UPPER.values()), dtype=torch.float64)
    parameters = upper * torch.rand(num, 3, generator=generator, dtype=torch.float64)
    covariance = gp_kernel(GRID, GRID) + JITTER * GP_STD**2 * torch.eye(len(GRID))
    cholesky = torch.linalg.cholesky(covariance)
    normal = torch.randn(num, len(GRID), generator=generator, dtype=torch.float64)
    return parameters, normal @ cholesky.T


def random_times(
    num: int, low: int, high: int, generator: Generator | None = None
) -> Tensor:
    """Sorted uniform times in (0, 50], a uniform number of them per row.

    Args:
        num: Number of rows ``N``.
        low: Least number of times per row.
        high: Most number of times per row.
        generator: Random generator (``None``: torch's global one).

    Returns:
        ``(N, high)`` times, NaN-padded at the end of each row.
    """
    counts = torch.randint(low, high + 1, (num, 1), generator=generator)
    times = T_MAX * torch.rand(num, high, generator=generator, dtype=torch.float64)
    times = times.float().clamp(1e-6, T_MAX).sort(dim=1).values
    return times.masked_fill(torch.arange(high) >= counts, torch.nan)


def interpolate(grid: Tensor, values: Tensor, times: Tensor) -> Tensor:
    """Piecewise-linear interpolation, constant beyond the grid's ends.

    Args:
        grid: ``(G,)`` ascending times.
        values: ``(N, G)`` values at ``grid``.
        times: ``(K,)``, ``(1, K)`` or ``(N, K)`` times (NaN passes through).

    Returns:
        ``(N, K)`` values, in the dtype of ``values``.
    """
    grid = grid.to(values.dtype)
    times = torch.atleast_2d(torch.as_tensor(times).to(values.dtype))
    times = times.expand(values.shape[0], -1)
    clamped = times.nan_to_num(0.0).clamp(grid[0], grid[-1]).contiguous()
    index = torch.searchsorted(grid, clamped, right=True).clamp(1, len(grid) - 1) - 1
    weight = (clamped - grid[index]) / (grid[index + 1] - grid[index])
    out = values.gather(1, index) * (1 - weight) + values.gather(1, index + 1) * weight
    return out.masked_fill(torch.isnan(times), torch.nan)


def _rhs(y: Tensor, beta: Tensor, gamma: Tensor, delta: Tensor) -> Tensor:
    """``dy/dt`` of states ``y`` ``(N, 4)``, rates ``(N,)``."""
    infection = beta * y[:, 0] * y[:, 1]
    removal = y[:, 1:2] * torch.stack([gamma, delta], 1)
    return torch.cat(
        [torch.stack([-infection, infection - removal.sum(1)], 1), removal], 1
    )


def _trajectory(
    parameters: Tensor, logit_beta: Tensor, grid: Tensor
) -> tuple[Tensor, Tensor]:
    """States and derivatives ``(N, 4, steps + 1)`` at every RK4 step (float64)."""
    parameters, steps = parameters.double(), round(T_MAX / STEP)
    half = torch.linspace(0.0, T_MAX, 2 * steps + 1, dtype=torch.float64)
    beta = torch.sigmoid(interpolate(grid, logit_beta.double(), half))
    gamma, delta, i0 = parameters.unbind(1)
    y = torch.stack([torch.ones_like(i0), i0, 0 * i0, 0 * i0], 1)
    states, slopes = [y], [_rhs(y, beta[:, 0], gamma, delta)]
    for n in range(steps):
        b1, b2 = beta[:, 2 * n + 1], beta[:, 2 * n + 2]
        k1 = slopes[-1]
        k2 = _rhs(y + 0.5 * STEP * k1, b1, gamma, delta)
        k3 = _rhs(y + 0.5 * STEP * k2, b1, gamma, delta)
        k4 = _rhs(y + STEP * k3, b2, gamma, delta)
        y = y + STEP / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        states.append(y)
        slopes.append(_rhs(y, b2, gamma, delta))
    return torch.stack(states, 2), torch.stack(slopes, 2)


def sird_states(
    parameters: Tensor, logit_beta: Tensor, times: Tensor, grid: Tensor = GRID
) -> Tensor:
    """Noise-free states S, I, R, D at any times.

    Args:
        parameters: ``(N, 3)`` gamma, delta, I0.
        logit_beta: ``(N, G)`` :math:`f` at ``grid`` (linear in between).
        times: ``(K,)``, ``(1, K)`` or ``(N, K)`` times in [0, 50] (NaN passes
            through).
        grid: ``(G,)`` ascending times of ``logit_beta``; default :data:`GRID`.

    Returns:
        ``(N, 4, K)`` float64 states.
    """
    states, slopes = _trajectory(parameters, logit_beta, grid)
    times = torch.atleast_2d(torch.as_tensor(times, dtype=torch.float64))
    times = times.expand(len(parameters), -1)
    position = times.nan_to_num(0.0).clamp(0.0, T_MAX) / STEP
    index = position.floor().long().clamp(max=states.shape[2] - 2)
    u = (position - index)[:, None]
    index = index[:, None].expand(-1, 4, -1)
    y0, y1 = states.gather(2, index), states.gather(2, index + 1)
    d0, d1 = slopes.gather(2, index), slopes.gather(2, index + 1)
    u2, u3 = u * u, u * u * u
    out = (2 * u3 - 3 * u2 + 1) * y0 + (3 * u2 - 2 * u3) * y1
    out = out + STEP * ((u3 - 2 * u2 + u) * d0 + (u3 - u2) * d1)
    return out.masked_fill(torch.isnan(times)[:, None], torch.nan)


def simulate_sird(
    num: int,
    generator: Generator | None = None,
    points: tuple[int, int] = (1, 15),
    beta_points: tuple[int, int] = (5, 15),
    noise: bool = True,
) -> SIRDSimulations:
    """Prior draws and their observations.

    Args:
        num: Number of simulations ``N``.
        generator: Random generator (``None``: torch's global one).
        points: Least and most observed times per compartment.
        beta_points: Least and most times at which beta is given for training.
        noise: Multiplicative log-normal noise (``False``: the exact states).

    Returns:
        The simulations (values float32).
    """
    parameters, logit_beta = sample_sird_prior(num, generator)
    beta_times = random_times(num, *beta_points, generator)
    times = {name: random_times(num, *points, generator) for name in OBSERVED}
    stacked = torch.cat([times[name] for name in OBSERVED], 1)
    states = sird_states(parameters, logit_beta, stacked)
    values = {}
    for compartment, name in enumerate(OBSERVED, start=1):
        start = (compartment - 1) * points[1]
        y = states[:, compartment, start : start + points[1]]
        if noise:
            eps = torch.randn(y.shape, generator=generator, dtype=torch.float64)
            y = y * torch.exp(NOISE_SD * eps)
        values[name] = y.float()
    return SIRDSimulations(parameters, logit_beta, beta_times, values, times)


def simformer_inputs(
    sims: SIRDSimulations, log_data: bool = True, logit_beta: bool = True
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """Arguments of ``Simformer.append_simulations`` (:data:`SIRD_VARIABLES`).

    Args:
        sims: Simulations.
        log_data: Learn log I, log R, log D (else the values).
        logit_beta: Learn :math:`f = \\mathrm{logit}\\,\\beta` (else beta).

    Returns:
        ``theta`` (gamma, delta, i0 ``(N, 1)``; beta ``(N, Kb)`` at
        ``sims.beta_times``), ``x`` (``(N, K)`` per compartment) and ``metadata``
        (``{"time": ...}`` of beta and the compartments).
    """
    f = interpolate(GRID, sims.logit_beta, sims.beta_times)
    beta = f if logit_beta else torch.sigmoid(f)
    columns = sims.parameters.float().split(1, 1)
    theta = dict(zip(PRIOR_UPPER, columns, strict=True))
    theta["beta"] = beta.float()
    x, metadata = observation_inputs(sims, sims.beta_times, log_data)
    return theta, x, metadata


def observation_inputs(
    sims: SIRDSimulations, beta_times: Tensor, log_data: bool = True
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """Arguments ``x`` and ``metadata`` of ``SeriesPosterior.sample``.

    Args:
        sims: Observations (``sims.rows(i)`` for one of them).
        beta_times: ``(Q,)`` or ``(N, Q)`` times to query beta at (each one a
            sampled token).
        log_data: As in :func:`simformer_inputs`.

    Returns:
        ``x`` (each compartment's ``(N, K)`` values or their logs) and
        ``metadata`` ``{"time": {"beta": (N, Q), "I": ..., "R": ..., "D": ...}}``.
    """
    beta_times = torch.as_tensor(beta_times).float()
    if beta_times.ndim == 1:
        beta_times = beta_times.expand(len(sims.parameters), -1)
    x = {k: v.log() if log_data else v for k, v in sims.values.items()}
    return x, {"time": {"beta": beta_times, **sims.times}}


def train_sird_simformer(
    sims: SIRDSimulations,
    num_steps: int | None = None,
    log_data: bool = True,
    logit_beta: bool = True,
    **kwargs: object,
) -> Simformer:
    """A Simformer on :data:`SIRD_VARIABLES`, trained on ``sims``.

    Args:
        sims: Training simulations.
        num_steps: Optimizer steps (``None``: the Simformer's default).
        log_data: As in :func:`simformer_inputs`.
        logit_beta: As in :func:`simformer_inputs`.
        kwargs: ``net_kwargs``, ``training_batch_size``, ... (the first to
            ``Simformer``, the rest to ``train``).

    Returns:
        The trained Simformer (posterior: ``.build_posterior()``).
    """
    net_kwargs = kwargs.pop("net_kwargs", None)
    inference = Simformer(
        variables=SIRD_VARIABLES, show_progress_bars=False, net_kwargs=net_kwargs
    )
    theta, x, metadata = simformer_inputs(sims, log_data, logit_beta)
    inference.append_simulations(theta, x, metadata=metadata)
    inference.train(num_steps=num_steps, **kwargs)
    return inference
