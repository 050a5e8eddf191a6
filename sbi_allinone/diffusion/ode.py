r"""Probability-flow ODE integration, divergences and the Gaussian base density.

A field ``field(t, x) -> dx/dt`` (``t`` a 0-d tensor, ``x`` ``(batch, dim)``) is
integrated with Heun's method on a given grid of times, or with zuko's adaptive
Dormand–Prince solver. :func:`integrate_with_divergence` also integrates the
divergence :math:`\nabla\cdot f` along the path, for the instantaneous change of
variables :math:`\log p_{t_0}(x_{t_0}) = \log p_{t_1}(x_{t_1}) + \int_{t_0}^{t_1}
\nabla\cdot f\,dt`: exactly (one backward pass per dimension) or by Hutchinson's
estimator with a Rademacher probe. :func:`edm_grid` is EDM's noise-level grid
(Karras et al. 2022, Eq. 5); :func:`log_grid` is uniform in log noise (optionally
below one long first step), the multistep solver's grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from zuko.utils import odeint

__all__ = [
    "edm_grid",
    "field_and_divergence",
    "gaussian_log_prob",
    "heun",
    "integrate_adaptive",
    "integrate_with_divergence",
    "log_grid",
    "rademacher",
]

Field = Callable[[Tensor, Tensor], Tensor]


def edm_grid(
    sigma_min: float,
    sigma_max: float,
    steps: int,
    rho: float = 7.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """EDM's ``steps + 1`` noise levels from ``sigma_max`` down to ``sigma_min``.

    :math:`\\sigma_i = (\\sigma_{max}^{1/\\rho} + \\tfrac{i}{N}(\\sigma_{min}^{1/\\rho}
    - \\sigma_{max}^{1/\\rho}))^\\rho`, ``i = 0..N``: steps shrink towards the data,
    where the field changes fastest.

    Args:
        sigma_min: Last noise level.
        sigma_max: First noise level.
        steps: Number of intervals ``N`` (at least 1).
        rho: Grid exponent (EDM: 7; 1 gives a uniform grid).
        device: Device of the grid (default: torch's default device); a sampler
            passes its state's.

    Returns:
        ``(steps + 1,)`` float64 noise levels, descending.

    Example:
        >>> edm_grid(0.002, 80.0, steps=4)
        tensor([8.0000e+01, 1.7528e+01, 2.5152e+00, 1.6975e-01, 2.0000e-03],
               dtype=torch.float64)
    """
    if steps < 1:
        raise ValueError(f"`steps` must be at least 1, got {steps}.")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"Need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}."
        )
    i = torch.arange(steps + 1, dtype=torch.float64, device=device) / steps
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (high + i * (low - high)) ** rho


def log_grid(
    sigma_max: float,
    sigma_min: float,
    levels: int,
    first_step_to: float | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``levels`` noise levels from ``sigma_max`` down to ``sigma_min``, uniform in
    log noise below ``first_step_to``.

    Above ``first_step_to`` (a few data scales) the denoiser returns little more
    than the conditional mean, so the levels there get one step per 16 levels (at
    least one) and the rest are spent where the field bends. On exact denoisers
    of Gaussians and Gaussian mixtures (scales 0.03-1, ``sigma_max = 80``) the
    second-order multistep solver at 24 calls on this grid, first step to 5, was
    closer to exact samples than at 32 calls on :func:`edm_grid`. A *learned*
    denoiser is least trained at the largest noise levels: there the long first
    step cost a Simformer 0.04 C2ST on one task of four, so the Simformer samples
    without it (``docs/benchmarks/simformer_sampling_steps.md``); the inflationary
    flow with it. Both parts refine as ``levels`` grows.

    Args:
        sigma_max: First noise level.
        sigma_min: Last noise level.
        levels: Number of levels (at least 2).
        first_step_to: Where the long first steps end (``None``, or not below
            ``sigma_max``: uniform in log noise throughout).
        device: Device of the grid (default: torch's default device).

    Returns:
        ``(levels,)`` float64 noise levels, descending.

    Example:
        >>> log_grid(80.0, 0.01, 4, first_step_to=5.0)
        tensor([8.0000e+01, 5.0000e+00, 2.2361e-01, 1.0000e-02], dtype=torch.float64)
    """
    if levels < 2:
        raise ValueError(f"`levels` must be at least 2, got {levels}.")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"Need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}."
        )
    if first_step_to is not None and not first_step_to > sigma_min:
        raise ValueError(
            f"`first_step_to` must exceed sigma_min={sigma_min}, got {first_step_to}."
        )
    high, low = math.log10(sigma_max), math.log10(sigma_min)
    top = high
    if first_step_to is not None and levels >= 4:
        top = min(high, math.log10(first_step_to))
    upper = 0 if top >= high else max(1, levels // 16)
    like = {"dtype": torch.float64, "device": device}
    above = torch.logspace(high, top, upper + 1, **like)[:-1]
    return torch.cat([above, torch.logspace(top, low, levels - upper, **like)])


def heun(field: Field, x: Tensor, times: Tensor) -> Tensor:
    """Integrate ``dx/dt = field(t, x)`` through ``times`` with Heun's method.

    A step that ends at ``t = 0`` is an Euler step (a field in noise level is
    singular there, EDM Alg. 1).

    Args:
        field: ``field(t, x) -> dx/dt``.
        x: ``(batch, dim)`` state at ``times[0]``.
        times: ``(steps + 1,)`` times, in either direction.

    Returns:
        ``(batch, dim)`` state at ``times[-1]``.
    """
    times = times.to(x)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        h = t_next - t
        slope = field(t, x)
        guess = x + h * slope
        if t_next == 0:
            x = guess
        else:
            x = x + h / 2 * (slope + field(t_next, guess))
    return x


def integrate_adaptive(
    field: Field, x: Tensor, t0: float, t1: float, atol: float, rtol: float
) -> Tensor:
    """Integrate from ``t0`` to ``t1`` with zuko's adaptive solver (no gradients)."""
    return odeint(field, x, t0, t1, phi=(), atol=atol, rtol=rtol)


def rademacher(like: Tensor) -> Tensor:
    """Random signs of ``like``'s shape (a Hutchinson probe)."""
    return torch.randint(0, 2, like.shape, device=like.device).to(like) * 2 - 1


def field_and_divergence(
    field: Field,
    t: Tensor,
    x: Tensor,
    probe: Tensor | None = None,
    dims: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """The field and its divergence at ``(t, x)``.

    Args:
        field: ``field(t, x) -> dx/dt``.
        t: 0-d time.
        x: ``(batch, dim)``.
        probe: Rademacher probe ``(batch, dim)`` for Hutchinson's estimate
            :math:`p^\\top (\\partial f / \\partial x)\\, p`; ``None``: exact.
        dims: Dimensions whose diagonal terms are summed by the exact divergence
            (default all); the probe should be zero outside them.

    Returns:
        ``(batch, dim)`` field (detached) and ``(batch,)`` divergence.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = field(t, x)
        if probe is not None:
            (vjp,) = torch.autograd.grad(f, x, probe)
            divergence = (vjp * probe).sum(-1)
        else:
            divergence = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
            for i in range(x.shape[1]) if dims is None else dims:
                (row,) = torch.autograd.grad(f[:, i].sum(), x, retain_graph=True)
                divergence = divergence + row[:, i]
    return f.detach(), divergence.detach()


def integrate_with_divergence(
    field: Field,
    x: Tensor,
    times: Tensor | None = None,
    probe: Tensor | None = None,
    dims: Sequence[int] | None = None,
    adaptive: tuple[float, float, float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Integrate the state and :math:`\\int \\nabla\\cdot f\\,dt` together.

    Args:
        field: ``field(t, x) -> dx/dt``.
        x: ``(batch, dim)`` initial state.
        times: Heun grid ``(steps + 1,)``; or ``None`` with ``adaptive``.
        probe: Hutchinson probe, or ``None`` for the exact divergence.
        dims: Dimensions of the exact divergence (default all).
        adaptive: ``(t0, t1, atol, rtol)`` for zuko's adaptive solver instead.

    Returns:
        ``(batch, dim)`` final state and ``(batch,)`` integrated divergence.
    """

    def augmented(t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return field_and_divergence(field, t, x, probe, dims)

    integral = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    if adaptive is not None:
        t0, t1, atol, rtol = adaptive
        return odeint(
            lambda t, x, _: augmented(t, x), (x, integral), t0, t1,
            phi=(), atol=atol, rtol=rtol,
        )  # fmt: skip
    times = times.to(x)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        h = t_next - t
        slope, divergence = augmented(t, x)
        guess = x + h * slope
        slope_next, divergence_next = augmented(t_next, guess)
        x = x + h / 2 * (slope + slope_next)
        integral = integral + h / 2 * (divergence + divergence_next)
    return x, integral


def gaussian_log_prob(
    z: Tensor, variance: Tensor, mask: Tensor | None = None
) -> Tensor:
    """:math:`\\log\\mathcal N(z; 0, \\mathrm{diag}(\\text{variance}))` per row.

    Args:
        z: ``(batch, dim)``.
        variance: ``(dim,)``, a scalar, or (with ``mask``) broadcastable to ``z``.
        mask: ``(batch, dim)`` booleans: only these entries count (a marginal).

    Returns:
        ``(batch,)`` log-densities.
    """
    if mask is None:
        variance = torch.broadcast_to(variance, z.shape[-1:])
        return -0.5 * (
            (z.square() / variance).sum(-1)
            + variance.log().sum()
            + z.shape[-1] * math.log(2 * math.pi)
        )
    terms = z.square() / variance + variance.log() + math.log(2 * math.pi)
    return -0.5 * torch.where(mask, terms, 0.0).sum(-1)
