r"""A second-order multistep solver of the probability-flow ODE: one call a step.

The ODE :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma` is linear in :math:`x` apart
from the denoiser. With :math:`\lambda = -\log\sigma` and :math:`u = x/\sigma` it
reads :math:`du/d\lambda = e^{\lambda} D`, so, exactly,

.. math::
    x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i} x_i
      + \sigma_{i+1} \int_{\lambda_i}^{\lambda_{i+1}} e^{\lambda} D(\lambda)\,d\lambda .

Only :math:`D` along the path is approximated. Constant :math:`D = D_i` gives the
first-order update :math:`x_{i+1} = r x_i + (1 - r) D_i`, :math:`r =
\sigma_{i+1}/\sigma_i` (DDIM's). Linear in :math:`\lambda` through the previous
step's :math:`D_{i-1}` adds the integral of the slope, which to second order in
:math:`h = \lambda_{i+1} - \lambda_i` is

.. math::
    (1 - r)\,\frac{h}{2}\,\frac{D_i - D_{i-1}}{h_{i-1}},
    \qquad h_{i-1} = \lambda_i - \lambda_{i-1}

(DPM-Solver++'s 2M update, Lu et al. 2022). The exact integral of the linear
extrapolation, :math:`(h - 1 + e^{-h})`, in place of :math:`(1 - r)h/2`, is second
order too but extrapolates further on the first, long steps: on a 2-D Gaussian with
its exact denoiser it inflated the variance by 4.8 % at 32 calls, this form by 3.5 %
(Heun: 12.5 % at 31 calls). Heun's method calls the network twice per step; this
one reuses the last call, so at a given number of calls it takes twice the steps.
The first step is first order; the last, to :math:`\sigma = 0`, returns :math:`D`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbi_allinone.diffusion.stochastic import Denoiser

__all__ = ["multistep"]


@torch.no_grad()
def multistep(
    denoise: Denoiser, x: Tensor, sigmas: Tensor, latent: Tensor | None = None
) -> Tensor:
    """Integrate the probability-flow ODE through ``sigmas`` and to 0.

    Args:
        denoise: The denoiser, as for
            :func:`~sbi_allinone.diffusion.stochastic.sample_stochastic`.
        x: ``(batch, dim)`` state at ``sigmas[0]``; only ``latent`` entries move.
        sigmas: ``(steps,)`` descending positive noise levels; a last step goes
            from ``sigmas[-1]`` to 0 (``steps`` network calls in all).
        latent: ``(batch, dim)`` booleans of the integrated entries (default all).

    Returns:
        ``(batch, dim)`` state at :math:`\\sigma = 0`.
    """
    if sigmas.ndim != 1 or len(sigmas) < 1 or not (sigmas > 0).all():
        raise ValueError("`sigmas` must be a 1-D tensor of positive noise levels.")
    latent = torch.ones_like(x, dtype=torch.bool) if latent is None else latent
    # The schedule as Python floats: one transfer from the grid's device.
    sigmas = sigmas.double()
    lambdas = (-sigmas.log()).tolist()
    sigmas = sigmas.tolist()
    previous = None
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, torch.full_like(x[:, :1], sigmas[i]))
        ratio = sigmas[i + 1] / sigmas[i]
        step = ratio * x + (1 - ratio) * denoised
        if previous is not None:
            h = lambdas[i + 1] - lambdas[i]
            slope = (denoised - previous) / (lambdas[i] - lambdas[i - 1])
            step = step + (1 - ratio) * h / 2 * slope
        x, previous = torch.where(latent, step, x), denoised
    # The last step, to sigma = 0, is the denoiser's output.
    denoised = denoise(x, torch.full_like(x[:, :1], sigmas[-1]))
    return torch.where(latent, denoised, x)
