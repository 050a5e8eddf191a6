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
from torch.distributions import Distribution
from torch.distributions.constraints import Constraint
from torch.distributions.transforms import Transform

__all__ = ["log_abs_det_unbounding", "prior_support"]


def prior_support(prior: Distribution) -> Constraint:
    """The support of ``prior``, which the flow's samples must lie in.

    Args:
        prior: The prior over the parameters (sbi's priors have a ``support``).

    Returns:
        ``prior.support``; ``biject_to`` of it maps unbounded space onto it (the
        identity for an unbounded support).

    Raises:
        ValueError: If ``prior`` has no ``support``.
    """
    try:
        return prior.support
    except (AttributeError, NotImplementedError):
        raise ValueError(
            "`x_dist` needs a `support` to learn in an unbounded space; got "
            f"{type(prior).__name__} without one."
        ) from None


def log_abs_det_unbounding(
    transform: Transform | None, support: Constraint | None, theta: Tensor
) -> Tensor:
    """``log |det d transform^-1 / d theta|`` ``(B,)`` at parameters ``(B, D)``.

    Args:
        transform: ``biject_to(support)``, unbounded space -> support (``None``: no
            transform, 0).
        support: Its image, the prior's support (a composed transform's
            ``codomain`` is not always it).
        theta: Parameters ``(B, D)``.

    Returns:
        ``(B,)``; ``-inf`` for parameters outside the support (the flow puts no
        mass there).
    """
    if transform is None:
        return torch.zeros(theta.shape[0]).to(theta)
    unbounded = transform.inv(theta)
    log_det = -transform.log_abs_det_jacobian(unbounded, theta)
    inside = support.check(theta)
    if inside.ndim > 1:  # a support that is not declared `independent`
        inside = inside.all(-1)
    return torch.where(inside, log_det, torch.full_like(log_det, -math.inf))
