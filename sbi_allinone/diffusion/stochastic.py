r"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2), with guidance hooks.

Each step first adds fresh noise to raise the noise level from :math:`\sigma_i` to
:math:`\hat\sigma = (1 + \gamma)\sigma_i` (the forward process, exact), then takes a
Heun step of the probability-flow ODE :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma`
from :math:`\hat\sigma` to :math:`\sigma_{i+1}` (an Euler step to
:math:`\sigma = 0` at the end). With an exact denoiser every step keeps the right
marginal up to Heun's error; the injected noise lets it correct earlier errors,
which a guided score needs. (Euler–Maruyama on the reverse SDE was measured on a
Gaussian: +20 % variance at 50 steps, +5 % at 200, +1 % at 800.)

Guidance adds ``correction(x, denoised, sigma, step_variance)`` to the score
:math:`(D - x)/\sigma^2`, i.e. subtracts :math:`\sigma\,\text{correction}` from the
ODE field; ``step_variance`` :math:`= \hat\sigma(\hat\sigma - \sigma_{i+1})` is the
factor by which one step moves a sample per unit of correction. ``recurrence``
repeats every step, re-noising back from :math:`\sigma_{i+1}` to :math:`\sigma_i`
in between (self-recurrence). With ``differentiate``, the denoiser runs under
autograd with ``x`` requiring gradients, so that the correction can differentiate
its output with respect to ``x`` (guidance through the network).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["sample_stochastic"]

Denoiser = Callable[[Tensor, Tensor], Tensor]
Correction = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

MAX_CHURN = math.sqrt(2) - 1


def _check_sampler_arguments(recurrence: int, churn: float) -> None:
    if recurrence < 1:
        raise ValueError(f"`recurrence` must be at least 1, got {recurrence}.")
    if not 0.0 <= churn <= MAX_CHURN:
        raise ValueError(f"`churn` must be in [0, sqrt(2) - 1], got {churn}.")


@torch.no_grad()
def sample_stochastic(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    latent: Tensor | None = None,
    correction: Correction | None = None,
    recurrence: int = 1,
    churn: float = MAX_CHURN,
    differentiate: bool = False,
) -> Tensor:
    """Run EDM's stochastic sampler through the noise levels ``sigmas`` and to 0.

    Args:
        denoise: ``denoise(x, sigma) -> D`` with ``x`` ``(batch, dim)`` and
            ``sigma`` ``(batch, 1)``.
        x: ``(batch, dim)`` start at ``sigmas[0]``; entries outside ``latent`` are
            kept as given.
        sigmas: ``(steps + 1,)`` descending positive noise levels; a last step
            goes from ``sigmas[-1]`` to 0.
        latent: ``(batch, dim)`` booleans of the sampled entries (default all).
        correction: Added to the score, ``correction(x, denoised, sigma,
            step_variance) -> (batch, dim)``.
        recurrence: Times each step is done (at least 1).
        churn: :math:`\\gamma`, the relative rise of the noise level before each
            step, in ``[0, sqrt(2) - 1]`` (0: the deterministic Heun sampler).
        differentiate: Pass ``correction`` an ``x`` that requires gradients and
            the denoiser's output with its autograd graph.

    Returns:
        ``(batch, dim)`` samples.
    """
    _check_sampler_arguments(recurrence, churn)
    if latent is None:
        latent = torch.ones_like(x, dtype=torch.bool)
    sigmas = torch.cat([sigmas.to(x), x.new_zeros(1)])

    def renoise(x: Tensor, variance: Tensor) -> Tensor:
        return torch.where(latent, x + variance.sqrt() * torch.randn_like(x), x)

    def field(x: Tensor, sigma: Tensor, step_variance: Tensor) -> Tensor:
        column = sigma.expand(x.shape[0], 1)
        if correction is None:
            return torch.where(latent, (x - denoise(x, column)) / sigma, 0.0)
        with torch.set_grad_enabled(differentiate):
            x_in = x.detach().requires_grad_(differentiate)
            denoised = denoise(x_in, column)
            push = correction(x_in, denoised, column, step_variance)
        slope = (x - denoised.detach()) / sigma - sigma * push
        return torch.where(latent, slope, 0.0)

    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        raised = sigma * (1 + churn)
        step_variance = raised * (raised - sigma_next)
        for repetition in range(recurrence):
            if repetition:
                x = renoise(x, sigma**2 - sigma_next**2)
            x_raised = renoise(x, raised**2 - sigma**2)
            h = sigma_next - raised
            slope = field(x_raised, raised, step_variance)
            x = x_raised + h * slope
            if sigma_next > 0:
                slope_next = field(x, sigma_next, step_variance)
                x = x_raised + h / 2 * (slope + slope_next)
    return x
