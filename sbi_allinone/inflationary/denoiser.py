r"""The preconditioned conditional denoiser ``D(x~, t; y)`` (EDM-style, per dimension).

With ``Sigma_i(t) = lambda_i + gamma_i(t)`` (variance of the noised parameters along
principal direction ``i``):

    c_in = Sigma^(-1/2),  c_skip = lambda / Sigma,  c_out = sqrt(lambda gamma / Sigma),
    D(x~, t; y) = c_skip x~ + c_out F(c_in x~, t / T, y),

so ``F``'s input and regression target have unit variance at every time. The
denoising loss ``|(D(u + n, t) - u) / c_out|²`` with ``n ~ N(0, diag gamma(t))`` is
``|F - (u - c_skip (u + n)) / c_out|²``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbi_allinone.inflationary.schedule import InflationarySchedule

__all__ = ["DenoiserMLP", "PreconditionedDenoiser"]


class DenoiserMLP(nn.Module):
    """``F(x, c_noise, y)``: an MLP on scaled parameters, Fourier time features and
    the embedded condition.

    Args:
        dim: Number of parameters ``D``.
        context_dim: Size of the condition embedding ``y``.
        hidden_features: Width of the hidden layers.
        num_layers: Number of hidden layers.
        time_features: Number of Fourier features of the time.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        hidden_features: int = 128,
        num_layers: int = 3,
        time_features: int = 16,
    ) -> None:
        super().__init__()
        self.register_buffer(
            "frequencies", math.pi * 2.0 ** torch.arange(time_features // 2) / 2
        )
        widths = [dim + time_features + context_dim] + [hidden_features] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], dim))

    def forward(self, x: Tensor, c_noise: Tensor, context: Tensor) -> Tensor:
        """``x`` ``(B, D)``, ``c_noise`` ``(B, 1)`` in ``[0, 1]``, ``context``
        ``(B, context_dim)`` -> ``(B, D)``."""
        angles = c_noise * self.frequencies
        features = torch.cat([angles.sin(), angles.cos()], dim=-1)
        return self.mlp(torch.cat([x, features, context], dim=-1))


class PreconditionedDenoiser(nn.Module):
    """``D(x~, t; y)`` with per-dimension EDM preconditioning.

    Args:
        net: ``F(x, c_noise, y)``, e.g. :class:`DenoiserMLP`.
        schedule: The inflationary schedule (eigenvalues and noise).
    """

    def __init__(self, net: nn.Module, schedule: InflationarySchedule) -> None:
        super().__init__()
        self.net, self.schedule = net, schedule

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``c_in``, ``c_skip``, ``c_out``, each ``(B, D)``, at times ``(B, 1)``."""
        eigenvalues, gamma = self.schedule.eigenvalues, self.schedule.gamma(t)
        total = eigenvalues + gamma
        return (
            total.rsqrt(),
            eigenvalues / total,
            torch.sqrt(eigenvalues * gamma / total),
        )

    def forward(self, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
        """Denoised ``(B, D)`` from noised ``x`` ``(B, D)`` at times ``(B, 1)``."""
        c_in, c_skip, c_out = self.coefficients(t)
        c_noise = t / self.schedule.t_max
        return c_skip * x + c_out * self.net(c_in * x, c_noise, context)

    def loss(self, u: Tensor, t: Tensor, noise: Tensor, context: Tensor) -> Tensor:
        """Weighted denoising loss ``(B,)``.

        Args:
            u: Clean parameters in the PCA basis ``(B, D)``.
            t: Times ``(B, 1)``.
            noise: Standard normal ``(B, D)``, scaled here by ``sqrt(gamma(t))``.
            context: Embedded conditions ``(B, context_dim)``.
        """
        c_in, c_skip, c_out = self.coefficients(t)
        noised = u + self.schedule.gamma(t).sqrt() * noise
        target = (u - c_skip * noised) / c_out
        prediction = self.net(c_in * noised, t / self.schedule.t_max, context)
        return (prediction - target).square().sum(-1)
