"""Bounded priors: learn the posterior in an unbounded space.

A flow that models ``theta`` directly puts some of its mass outside a bounded prior's
support, and sbi's ``DirectPosterior`` then rejects those samples (slow where the
leak is large) and renormalizes ``log_prob`` by a sampled acceptance rate. Mapping
the parameters through the inverse of ``biject_to(prior.support)`` first (the
bijection behind sbi's ``mcmc_transform`` and NPE's ``z_score_theta=
"transform_to_unconstrained"``) removes the leak: every sample lies inside the
support, and the density picks up the Jacobian of the map.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, biject_to, constraints
from torch.distributions.transforms import Transform

__all__ = [
    "has_bounded_support",
    "in_support",
    "log_abs_det_unbounding",
    "unconstraining_transform",
]


def has_bounded_support(prior: Distribution) -> bool:
    """Whether ``prior``'s support is anything but the whole real space.

    Args:
        prior: A distribution with a ``support`` (as sbi's priors have).

    Returns:
        ``False`` for ``real`` (or ``independent(real)``) support, ``True`` else.

    Raises:
        ValueError: If ``prior`` has no ``support``.
    """
    support = getattr(prior, "support", None)
    if support is None:
        raise ValueError(
            "`x_dist` needs a `support` to learn in an unbounded space; got "
            f"{type(prior).__name__} without one."
        )
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return not isinstance(support, type(constraints.real))


def unconstraining_transform(prior: Distribution) -> Transform:
    """The bijection from unbounded space onto ``prior``'s support.

    Args:
        prior: The prior over the parameters ``(dim_theta,)``.

    Returns:
        ``biject_to(prior.support)``: its forward maps unbounded ``(B, D)`` to the
        support, its ``inv`` maps parameters to unbounded space, and its
        ``log_abs_det_jacobian`` is ``(B,)``.
    """
    return biject_to(prior.support)


def in_support(prior_support: constraints.Constraint, theta: Tensor) -> Tensor:
    """``(B,)`` booleans: which rows of ``theta`` ``(B, D)`` lie in the support."""
    inside = prior_support.check(theta)
    if inside.ndim > 1:
        inside = inside.all(-1)
    return inside.to(torch.bool)


def log_abs_det_unbounding(
    transform: Transform | None, support: constraints.Constraint | None, theta: Tensor
) -> Tensor:
    """``log |det d transform^-1 / d theta|`` ``(B,)`` at parameters ``(B, D)``.

    Args:
        transform: Unbounded space -> support (``None``: no transform, 0).
        support: The prior's support (the transform's image; a composed transform
            does not always know it).
        theta: Parameters ``(B, D)``.

    Returns:
        ``(B,)``; ``-inf`` for parameters outside the support (the flow puts no
        mass there).
    """
    if transform is None:
        return torch.zeros(theta.shape[0]).to(theta)
    unbounded = transform.inv(theta)
    log_det = -transform.log_abs_det_jacobian(unbounded, theta)
    inside = in_support(support, theta)
    return torch.where(inside, log_det, torch.full_like(log_det, -math.inf))
