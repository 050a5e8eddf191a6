r"""The conditional INN: an invertible network with an exact density of ``p(theta|x)``.

Parameters ``theta`` and data ``x`` are z-scored with the training data; ``y`` is the
(z-scored) data passed through the embedding net. Two training modes:

- ``"ml"`` (conditional INN): ``z = f(theta; y)`` with every coupling conditioned on
  ``y``; trained by maximum likelihood,
  ``-log q(theta|x) = |z|²/2 - log|det df/dtheta|``
  (+ constants). Exact ``log_prob``; sampling inverts ``f`` at ``z ~ N(0, I)``.
- ``"hybrid"``: the ``"ml"`` loss plus two MMD terms that vanish at the maximum
  likelihood optimum (``q = p``) and therefore leave it unchanged:
  ``MMD²([z, y], [N(0, I), y])`` and ``MMD²([theta~, y], [theta, y])`` with
  ``theta~ ~ q(theta|x_i)``, one draw per batch element.

The INN paper's bidirectional training (``mode="mmd"`` of
:func:`sbi_allinone.inn_nn`) gives a sampler without a density:
:class:`~sbi_allinone.inn.bidirectional.BidirectionalINN`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Literal

import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import Tensor

from sbi_allinone.inn.blocks import InvertibleSequence
from sbi_allinone.inn.mmd import MMDSettings, mmd2
from sbi_allinone.standardized import Standardization, StandardizedEstimator

__all__ = ["DENSITY_MODES", "INNDensityEstimator", "InvertibleEstimator"]

#: The training modes with a density, those of :class:`INNDensityEstimator`.
DENSITY_MODES: tuple[str, ...] = ("ml", "hybrid")


class InvertibleEstimator(StandardizedEstimator):
    """Base of the INNs: standard normal latents ``z`` ``(batch, dim_z)``, mapped to
    parameters by inverting the core given the embedded data (:meth:`_invert`), for
    sampling and :meth:`transform`.

    Subclasses define ``dim_z``, :meth:`_invert`, ``loss`` and
    ``inverse_transform``.
    """

    dim_z: int

    @abstractmethod
    def _invert(self, y: Tensor, z: Tensor) -> Tensor:
        """Standardized parameters ``(batch, dim_theta)`` at latents ``z``
        ``(batch, dim_z)``, given embedded data ``y`` ``(batch, dim_y)``."""

    def _sample_given(self, y: Tensor) -> Tensor:
        z = torch.randn(y.shape[0], self.dim_z, device=y.device)
        return self._unstandardize(self._invert(y, z))

    def transform(self, z: Tensor, x: Tensor) -> Tensor:
        """Map latents back to parameters: the inverse of ``inverse_transform``.

        Args:
            z: Latents ``(batch, dim_z)``.
            x: Data ``(batch, *x_shape)`` or ``(1, *x_shape)``.

        Returns:
            Parameters ``(batch, dim_theta)``.
        """
        y = self._embed_for_latents(z, x, self.dim_z)
        return self._unstandardize(self._invert(y, z))


class INNDensityEstimator(InvertibleEstimator, ConditionalDensityEstimator):
    """Conditional invertible network estimating ``p(theta|x)``; see the module
    docstring.

    Built by :func:`sbi_allinone.inn_nn`; use that rather than this constructor.

    Args:
        core: The invertible network over ``dim_theta`` dimensions, conditioned on
            ``y`` ``(batch, dim_y)``.
        standardization: z-scoring and embedding net (trained with the core).
        mode: ``"ml"`` or ``"hybrid"``.
        mmd: Settings of the MMD terms of the ``hybrid`` mode; its ``steps``
            counts the training steps in either mode.
    """

    def __init__(
        self,
        core: InvertibleSequence,
        standardization: Standardization,
        mode: Literal["ml", "hybrid"],
        mmd: MMDSettings,
    ) -> None:
        if mode not in DENSITY_MODES:
            raise ValueError(
                f"`mode` must be one of {DENSITY_MODES}, got {mode!r}; mode='mmd' is "
                "the BidirectionalINN."
            )
        super().__init__(core, standardization)
        self.mode = mode
        self.mmd = mmd

    # -- density ------------------------------------------------------------------

    def log_prob(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """``log q(theta|x)`` ``(sample_dim, batch_dim)``.

        Args:
            input: Parameters ``(sample_dim, batch_dim, dim_theta)`` or
                ``(batch_dim, dim_theta)``.
            condition: Data ``(batch_dim, *x_shape)`` or
                ``(sample_dim, batch_dim, *x_shape)``.
        """
        theta, x, num_samples = self._flatten(input, condition)
        return self._log_prob_flat(theta, x).reshape(num_samples, -1)

    def _log_prob_flat(self, theta: Tensor, x: Tensor) -> Tensor:
        z, log_det = self.net(self._standardize(theta), self._embed(x))
        log_normal = -0.5 * z.square().sum(-1) - 0.5 * self.dim_theta * math.log(
            2 * math.pi
        )
        return log_normal + log_det - self.theta_std.log().sum()

    def sample_and_log_prob(
        self, sample_shape: torch.Size, condition: Tensor, **kwargs
    ) -> tuple[Tensor, Tensor]:
        """Samples ``(*sample_shape, batch_dim, dim_theta)`` and their
        log-probabilities ``(*sample_shape, batch_dim)``."""
        samples = self.sample(sample_shape, condition)
        flat = samples.reshape(-1, samples.shape[-2], self.dim_theta)
        return samples, self.log_prob(flat, condition).reshape(samples.shape[:-1])

    # -- training -----------------------------------------------------------------

    def loss(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """Per-sample training loss ``(batch,)``: ``-log q(theta|x)``, plus in
        ``hybrid`` mode the batch-level MMD terms, added to every sample's loss.

        Args:
            input: Parameters ``(batch, dim_theta)``.
            condition: Data ``(batch, *x_shape)``.
        """
        if self.training:
            self.mmd.steps += 1
        loss = -self._log_prob_flat(input, condition)
        if self.mode == "hybrid":
            loss = loss + self._hybrid_terms(input, condition)
        return loss

    def _hybrid_terms(self, theta: Tensor, x: Tensor) -> Tensor:
        settings = self.mmd
        y = self._embed(x)
        z, _ = self.net(self._standardize(theta), y)
        loss_z = mmd2(
            torch.cat([z, y], dim=-1),
            torch.cat([torch.randn_like(z), y], dim=-1),
            settings.widths,
        )
        theta_model = self.net.inverse(torch.randn_like(z), y)
        loss_x = mmd2(
            torch.cat([theta_model, y], dim=-1),
            torch.cat([self._standardize(theta), y], dim=-1),
            settings.widths,
        )
        return settings.weight_z * loss_z + settings.weight_x * loss_x

    # -- sampling and latent maps ----------------------------------------------------

    @property
    def dim_z(self) -> int:
        """Size of the latent: the number of parameters."""
        return self.dim_theta

    def _invert(self, y: Tensor, z: Tensor) -> Tensor:
        """``f^{-1}(z; y)``: standardized parameters ``(batch, dim_theta)``."""
        return self.net.inverse(z, y)

    def inverse_transform(self, theta: Tensor, x: Tensor) -> Tensor:
        """Map parameters to the latent: ``z = f(theta; x)``.

        Args:
            theta: Parameters ``(batch, dim_theta)``.
            x: Data ``(batch, *x_shape)``.

        Returns:
            Latent ``(batch, dim_theta)``; standard normal if the model is exact.
        """
        theta, x, _ = self._flatten(theta, x)
        return self.net(self._standardize(theta), self._embed(x))[0]
