r"""Training noise levels: the distribution of :math:`\sigma` and the loss weight.

A denoiser is trained on :math:`\mathbb E_{\sigma}\, w(\sigma)\,
\lVert F - (x_0 - c_{skip} x) / c_{out} \rVert^2` with :math:`x = x_0 + \sigma
\epsilon`. The weight :math:`w` here is on that preconditioned loss; a weight
:math:`\lambda(\sigma)` on :math:`\lVert D - x_0 \rVert^2` is
:math:`w = \lambda\, c_{out}^2`.

- :class:`LogNormalNoise` (EDM, Karras et al. 2022): :math:`\log\sigma \sim
  \mathcal N(P_{mean}, P_{std}^2)`, :math:`\lambda = 1 / c_{out}^2`, i.e. :math:`w = 1`.
  EDM's images used :math:`(P_{mean}, P_{std}) = (-1.2, 1.2)`; the defaults here,
  :math:`(-2.0, 1.6)`, put more training at low noise, where a posterior much
  narrower than the standardized joint takes its shape: on two_moons (1 000
  simulations, observations 1-3) MLP C2ST 0.594 against 0.635, and 0.593 with
  :math:`(-2.5, 2.0)`.
- :class:`VENoise` (the Simformer paper's VE SDE): :math:`\sigma = \sigma_{min}
  (\sigma_{max}/\sigma_{min})^t`, :math:`t \sim U[10^{-5}, 1]`, weight :math:`g(t)^2`
  on the score loss, which is :math:`\lambda = \sigma^{-2}` (up to a constant).
- :class:`VPNoise` (the paper's VP SDE, :math:`\beta \in [0.01, 10]`): the VP
  process :math:`m(t)(x_0 + \sigma(t)\epsilon)` with :math:`\sigma(t) = \sqrt{1 -
  m^2} / m` seen in the scaled coordinates :math:`x / m` (EDM, Sec. 2), weight
  :math:`\sigma_t^2` on the score loss, again :math:`\lambda = \sigma^{-2}`.

Each draws :math:`\sigma` from uniforms (:meth:`NoiseLevels.from_uniform`), so that
fixed validation draws can be mapped through it, and gives the range
``[sigma_min, sigma_max]`` that samplers integrate over.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = [
    "LogNormalNoise",
    "NoiseLevels",
    "VENoise",
    "VPNoise",
    "make_noise",
    "uniform_time",
]

T_MIN = 1e-5


def uniform_time(uniforms: Tensor, t_min: float, t_max: float) -> Tensor:
    """Map uniforms on ``[0, 1)`` to times on ``[t_min, t_max)``; shape kept."""
    return t_min + (t_max - t_min) * uniforms


class NoiseLevels(ABC):
    """A distribution of training noise levels and its loss weight."""

    sigma_min: float
    sigma_max: float

    @abstractmethod
    def from_uniform(self, uniforms: Tensor) -> Tensor:
        """Noise levels :math:`\\sigma` from uniforms in ``(0, 1)``; shape kept."""

    @abstractmethod
    def weight(self, sigma: Tensor, data_variance: float = 1.0) -> Tensor:
        """Weight :math:`w(\\sigma)` of the preconditioned loss; shape of ``sigma``."""

    def sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw noise levels of the given shape.

        Args:
            shape: Shape of the draws.
            generator: Random generator, for reproducible draws.
            device: Device of the draws; default the generator's, else torch's
                default device. A training step passes its batch's.
        """
        if device is None and generator is not None:
            device = generator.device
        uniforms = torch.rand(shape, generator=generator, device=device)
        return self.from_uniform(uniforms.clamp(1e-7, 1 - 1e-7))


class LogNormalNoise(NoiseLevels):
    """Log-normal noise levels with unit preconditioned weight (EDM's).

    Args:
        p_mean: Mean of :math:`\\log\\sigma` (EDM's images: -1.2).
        p_std: Std of :math:`\\log\\sigma` (EDM's images: 1.2).
        sigma_min: Smallest noise level of the samplers (EDM: 0.002).
        sigma_max: Largest noise level of the samplers (EDM: 80).
    """

    def __init__(
        self,
        p_mean: float = -2.0,
        p_std: float = 1.6,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ) -> None:
        if p_std <= 0 or not 0 < sigma_min < sigma_max:
            raise ValueError(
                "Need `p_std` > 0 and 0 < `sigma_min` < `sigma_max`, got "
                f"p_std={p_std}, sigma_min={sigma_min}, sigma_max={sigma_max}."
            )
        self.p_mean, self.p_std = p_mean, p_std
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def __repr__(self) -> str:
        return (
            f"LogNormalNoise(p_mean={self.p_mean}, p_std={self.p_std}, "
            f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
        )

    def from_uniform(self, uniforms: Tensor) -> Tensor:
        normal = math.sqrt(2) * torch.erfinv(2 * uniforms - 1)
        return torch.exp(self.p_mean + self.p_std * normal)

    def weight(self, sigma: Tensor, data_variance: float = 1.0) -> Tensor:
        return torch.ones_like(sigma)


class _InverseSigmaSquaredWeight(NoiseLevels):
    def weight(self, sigma: Tensor, data_variance: float = 1.0) -> Tensor:
        # lambda = 1 / sigma^2 on |D - x0|^2, times c_out^2.
        return data_variance / (sigma**2 + data_variance)


class VENoise(_InverseSigmaSquaredWeight):
    """The Simformer paper's VE SDE as noise levels.

    Args:
        sigma_min: :math:`\\sigma` at ``t = 0`` (paper: 1e-4).
        sigma_max: :math:`\\sigma` at ``t = 1`` (paper: 15).
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 15.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                "Need 0 < `sigma_min` < `sigma_max`, got "
                f"sigma_min={sigma_min}, sigma_max={sigma_max}."
            )
        self._sigma_0, self.sigma_max = sigma_min, sigma_max
        self.sigma_min = sigma_min * (sigma_max / sigma_min) ** T_MIN

    def __repr__(self) -> str:
        return f"VENoise(sigma_min={self._sigma_0}, sigma_max={self.sigma_max})"

    def from_uniform(self, uniforms: Tensor) -> Tensor:
        t = uniform_time(uniforms, T_MIN, 1.0)
        return self._sigma_0 * (self.sigma_max / self._sigma_0) ** t


class VPNoise(_InverseSigmaSquaredWeight):
    """The Simformer paper's VP SDE (linear :math:`\\beta`) as noise levels.

    Args:
        beta_min: :math:`\\beta(0)` (paper: 0.01).
        beta_max: :math:`\\beta(1)` (paper: 10).
    """

    def __init__(self, beta_min: float = 0.01, beta_max: float = 10.0) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError(
                "Need 0 < `beta_min` < `beta_max`, got "
                f"beta_min={beta_min}, beta_max={beta_max}."
            )
        self.beta_min, self.beta_max = beta_min, beta_max
        self.sigma_min = float(self._sigma(torch.tensor(T_MIN, dtype=torch.float64)))
        self.sigma_max = float(self._sigma(torch.tensor(1.0, dtype=torch.float64)))

    def __repr__(self) -> str:
        return f"VPNoise(beta_min={self.beta_min}, beta_max={self.beta_max})"

    def _sigma(self, t: Tensor) -> Tensor:
        integral = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return torch.sqrt(torch.expm1(integral))

    def from_uniform(self, uniforms: Tensor) -> Tensor:
        return self._sigma(uniform_time(uniforms, T_MIN, 1.0))


def make_noise(noise: str | NoiseLevels) -> NoiseLevels:
    """``"edm"``, ``"ve"`` or ``"vp"`` at their defaults, or a given object."""
    if isinstance(noise, NoiseLevels):
        return noise
    kinds = {"edm": LogNormalNoise, "ve": VENoise, "vp": VPNoise}
    if noise not in kinds:
        raise ValueError(
            f"`sde` must be 'edm', 've', 'vp' or a NoiseLevels object, got {noise!r}."
        )
    return kinds[noise]()
