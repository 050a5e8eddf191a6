r"""Guidance: sample a conditional under interval observations and constraints.

An interval observation :math:`a \le v_i \le b` or a linear constraint
:math:`w^\top v \le c` is not a value the network can be conditioned on. Following
Gloeckler et al. (2024, Sec. 3.3), the reverse SDE's score is corrected with the
gradient of a soft constraint evaluated at the Tweedie estimate of the clean value,

.. math::
    \hat v_0 = \frac{v_t + \sigma_t^2\, s(v_t, t)}{m_t}, \qquad
    s \leftarrow s + \nabla_{\hat v_0} \sum_k \log \operatorname{sigmoid}
    \big(\kappa(t)\, d_k(\hat v_0)\big), \qquad \kappa(t) = 1 / \sigma_t^2,

(capped where a discrete step would overshoot, see :func:`sharpness`),
where :math:`d_k \ge 0` exactly when constraint :math:`k` holds (for an interval:
:math:`v_i - a` and :math:`b - v_i`). The gradient is taken with respect to
:math:`\hat v_0` only: the network is not differentiated. Self-recurrence (the
paper's :math:`r`) repeats every step ``recurrence`` times, re-noising the result
back to the step's start by the forward transition in between; it closes most of
the gap between guided and model-based conditioning (the paper uses 5).

Constraints are written in the user's units over ``[theta, x]`` and evaluated in
the standardized coordinates the sampler works in (rows rescaled to unit norm, so
that :math:`\kappa` has the same meaning for every constraint).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "Constraint",
    "Guidance",
    "Interval",
    "LinearConstraint",
    "sharpness",
]

MAX_GUIDED_MOVE = 0.5


@dataclass(frozen=True)
class LinearConstraint:
    """Constraints :math:`A v \\le b` on the variables ``v = [theta, x]``.

    One row is a half-space; several rows a polytope.

    Args:
        weights: ``(num_constraints, num_nodes)`` matrix :math:`A` (or one row).
        bounds: ``(num_constraints,)`` vector :math:`b` (or a number).
    """

    weights: Tensor
    bounds: Tensor

    def as_rows(self, num_nodes: int) -> tuple[Tensor, Tensor]:
        """``(A, b)`` with ``A`` of shape ``(k, num_nodes)`` and ``b`` ``(k,)``."""
        weights = torch.as_tensor(self.weights, dtype=torch.float64)
        if weights.ndim == 1:
            weights = weights.unsqueeze(0)
        if weights.ndim != 2 or weights.shape[1] != num_nodes:
            raise ValueError(
                f"`weights` must have shape (num_constraints, {num_nodes}) (one "
                f"column per variable of [theta, x]), got {tuple(weights.shape)}."
            )
        bounds = torch.as_tensor(self.bounds, dtype=torch.float64).reshape(-1)
        if bounds.numel() == 1:
            bounds = bounds.expand(weights.shape[0])
        if bounds.shape != (weights.shape[0],):
            raise ValueError(
                f"`bounds` must have {weights.shape[0]} entries (one per row of "
                f"`weights`), got {tuple(bounds.shape)}."
            )
        return weights, bounds


@dataclass(frozen=True)
class Interval:
    """The interval observation ``low <= v[node] <= high`` of one variable.

    Args:
        node: Index of the variable in ``[theta, x]``.
        low: Lower end (``-inf`` for none).
        high: Upper end (``inf`` for none).
    """

    node: int
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(
                f"`low` must be below `high`, got {self.low} and {self.high}."
            )
        if math.isinf(self.low) and math.isinf(self.high):
            raise ValueError("An interval needs at least one finite end.")

    def as_rows(self, num_nodes: int) -> tuple[Tensor, Tensor]:
        """``(A, b)``: one row ``A v <= b`` per finite end."""
        if not 0 <= self.node < num_nodes:
            raise ValueError(
                f"`node` must index one of the {num_nodes} variables of [theta, x], "
                f"got {self.node}."
            )
        rows, bounds = [], []
        for sign, end in ((-1.0, self.low), (1.0, self.high)):
            if not math.isinf(end):
                row = torch.zeros(num_nodes, dtype=torch.float64)
                row[self.node] = sign
                rows.append(row)
                bounds.append(sign * end)
        return torch.stack(rows), torch.tensor(bounds, dtype=torch.float64)


Constraint = Interval | LinearConstraint


class Guidance:
    """Constraints in standardized coordinates, and their score correction.

    Args:
        constraints: The constraints (user units, over ``[theta, x]``).
        mean: ``(num_nodes,)`` standardization mean.
        std: ``(num_nodes,)`` standardization std.
        latent: ``(num_nodes,)`` booleans, ``True`` for the sampled variables;
            constraints may only involve those.
    """

    def __init__(
        self,
        constraints: Sequence[Constraint],
        mean: Tensor,
        std: Tensor,
        latent: Tensor,
    ) -> None:
        if not constraints:
            raise ValueError("`guidance` needs at least one constraint.")
        num_nodes = mean.numel()
        rows = [c.as_rows(num_nodes) for c in constraints]
        weights = torch.cat([w for w, _ in rows])
        bounds = torch.cat([b for _, b in rows])
        touched = (weights != 0).any(dim=0)
        if (touched & ~latent.cpu()).any():
            nodes = torch.nonzero(touched & ~latent.cpu()).flatten().tolist()
            raise ValueError(
                f"Constraints involve variables {nodes}, which are conditioned on; "
                "guidance acts on the sampled (latent) variables only."
            )
        # v = mean + std * u  =>  A v <= b  <=>  (A std) u <= b - A mean.
        mean, std = mean.double().cpu(), std.double().cpu()
        scaled = weights * std
        offset = bounds - weights @ mean
        norm = scaled.norm(dim=1, keepdim=True)
        self.weights = (scaled / norm).float()
        self.bounds = (offset / norm.squeeze(1)).float()

    def score_correction(
        self, v: Tensor, score: Tensor, m: Tensor, s: Tensor, sharpness: Tensor
    ) -> Tensor:
        """Gradient of the soft constraints at the Tweedie estimate.

        Args:
            v: ``(batch, n)`` standardized diffused values.
            score: ``(batch, n)`` model score at ``v``.
            m: ``(batch, 1)`` mean factor :math:`m_t`.
            s: ``(batch, 1)`` marginal std :math:`\\sigma_t`.
            sharpness: ``(batch, 1)`` :math:`\\kappa(t)`, see :func:`sharpness`.

        Returns:
            ``(batch, n)`` correction to add to the score.
        """
        weights, bounds = self.weights.to(v), self.bounds.to(v)
        with torch.enable_grad():
            clean = ((v + s**2 * score) / m).detach().requires_grad_(True)
            slack = bounds - clean @ weights.T  # >= 0 where the constraint holds
            log_weight = F.logsigmoid(sharpness * slack).sum()
            (gradient,) = torch.autograd.grad(log_weight, clean)
        return gradient


def sharpness(std: Tensor, diffusion: Tensor, dt: Tensor) -> Tensor:
    """:math:`\\kappa(t) = 1/\\sigma_t^2`, capped where a sampler step would overshoot.

    A violated constraint pulls with :math:`\\kappa` per unit, which moves a sample
    by :math:`g^2 \\Delta t\\, \\kappa` in one Euler–Maruyama step. For the VE SDE that
    is :math:`2 \\log(\\sigma_{max}/\\sigma_{min}) \\Delta t` at every time, but for
    the VP SDE it grows like :math:`\\Delta t / t` near :math:`t = 0` and throws samples
    across the interval. The cap keeps the move below
    :data:`MAX_GUIDED_MOVE` standardized units; it binds only there.

    Args:
        std: ``(batch, 1)`` :math:`\\sigma_t`.
        diffusion: ``(batch, 1)`` :math:`g(t)`.
        dt: Step size.

    Returns:
        ``(batch, 1)`` sharpness.
    """
    return torch.minimum(std**-2, MAX_GUIDED_MOVE / (diffusion**2 * dt))
