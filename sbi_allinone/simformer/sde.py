r"""Forward SDEs of the Simformer: variance exploding (VE) and variance preserving (VP).

Both perturb clean values :math:`x_0` as :math:`x_t \sim \mathcal{N}(m(t)\,x_0,
\sigma(t)^2)` for :math:`t \in [t_{min}, 1]`, with the forward SDE
:math:`dx = f(t)\,x\,dt + g(t)\,dW`:

- VE (Song et al. 2021): :math:`\sigma(t) = \sigma_{min}(\sigma_{max}/\sigma_{min})^t`,
  :math:`m(t) = 1`, :math:`f = 0`, :math:`g(t)^2 = d\sigma^2/dt =
  2\sigma(t)^2\log(\sigma_{max}/\sigma_{min})`. Loss weight :math:`g(t)^2`.
- VP: :math:`\beta(t) = \beta_{min} + t(\beta_{max}-\beta_{min})`,
  :math:`m(t) = \exp(-\tfrac12\int_0^t\beta)`, :math:`\sigma(t)^2 = 1 - m(t)^2`,
  :math:`f = -\tfrac12\beta(t)`, :math:`g = \sqrt{\beta(t)}`. Loss weight
  :math:`\sigma(t)^2`.

Defaults are the Simformer paper's (Gloeckler et al. 2024, App. A): VE
:math:`\sigma_{min}=10^{-4}`, :math:`\sigma_{max}=15`; VP :math:`\beta_{min}=0.01`,
:math:`\beta_{max}=10`; :math:`t \sim U[10^{-5}, 1]`.

These objects hold no parameters; every method broadcasts over ``t`` of any shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["SDE", "VESDE", "VPSDE", "make_sde"]

T_MIN = 1e-5


class SDE(ABC):
    """A linear forward SDE with Gaussian marginals."""

    t_min: float = T_MIN
    t_max: float = 1.0

    @abstractmethod
    def mean_factor(self, t: Tensor) -> Tensor:
        """:math:`m(t)` with :math:`E[x_t|x_0] = m(t)\\,x_0`; same shape as ``t``."""

    @abstractmethod
    def std(self, t: Tensor) -> Tensor:
        """Marginal standard deviation :math:`\\sigma(t)`; same shape as ``t``."""

    @abstractmethod
    def drift_coefficient(self, t: Tensor) -> Tensor:
        """:math:`f(t)` with drift :math:`f(t)\\,x`; same shape as ``t``."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """:math:`g(t)`; same shape as ``t``."""

    @abstractmethod
    def loss_weight(self, t: Tensor) -> Tensor:
        """Weight :math:`\\lambda(t)` of the denoising score-matching loss."""

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw :math:`x_t = m(t)\\,x_0 + \\sigma(t)\\,\\epsilon`.

        Args:
            x0: Clean values, shape ``(batch, num_nodes)``.
            t: Times, shape ``(batch, 1)`` (or broadcastable).
            noise: Standard normal noise, shape of ``x0``.

        Returns:
            Perturbed values, shape ``(batch, num_nodes)``.
        """
        return self.mean_factor(t) * x0 + self.std(t) * noise

    def terminal_std(self, data_std: Tensor) -> Tensor:
        """Std of :math:`x_{t_{max}}` for data of std ``data_std`` (mean-zero data)."""
        m, s = (
            self.mean_factor(torch.tensor(self.t_max)),
            self.std(torch.tensor(self.t_max)),
        )
        return torch.sqrt(m**2 * data_std**2 + s**2)


class VESDE(SDE):
    """Variance-exploding SDE.

    Args:
        sigma_min: Noise std at ``t = 0``.
        sigma_max: Noise std at ``t = 1``.
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 15.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                "Need 0 < `sigma_min` < `sigma_max`, got "
                f"sigma_min={sigma_min}, sigma_max={sigma_max}."
            )
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"

    def mean_factor(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def std(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.std(t) * math.sqrt(2 * self._log_ratio)

    def loss_weight(self, t: Tensor) -> Tensor:
        return self.diffusion(t) ** 2


class VPSDE(SDE):
    """Variance-preserving SDE with a linear :math:`\\beta(t)`.

    Args:
        beta_min: :math:`\\beta(0)`.
        beta_max: :math:`\\beta(1)`.
    """

    def __init__(self, beta_min: float = 0.01, beta_max: float = 10.0) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError(
                "Need 0 < `beta_min` < `beta_max`, got "
                f"beta_min={beta_min}, beta_max={beta_max}."
            )
        self.beta_min, self.beta_max = beta_min, beta_max

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max})"

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _integrated_beta(self, t: Tensor) -> Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def mean_factor(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._integrated_beta(t))

    def std(self, t: Tensor) -> Tensor:
        # -expm1 keeps sigma accurate near t = 0, where 1 - m^2 cancels.
        return torch.sqrt(-torch.expm1(-self._integrated_beta(t)))

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def loss_weight(self, t: Tensor) -> Tensor:
        return self.std(t) ** 2


def make_sde(sde: str | SDE) -> SDE:
    """Return the SDE for ``"ve"`` or ``"vp"`` (paper defaults), or pass one on."""
    if isinstance(sde, SDE):
        return sde
    if sde == "ve":
        return VESDE()
    if sde == "vp":
        return VPSDE()
    raise ValueError(f"`sde` must be 've', 'vp' or an SDE object, got {sde!r}.")
