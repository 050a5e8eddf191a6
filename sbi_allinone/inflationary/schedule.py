r"""The inflationary noise schedule (de Albuquerque and Pearson, NeurIPS 2024).

Everything lives in the PCA eigenbasis of the standardized variable, with
eigenvalues ``lambda_i``. Noise is added per principal direction with variance

    gamma_i(t) = gamma0 * exp(rho * (1 + g_i) * t),       t in [t_min, T],

and the state is rescaled by one global factor

    alpha(t) = 1 / sqrt(xi + gamma0 * exp(rho * (1 + g_max) * t)),

``xi`` the largest eigenvalue, so the scaled process stays of order one while the
noise inflates. ``g_i = 0`` for all ``i`` preserves the participation ratio (PR-P);
``g_i = 1`` on the top ``latent_dim`` directions and ``1 - gap`` on the others
reduces it (PR-R): those directions inflate more slowly and, after scaling, shrink
by about ``exp(-rho * gap * T / 2)``.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields, replace

import torch
from torch import Tensor, nn

from sbi_allinone.npe_plugin import check_keywords

__all__ = ["InflationarySchedule"]


@dataclass(frozen=True)
class ScheduleDefaults:
    """The schedule's defaults, defined once (used by :class:`InflationarySchedule`
    and :func:`sbi_allinone.inflationary_flow_nn`), as chosen for the benchmark
    record.

    ``gamma0`` is in units of the standardized parameters. The flow's samples are the
    posterior blurred by this noise, and a posterior is far narrower than the data
    the paper maps (its ``5e-4`` blurred the narrow component of gaussian_mixture,
    standard deviation 0.017 in these units, to 0.028); ``1e-6`` blurs by 1e-3.
    ``t_max`` inflates to the paper's final noise
    (``5e-4 * exp(15) = 1e-6 * exp(21.2)``).
    """

    gamma0: float = 1e-6
    rho: float = 1.0
    t_max: float = 21.2
    t_min: float = 1e-7


SCHEDULE_DEFAULTS = ScheduleDefaults()
#: The keywords of the noise parameters of :class:`InflationarySchedule`.
NOISE_KEYWORDS: tuple[str, ...] = tuple(
    field.name for field in fields(ScheduleDefaults)
)


class InflationarySchedule(nn.Module):
    """Per-dimension inflating noise and the global scaling.

    Args:
        eigenvalues: ``lambda_i`` ``(D,)``, descending (PCA of the standardized
            parameters).
        g: Inflation exponents ``g_i`` ``(D,)``.
        **noise: The noise parameters, fields of :class:`ScheduleDefaults` and
            defaulting to ``SCHEDULE_DEFAULTS``: ``gamma0`` (noise variance at
            ``t = 0``), ``rho`` (inflation rate), ``t_max`` (final time ``T``) and
            ``t_min`` (first time of the flow, the data end).
    """

    def __init__(self, eigenvalues: Tensor, g: Tensor, **noise: float) -> None:
        super().__init__()
        if eigenvalues.ndim != 1 or g.shape != eigenvalues.shape:
            raise ValueError(
                "`eigenvalues` and `g` must both be (D,), got "
                f"{tuple(eigenvalues.shape)} and {tuple(g.shape)}."
            )
        check_keywords("InflationarySchedule", noise, NOISE_KEYWORDS)
        gamma0, rho, t_max, t_min = astuple(replace(SCHEDULE_DEFAULTS, **noise))
        if not 0 <= t_min < t_max:
            raise ValueError(f"Need 0 <= t_min < t_max, got {t_min} and {t_max}.")
        if gamma0 <= 0 or rho <= 0:
            raise ValueError(
                f"`gamma0` and `rho` must be positive, got {gamma0}, {rho}."
            )
        self.register_buffer("eigenvalues", eigenvalues.clone())
        self.register_buffer("g", g.clone())
        self.gamma0, self.rho, self.t_max, self.t_min = gamma0, rho, t_max, t_min
        self.xi = float(eigenvalues.max())
        self.g_max = float(g.max())

    @classmethod
    def preserving(cls, eigenvalues: Tensor, **kwargs: float) -> InflationarySchedule:
        """PR-preserving schedule: ``g_i = 0`` for every direction."""
        return cls(eigenvalues, torch.zeros_like(eigenvalues), **kwargs)

    @classmethod
    def reducing(
        cls, eigenvalues: Tensor, latent_dim: int, gap: float = 1.02, **kwargs: float
    ) -> InflationarySchedule:
        """PR-reducing schedule to the top ``latent_dim`` principal directions.

        Args:
            eigenvalues: ``(D,)``, descending.
            latent_dim: Number of directions kept (``1 <= latent_dim < D``).
            gap: Inflation gap ``g_max - g_i`` of the compressed directions.
        """
        dim = eigenvalues.numel()
        if not 1 <= latent_dim < dim:
            raise ValueError(
                f"`latent_dim` must be between 1 and {dim - 1} for {dim} parameters, "
                f"got {latent_dim}."
            )
        if gap <= 0:
            raise ValueError(f"`gap` must be positive, got {gap}.")
        g = torch.full_like(eigenvalues, 1.0 - gap)
        g[:latent_dim] = 1.0
        return cls(eigenvalues, g, **kwargs)

    def rate(self) -> Tensor:
        """``rho * (1 + g_i)`` ``(D,)``: d log gamma_i / dt."""
        return self.rho * (1 + self.g)

    def gamma(self, t: Tensor) -> Tensor:
        """Noise variances ``(..., D)`` at times ``t`` ``(..., 1)``."""
        return self.gamma0 * torch.exp(self.rate() * t)

    def time_of_base_variance(self, variance: Tensor) -> Tensor:
        """Times (shape kept) at which the base variance ``gamma0 exp(rho t)``
        (``g_i = 0``) equals ``variance``, clipped to ``[t_min, T]``."""
        times = (variance.log() - math.log(self.gamma0)) / self.rho
        return times.clamp(self.t_min, self.t_max)

    def gamma_dot(self, t: Tensor) -> Tensor:
        """``d gamma / dt`` ``(..., D)``."""
        return self.rate() * self.gamma(t)

    def alpha(self, t: Tensor) -> Tensor:
        """Global scaling ``(..., 1)`` at times ``t`` ``(..., 1)``."""
        top = self.gamma0 * torch.exp(self.rho * (1 + self.g_max) * t)
        return 1 / torch.sqrt(self.xi + top)

    def alpha_dot(self, t: Tensor) -> Tensor:
        """``d alpha / dt`` ``(..., 1)``."""
        top = self.gamma0 * torch.exp(self.rho * (1 + self.g_max) * t)
        return -0.5 * self.rho * (1 + self.g_max) * top * self.alpha(t) ** 3

    def marginal_variance(self, t: Tensor) -> Tensor:
        """``lambda_i + gamma_i(t)`` ``(..., D)``: variance of the noised data
        along each principal direction (exact for the second moments)."""
        return self.eigenvalues + self.gamma(t)

    def latent_variance(self) -> Tensor:
        """Variance ``(D,)`` of the scaled latent at ``T``:
        ``alpha(T)^2 (lambda_i + gamma_i(T))``."""
        t = torch.full((1,), self.t_max, dtype=self.eigenvalues.dtype)
        return (self.alpha(t) ** 2 * self.marginal_variance(t)).squeeze(0)

    def compression(self) -> Tensor:
        """Factor ``(D,)`` by which each direction's standard deviation shrinks
        from ``t_min`` to ``T`` in the scaled coordinates."""
        t0 = torch.full((1,), self.t_min, dtype=self.eigenvalues.dtype)
        start = (self.alpha(t0) ** 2 * self.marginal_variance(t0)).squeeze(0)
        return torch.sqrt(self.latent_variance() / start)

    def extra_repr(self) -> str:
        log10_gamma_max = math.log10(self.gamma0) + self.rho * (
            1 + self.g_max
        ) * self.t_max / math.log(10)
        return (
            f"gamma0={self.gamma0}, rho={self.rho}, t_max={self.t_max}, "
            f"g={[round(v, 3) for v in self.g.tolist()]}, "
            f"log10 gamma(T)={log10_gamma_max:.1f}"
        )
