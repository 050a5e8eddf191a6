r"""Sampling a PR-preserving inflationary flow with one network call a step.

With every direction inflating at the same rate (``g_i = 0``), the unscaled state
:math:`\tilde x = z / \alpha(t)` is a variance-exploding diffusion with one noise
level :math:`\sigma(t) = \sqrt{\gamma_0 e^{\rho t}}`, and the scaled pfODE is the EDM
ODE :math:`d\tilde x/d\sigma = (\tilde x - D(\tilde x; \sigma))/\sigma` in disguise:
with :math:`z = \alpha \tilde x` and :math:`\dot\sigma/\sigma = \rho/2`,

.. math::
    \dot z = (\dot\alpha/\alpha + \rho/2)\, z - \alpha\,\tfrac{\rho}{2}\, D,

which is :meth:`InflationaryFlowEstimator.drift`. So the third-order multistep solver
of the diffusion core (:func:`~sbi_allinone.diffusion.multistep`, one denoiser call a
step, against Heun's two) integrates the same flow. Its last call returns the
denoised state at :math:`\sigma(t_{min})`, the clean end.

The grid: one step from :math:`\sigma(T)` (40 at the defaults) to 5 times the
largest data scale, where the denoiser is still the posterior mean to within about
4 %, then uniform in :math:`\log\sigma` (uniform in :math:`t`, Heun's grid) down to
:math:`\sigma(t_{min})`. On an exact Gaussian model this halved the variance error
at 16-24 calls; on gaussian_linear at 1 000 simulations it took C2ST from 0.675 to
0.666 at 24 calls, and it was equal or better on two_moons, gaussian_mixture and sir
(``docs/benchmarks/2026-12-02-iflow-sampler/``).

A PR-reducing schedule inflates directions at different rates: no single noise
level, so it keeps Heun's method.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from sbi_allinone.diffusion.multistep import multistep
from sbi_allinone.diffusion.ode import log_grid
from sbi_allinone.inflationary.schedule import InflationarySchedule

__all__ = [
    "CACHE_FRIENDLY_ROWS",
    "DEFAULT_SAMPLE_STEPS",
    "DEFAULT_STEPS",
    "check_sample_solver",
    "has_scalar_noise",
    "multistep_latent_to_pca",
]

#: Rows per sampler run. Runs of 2 000 keep the denoiser's 64-wide activations in a
#: CPU's L2 cache: 10 000 two_moons samples took 0.26 s against 0.36 s in one run
#: (1 000 rows: 0.31 s; one thread, 20 calls).
CACHE_FRIENDLY_ROWS = 2_000

Solver = Literal["heun", "adaptive"]
SampleSolver = Literal["heun", "adaptive", "multistep"]


#: Default Heun steps per schedule. 64 for a PR-preserving one (the paper's images
#: use 256; 64 reach the same C2ST on slcp, see the README). The compressed
#: directions of a PR-reducing schedule contract at a rate of about one per unit
#: time, which steps of T/64 = 0.33 follow with a local error of 2-3% per step; 256
#: steps bring that down 64-fold. On gaussian_linear (prior standard deviation 0.32)
#: with 5 of 10 directions kept, the round trip theta -> z -> theta was off by 8e-3
#: on average (4e-2 at most) with 64 steps, 1.2e-4 (6.5e-4) with 256.
DEFAULT_STEPS = {"prp": 64, "prr": 256}

#: Default steps of ``sample`` per schedule and solver. Samples need less accuracy
#: than densities: on two_moons at 1 000 simulations (``docs/benchmarks/
#: 2026-12-02-iflow-cost/``, five trained models, observations 1-3) 32 Heun steps
#: were within 0.006 of 64 in C2ST or better, 16 steps 0.01-0.03 worse. The
#: third-order multistep solver at 24 calls on a grid uniform in log noise matched
#: 32 Heun steps (63 calls) on two_moons, gaussian_linear and gaussian_mixture
#: (``docs/benchmarks/2026-12-02-iflow-sampler/``), 16 calls lost 0.006-0.014;
#: with the first step to ``FIRST_STEP_TO``, 20 calls were as good as 24 on the
#: uniform grid (and 48 calls no better than 24 on two_moons at 10 000
#: simulations). A PR-reducing schedule samples with its ``steps``.
DEFAULT_SAMPLE_STEPS = {"prp": 32, "prr": None, "multistep": 20}


#: Where the multistep sampler's first step goes, in units of the largest data
#: scale (``None``: a grid uniform in log noise throughout); see :func:`noise_levels`.
FIRST_STEP_TO: float | None = 5.0


def check_sample_solver(
    sample_solver: str, sample_steps: int | None = None, scalar_noise: bool = True
) -> None:
    """Raise if ``sample_solver`` is unknown, has too few ``sample_steps`` (``None``:
    not checked), or is the multistep solver on a schedule without one noise level
    (``scalar_noise=False``, see :func:`has_scalar_noise`)."""
    if sample_solver not in get_args(SampleSolver):
        raise ValueError(
            f"`sample_solver` must be one of {get_args(SampleSolver)}, got "
            f"{sample_solver!r}."
        )
    if sample_steps is not None and sample_steps < 1 + (sample_solver == "multistep"):
        raise ValueError(f"`sample_steps` is too small: {sample_steps}.")
    if sample_solver == "multistep" and not scalar_noise:
        raise ValueError(
            "`sample_solver='multistep'` needs a PR-preserving schedule "
            "(schedule='prp', one inflation rate); use 'heun' or 'adaptive'."
        )


def has_scalar_noise(schedule: InflationarySchedule) -> bool:
    """Whether every direction inflates at the same rate (a PR-preserving one)."""
    return bool((schedule.g == schedule.g[0]).all())


def noise_levels(
    schedule: InflationarySchedule, calls: int, first_step_to: float | None = None
) -> Tensor:
    """``(calls,)`` descending noise levels from ``sigma(T)`` to ``sigma(t_min)``,
    ``sigma(t) = sqrt(gamma0 * exp(rate * t))``, uniform in log noise (in ``t``).

    With ``first_step_to`` (in units of the largest data scale ``sqrt(xi)``), the
    levels above that point get one step per 16 calls (at least one) and the others
    are uniform in log noise below it; both parts refine as ``calls`` grows.
    """
    rate = float(schedule.rate()[0])
    ends = torch.tensor([schedule.t_max, schedule.t_min], dtype=torch.float64)
    high, low = (schedule.gamma0 * torch.exp(rate * ends)).sqrt().tolist()
    scale = None if first_step_to is None else first_step_to * schedule.xi**0.5
    return log_grid(high, low, calls, scale)


def multistep_latent_to_pca(
    net: torch.nn.Module,
    schedule: InflationarySchedule,
    z: Tensor,
    context: Tensor,
    calls: int,
) -> Tensor:
    """Scaled latents at ``T`` to standardized PCA coordinates at ``t_min``.

    Args:
        net: The preconditioned denoiser, ``net(x_tilde, t, context)`` with a
            ``(1, 1)`` time shared by the batch.
        schedule: A schedule with one inflation rate (see :func:`has_scalar_noise`).
        z: ``(B, D)`` scaled latents.
        context: ``(B, dim_y)`` embedded conditions.
        calls: Network calls (at least 2).

    Returns:
        ``(B, D)`` clean states in standardized PCA coordinates.
    """
    check_sample_solver("multistep", calls, has_scalar_noise(schedule))
    rate = float(schedule.rate()[0])

    def denoise(x_tilde: Tensor, sigma: Tensor) -> Tensor:
        # One time for the batch: the denoiser embeds it once.
        t = torch.log(sigma[:1] ** 2 / schedule.gamma0) / rate
        return net(x_tilde, t.reshape(1, 1), context)

    t_max = torch.full((1, 1), schedule.t_max).to(z)
    levels = noise_levels(schedule, calls, FIRST_STEP_TO)
    return multistep(denoise, z / schedule.alpha(t_max), levels, order=3)
