r"""A multistep solver of the probability-flow ODE, second or third order: one call
a step.

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

``order=3`` takes :math:`D` quadratic in :math:`\lambda` through the last three
calls (slope :math:`D'` and curvature :math:`D''` at :math:`\lambda_i` by divided
differences) and integrates it exactly:

.. math::
    x_{i+1} = r x_i + (1 - r) D_i + (h - 1 + r)\,D'
      + \tfrac{1}{2}(h^2 - 2h + 2 - 2r)\,D'' .

On a 2-D Gaussian with its exact denoiser and a uniform grid in :math:`\lambda` over
ten units (the inflationary flow's), the sampled variance was 0.7 % too large at 24
calls and 0.4 % at 32, against 2.7 % and 1.7 % at second order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbi_allinone.diffusion.stochastic import Denoiser

__all__ = ["multistep"]


@torch.no_grad()
def multistep(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    latent: Tensor | None = None,
    order: int = 2,
) -> Tensor:
    """Integrate the probability-flow ODE through ``sigmas`` and to 0.

    Args:
        denoise: The denoiser, as for
            :func:`~sbi_allinone.diffusion.stochastic.sample_stochastic`.
        x: ``(batch, dim)`` state at ``sigmas[0]``; only ``latent`` entries move.
        sigmas: ``(steps,)`` descending positive noise levels; a last step goes
            from ``sigmas[-1]`` to 0 (``steps`` network calls in all).
        latent: ``(batch, dim)`` booleans of the integrated entries (default all).
        order: 2 (DPM-Solver++ 2M) or 3 (quadratic in ``lambda``); the first steps
            use what history there is.

    Returns:
        ``(batch, dim)`` state at :math:`\\sigma = 0`.
    """
    if sigmas.ndim != 1 or len(sigmas) < 1 or not (sigmas > 0).all():
        raise ValueError("`sigmas` must be a 1-D tensor of positive noise levels.")
    if order not in (2, 3):
        raise ValueError(f"`order` must be 2 or 3, got {order}.")
    latent = torch.ones_like(x, dtype=torch.bool) if latent is None else latent
    # The schedule as Python floats: one transfer from the grid's device.
    sigmas = sigmas.double()
    lambdas = (-sigmas.log()).tolist()
    sigmas = sigmas.tolist()
    history: list[Tensor] = []  # the last calls' D, newest last
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, torch.full_like(x[:, :1], sigmas[i]))
        ratio = sigmas[i + 1] / sigmas[i]
        h = lambdas[i + 1] - lambdas[i]
        step = ratio * x + (1 - ratio) * denoised
        if history:
            slope = (denoised - history[-1]) / (lambdas[i] - lambdas[i - 1])
            if order == 2 or len(history) < 2:
                step = step + (1 - ratio) * h / 2 * slope
            else:
                step = step + _third_order(slope, history, lambdas, i, h, ratio)
        x = torch.where(latent, step, x)
        history = (history + [denoised])[-2:]
    # The last step, to sigma = 0, is the denoiser's output.
    denoised = denoise(x, torch.full_like(x[:, :1], sigmas[-1]))
    return torch.where(latent, denoised, x)


def _third_order(
    slope: Tensor, history: list[Tensor], lambdas: list[float], i: int, h: float,
    ratio: float,
) -> Tensor:  # fmt: skip
    """The slope and curvature terms of the ``order=3`` update at step ``i``."""
    back, back2 = lambdas[i] - lambdas[i - 1], lambdas[i - 1] - lambdas[i - 2]
    previous_slope = (history[-1] - history[-2]) / back2
    curvature = 2 * (slope - previous_slope) / (back + back2)
    slope_here = slope + back / 2 * curvature
    bend = (h * h - 2 * h + 2 - 2 * ratio) / 2
    return (h - 1 + ratio) * slope_here + bend * curvature
