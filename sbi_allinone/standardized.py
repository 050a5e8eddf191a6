r"""The common base of the estimators that plug into sbi's NPE: INN, inflationary flows.

Each of them models ``p(theta | x)`` in standardized units
``theta~ = (theta - theta_mean) / theta_std`` and conditions on an embedding
``y = e((x - x_mean) / x_std)`` of the data, with means and standard deviations from
the training data:

- :func:`fit_standardization` is the first step of every builder: check the
  training data, z-score ``theta`` and ``x``, and size the embedding;
- :class:`StandardizedEstimator` holds the result (the buffers ``theta_mean``,
  ``theta_std``, ``x_mean``, ``x_std`` and the embedding net), flattens sbi's
  ``(sample_dim, batch_dim, ...)`` inputs and does the part of ``sample`` that all
  of them share. Its subclasses define the network, the loss and how one sample is
  drawn for each embedded condition.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch
from sbi.neural_nets.estimators.base import ConditionalEstimator
from torch import Tensor, nn

from sbi_allinone.npe_plugin import check_theta, z_score
from sbi_allinone.sbi_internals import (
    check_condition_shape,
    flatten_input_and_condition,
)

__all__ = ["Standardization", "StandardizedEstimator", "fit_standardization"]


@dataclass(frozen=True)
class Standardization:
    """The z-scoring and embedding of one estimator, fitted to its training data.

    Args:
        theta_mean: Mean of the training parameters ``(dim_theta,)``.
        theta_std: Their standard deviation ``(dim_theta,)``.
        x_mean: Mean of the training data, of ``x_shape``.
        x_std: Its standard deviation, of ``x_shape``.
        embedding_net: Maps z-scored ``x`` ``(batch, *x_shape)`` to ``y``
            ``(batch, dim_y)``.
        condition_shape: ``x_shape``, the event shape of the data.
        dim_y: Size of the embedding.
    """

    theta_mean: Tensor
    theta_std: Tensor
    x_mean: Tensor
    x_std: Tensor
    embedding_net: nn.Module
    condition_shape: torch.Size
    dim_y: int

    @property
    def dim_theta(self) -> int:
        """Number of parameters."""
        return self.theta_mean.numel()


def fit_standardization(
    theta: Tensor,
    x: Tensor,
    *,
    z_score_theta: str | None,
    z_score_x: str | None,
    embedding_net: nn.Module | None,
) -> Standardization:
    """z-score the training data and size its embedding; the builders' first step.

    Args:
        theta: Training parameters ``(num_simulations, dim_theta)``.
        x: Training data ``(num_simulations, *x_shape)``; rows with NaN or inf are
            left out of the z-scoring.
        z_score_theta: ``"independent"`` (a mean and standard deviation per
            parameter), ``"structured"`` (one for all of them) or ``"none"``; as
            sbi's ``posterior_nn``.
        z_score_x: The same for the data.
        embedding_net: Network from z-scored ``x`` ``(batch, *x_shape)`` to a flat
            summary ``y`` ``(batch, dim_y)``, as in sbi's ``posterior_nn``; ``None``
            is the identity, for flat data.

    Returns:
        The fitted :class:`Standardization`.

    Raises:
        ValueError: If ``theta`` is not 2-D, a z-scoring flag is unknown, or the
            embedding of ``x`` is not flat.

    Example:
        >>> theta, x = torch.randn(100, 2) * 5 + 1, torch.randn(100, 3)
        >>> fitted = fit_standardization(
        ...     theta, x, z_score_theta="independent", z_score_x="none",
        ...     embedding_net=None,
        ... )
        >>> fitted.dim_theta, fitted.dim_y, tuple(fitted.condition_shape)
        (2, 3, (3,))
        >>> standardized = (theta - fitted.theta_mean) / fitted.theta_std
        >>> torch.allclose(standardized.std(0), torch.ones(2))
        True
    """
    check_theta(theta)
    theta_mean, theta_std = z_score(theta, z_score_theta, "z_score_theta")
    x_mean, x_std = z_score(x, z_score_x, "z_score_x")
    embedding = embedding_net if embedding_net is not None else nn.Identity()
    with torch.no_grad():
        y = embedding((x[:2] - x_mean) / x_std)
    if y.ndim != 2:
        raise ValueError(
            "The embedding of `x` must be flat (batch, dim_y); got shape "
            f"{tuple(y.shape)}. Pass an `embedding_net` that flattens `x`."
        )
    return Standardization(
        theta_mean, theta_std, x_mean, x_std, embedding, x.shape[1:], y.shape[1]
    )


class StandardizedEstimator(ConditionalEstimator):
    """Base of the estimators of ``p(theta | x)`` that work in standardized units.

    Owns the z-scoring buffers (state-dict keys ``theta_mean``, ``theta_std``,
    ``x_mean``, ``x_std``), the embedding net (``_embedding_net``), the network
    (``net``), the flattening of sbi's inputs and the first half of ``sample``.
    Subclasses implement ``loss`` and :meth:`_sample_given`. An estimator with a
    density also derives from sbi's ``ConditionalDensityEstimator`` (listed after
    this class) and implements ``log_prob``; one without does not.

    Args:
        net: The estimator's network.
        standardization: The z-scoring and embedding net, from
            :func:`fit_standardization`.
    """

    def __init__(self, net: nn.Module, standardization: Standardization) -> None:
        # In a density estimator the next class in the MRO is sbi's
        # ConditionalDensityEstimator, whose __init__ takes `net` first and does no
        # more than set the shapes and `net`: both are set here, on sbi's common base.
        ConditionalEstimator.__init__(
            self,
            torch.Size([standardization.dim_theta]),
            standardization.condition_shape,
        )
        self.net = net
        self._embedding_net = standardization.embedding_net
        self.dim_theta, self.dim_y = standardization.dim_theta, standardization.dim_y
        self.register_buffer("theta_mean", standardization.theta_mean)
        self.register_buffer("theta_std", standardization.theta_std)
        self.register_buffer("x_mean", standardization.x_mean)
        self.register_buffer("x_std", standardization.x_std)

    @property
    def embedding_net(self) -> nn.Module:
        """The embedding net applied to z-scored ``x``."""
        return self._embedding_net

    def _standardize(self, theta: Tensor) -> Tensor:
        """Parameters ``(batch, dim_theta)`` -> standardized ``(batch, dim_theta)``."""
        return (theta - self.theta_mean) / self.theta_std

    def _unstandardize(self, theta: Tensor) -> Tensor:
        """Standardized ``(batch, dim_theta)`` -> parameters ``(batch, dim_theta)``."""
        return theta * self.theta_std + self.theta_mean

    def _standardize_x(self, x: Tensor) -> Tensor:
        """Data ``(batch, *x_shape)`` -> z-scored data ``(batch, *x_shape)``."""
        return (x - self.x_mean) / self.x_std

    def _embed(self, x: Tensor) -> Tensor:
        """Data ``(batch, *x_shape)`` -> ``y`` ``(batch, dim_y)``."""
        return self._embedding_net(self._standardize_x(x))

    def _flatten(self, input: Tensor, condition: Tensor) -> tuple[Tensor, Tensor, int]:
        """sbi's ``(input, condition)`` -> ``(S * B, dim_theta)``,
        ``(S * B, *x_shape)`` and ``S``; see :func:`flatten_input_and_condition`."""
        return flatten_input_and_condition(self, input, condition)

    def _embed_for_latents(self, z: Tensor, x: Tensor, dim_z: int) -> Tensor:
        """The embedding of ``x`` for each latent, for ``transform(z, x)``.

        Args:
            z: Latents ``(batch, dim_z)``.
            x: Data ``(batch, *x_shape)`` or ``(1, *x_shape)``.
            dim_z: The latent size the estimator expects.

        Returns:
            ``y`` ``(batch, dim_y)``.
        """
        if z.ndim != 2 or z.shape[-1] != dim_z:
            raise ValueError(f"`z` must be (batch, {dim_z}), got {tuple(z.shape)}.")
        check_condition_shape(self, x)
        return self._embed(x.reshape(-1, *self.condition_shape)).expand(z.shape[0], -1)

    def sample(self, sample_shape: torch.Size, condition: Tensor, **kwargs) -> Tensor:
        """Samples ``(*sample_shape, batch_dim, dim_theta)`` of ``p(theta | x)``.

        Args:
            sample_shape: Shape of the samples per condition.
            condition: Data ``(batch_dim, *x_shape)``.
        """
        check_condition_shape(self, condition)
        condition = condition.reshape(-1, *self.condition_shape)
        num_samples, batch = math.prod(sample_shape), condition.shape[0]
        y = self._embed(condition).repeat(num_samples, 1)  # sample-major
        return self._sample_given(y).reshape(*sample_shape, batch, self.dim_theta)

    @abstractmethod
    def _sample_given(self, y: Tensor) -> Tensor:
        """One sample of the parameters for each embedded condition.

        Args:
            y: Embedded conditions ``(n, dim_y)``.

        Returns:
            Parameters ``(n, dim_theta)`` (not standardized).
        """
