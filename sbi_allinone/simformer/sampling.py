r"""Sampling any conditional of a trained Simformer, in standardized coordinates.

Latent variables start at :math:`\sigma_{max}` from :math:`\mathcal N(\mu, 1 +
\sigma_{max}^2)` (standardized data plus noise; :math:`\mu = D(v;
\sigma_{max})`, one network call) and are denoised down a grid of noise levels
(below); conditioned variables stay at
their values, missing ones are ignored by the attention masks.

- :func:`sample_ode`: the probability-flow ODE :math:`dv/d\sigma = (v - D(v;
  \sigma))/\sigma`, by the second-order multistep solver
  (:func:`~sbi_allinone.diffusion.multistep.multistep`: ``steps`` network
  evaluations, on a grid uniform in log noise, :data:`MULTISTEP_GRID`) or by
  Heun's method (EDM, Alg. 1, on EDM's grid; the last step, to :math:`\sigma = 0`,
  is an Euler step: ``2 steps - 1`` network evaluations).
- :func:`sample_sde`: EDM's stochastic sampler
  (:func:`~sbi_allinone.diffusion.stochastic.sample_stochastic`: fresh noise, then a
  Heun step), with guidance and self-recurrence.
- :func:`ode_log_prob`: the instantaneous change of variables along the ODE from
  :math:`\sigma_{min}` to :math:`\sigma_{max}`, exact divergence up to
  ``exact_below`` latents, Hutchinson above. The base density at
  :math:`\sigma_{max}` is :math:`\mathcal N(D(v; \sigma_{max}), 1 + \sigma_{max}^2)`:
  centred on the denoiser's estimate of the conditional mean :math:`\mu`. A
  centred base would be off by about :math:`|\mu| \cdot |v - \mu| /
  \sigma_{max}^2`, i.e. :math:`|\mu|\,/\sigma_{max}` nats (0.02 nats on the
  Gaussian of the tests at :math:`\sigma_{max} = 80`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbi_allinone.diffusion.multistep import multistep
from sbi_allinone.diffusion.ode import (
    edm_grid,
    gaussian_log_prob,
    heun,
    integrate_with_divergence,
    log_grid,
    rademacher,
)
from sbi_allinone.diffusion.stochastic import sample_stochastic
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.guidance import Guidance
from sbi_allinone.simformer.tokens import Tokens

__all__ = [
    "FIRST_STEP_TO",
    "MULTISTEP_GRID",
    "MULTISTEP_ORDER",
    "SOLVERS",
    "ode_log_prob",
    "sample_ode",
    "sample_sde",
]

SOLVERS = ("multistep", "heun")

#: Noise grid of the multistep solver: ``"log"`` (:func:`~sbi_allinone.diffusion.ode.
#: log_grid`, uniform in log noise from sigma_max; the default since 2026-12-03) or
#: ``"edm"`` (EDM's rho-grid, the default before; Heun always uses it). 24 calls on
#: the log grid were within 0.003 C2ST of 128 on EDM's grid on the four core tasks,
#: 32 on EDM's grid within 0.004 (``docs/benchmarks/simformer_sampling_steps.md``).
MULTISTEP_GRID = "log"

#: Order of the multistep solver (2: DPM-Solver++ 2M; 3: quadratic in log noise).
MULTISTEP_ORDER = 2

#: Where a long first step of the log grid ends, in standardized data units
#: (``None``: no long first step). With trained models a first step from 80 to 5
#: lost 0.03-0.05 C2ST on gaussian_linear: it weights the network's output at
#: sigma_max, which training almost never sees, by 0.94.
FIRST_STEP_TO: float | None = None


def _grid(estimator: SimformerEstimator, steps: int, like: Tensor) -> Tensor:
    """EDM's float64 grid of ``steps`` intervals, on the device of ``like``."""
    noise = estimator.noise
    return edm_grid(noise.sigma_min, noise.sigma_max, steps, device=like.device)


def _multistep_grid(estimator: SimformerEstimator, steps: int, like: Tensor) -> Tensor:
    """The ``steps`` noise levels of the multistep solver (:data:`MULTISTEP_GRID`)."""
    if MULTISTEP_GRID == "edm":
        return _grid(estimator, steps - 1, like)
    if MULTISTEP_GRID != "log":
        raise ValueError(
            f"`MULTISTEP_GRID` must be 'log' or 'edm', got {MULTISTEP_GRID!r}."
        )
    noise = estimator.noise
    return log_grid(
        noise.sigma_max, noise.sigma_min, steps, FIRST_STEP_TO, device=like.device
    )


def _initial(
    estimator: SimformerEstimator,
    values: Tensor,
    condition_mask: Tensor,
    missing: Tensor,
    tokens: Tokens | None = None,
) -> Tensor:
    r"""A draw from :math:`\mathcal N(\mu, 1 + \sigma_{max}^2)` for the latents.

    :math:`\mu = D(v; \sigma_{max})`, the denoiser's conditional mean, is the base
    density's centre in :func:`ode_log_prob` too. A centred start would leave a bias
    of about :math:`\mu\,\mathrm{sd}/\sigma_{max}` in the samples (0.04 for a
    mean of 0.7 at the VE noise levels' :math:`\sigma_{max} = 15`).
    """
    latent = ~(condition_mask | missing)
    sigma_max = estimator.noise.sigma_max
    noise = torch.randn_like(values) * (1 + sigma_max**2) ** 0.5
    v = torch.where(latent, noise, values)
    column = torch.full_like(values[:, :1], sigma_max)
    mean = estimator.denoise(v, column, condition_mask, missing, tokens)
    return torch.where(latent, noise + mean, values)


def _field(estimator, condition_mask: Tensor, missing: Tensor, tokens=None):  # noqa: ANN001,ANN202
    """``dv/dsigma`` of the probability-flow ODE; zero off the latents."""
    latent = ~(condition_mask | missing)

    def field(sigma: Tensor, v: Tensor) -> Tensor:
        column = sigma.expand(v.shape[0], 1)
        denoised = estimator.denoise(v, column, condition_mask, missing, tokens)
        return torch.where(latent, (v - denoised) / sigma, 0.0)

    return field


@torch.no_grad()
def sample_ode(
    estimator: SimformerEstimator,
    values: Tensor,
    condition_mask: Tensor,
    missing: Tensor,
    steps: int = 32,
    solver: str = "multistep",
    tokens: Tokens | None = None,
) -> Tensor:
    """Sample latents by the probability-flow ODE.

    Args:
        estimator: Trained denoiser.
        values: ``(batch, n)`` standardized values; only conditioned entries are read.
        condition_mask: ``(batch, n)``, ``True`` = conditioned.
        missing: ``(batch, n)``, ``True`` = missing (ignored).
        steps: Steps (at least 2), the last one to :math:`\\sigma = 0`.
        solver: ``"multistep"`` (one network call a step) or ``"heun"`` (two).
        tokens: Kind and metadata of each token; default one per variable.

    Returns:
        ``(batch, n)`` standardized samples (conditioned entries as given).
    """
    if steps < 2:
        raise ValueError(f"`steps` must be at least 2, got {steps}.")
    if solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {SOLVERS}, got {solver!r}.")
    latent = ~(condition_mask | missing)
    v = _initial(estimator, values, condition_mask, missing, tokens)
    if solver == "multistep":

        def denoise(v: Tensor, sigma: Tensor) -> Tensor:
            return estimator.denoise(v, sigma, condition_mask, missing, tokens)

        grid = _multistep_grid(estimator, steps, v)
        return multistep(denoise, v, grid, latent, order=MULTISTEP_ORDER)
    grid = _grid(estimator, steps - 1, v)
    times = torch.cat([grid, grid.new_zeros(1)])
    return heun(_field(estimator, condition_mask, missing, tokens), v, times)


@torch.no_grad()
def sample_sde(
    estimator: SimformerEstimator,
    values: Tensor,
    condition_mask: Tensor,
    missing: Tensor,
    steps: int = 128,
    guidance: Guidance | None = None,
    recurrence: int = 1,
) -> Tensor:
    """Sample latents with EDM's stochastic sampler.

    Args:
        estimator: Trained denoiser.
        values, condition_mask, missing: As :func:`sample_ode`.
        steps: Steps (at least 2), the last one to :math:`\\sigma = 0`.
        guidance: Constraints whose score correction is added (see
            :mod:`.guidance`), or ``None``.
        recurrence: Times every step is done; between repetitions the result is
            re-noised to the step's start (self-recurrence; 1 = plain sampler).

    Returns:
        ``(batch, n)`` standardized samples (conditioned entries as given).
    """
    if steps < 2:
        raise ValueError(f"`steps` must be at least 2, got {steps}.")
    latent = ~(condition_mask | missing)
    v = _initial(estimator, values, condition_mask, missing)

    def denoise(v: Tensor, sigma: Tensor) -> Tensor:
        return estimator.denoise(v, sigma, condition_mask, missing)

    correction = None if guidance is None else guidance.score_correction
    through_network = guidance is not None and guidance.through_network
    grid = _grid(estimator, steps - 1, v)
    return sample_stochastic(
        denoise, v, grid, latent, correction, recurrence, differentiate=through_network
    )


def ode_log_prob(
    estimator: SimformerEstimator,
    values: Tensor,
    condition_mask: Tensor,
    missing: Tensor,
    steps: int = 64,
    exact_below: int = 10,
    tokens: Tokens | None = None,
) -> Tensor:
    """Log-density of the latent entries of ``values`` given the conditioned ones.

    Args:
        estimator: Trained denoiser.
        values: ``(batch, n)`` standardized values (latent entries are evaluated).
        condition_mask: ``(batch, n)``, ``True`` = conditioned.
        missing: ``(batch, n)``, ``True`` = missing (marginalized).
        steps: Heun steps from ``sigma_min`` to ``sigma_max`` on the EDM grid.
        exact_below: Exact divergence up to this many latents, Hutchinson above.
        tokens: Token kinds and metadata (networks trained with ``variables``).

    Returns:
        ``(batch,)`` log-densities in standardized coordinates.
    """
    latent = ~(condition_mask | missing)
    exact = int(latent.sum(dim=1).max()) <= exact_below
    dims = torch.nonzero(latent.any(dim=0)).flatten().tolist()
    probe = None if exact else rademacher(values) * latent
    times = _grid(estimator, steps, values).flip(0)
    field = _field(estimator, condition_mask, missing, tokens)
    sigma_max = estimator.noise.sigma_max
    with torch.no_grad():
        v, integral = integrate_with_divergence(field, values, times, probe, dims)
        column = torch.full_like(values[:, :1], sigma_max)
        mean = estimator.denoise(v, column, condition_mask, missing, tokens)
    variance = values.new_tensor(1 + sigma_max**2)
    return gaussian_log_prob(v - mean, variance, mask=latent) + integral
