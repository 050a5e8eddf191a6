r"""Guidance: sample a conditional under interval observations and constraints.

An interval observation :math:`a \le v_i \le b` or a linear constraint
:math:`w^\top v \le c` is not a value the network can be conditioned on. Following
Gloeckler et al. (2024, Sec. 3.3), the reverse SDE's score is corrected with the
gradient of a soft constraint evaluated at the Tweedie estimate of the clean value,
which is the denoiser's output :math:`\hat v_0 = D(v_\sigma; \sigma) = v_\sigma +
\sigma^2 s(v_\sigma, \sigma)`:

.. math::
    s \leftarrow s + \nabla_{\hat v_0} \sum_k \log \operatorname{sigmoid}
    \big(\kappa(\sigma)\, d_k(\hat v_0)\big), \qquad \kappa(\sigma) = 1 / \sigma^2,

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

from sbi_allinone.simformer.shapes import as_matrix

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

    def as_rows(
        self, num_nodes: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(A, b)`` with ``A`` of shape ``(k, num_nodes)`` and ``b`` ``(k,)``, on
        ``device`` (default: where ``weights`` and ``bounds`` are)."""
        weights = as_matrix(
            self.weights,
            num_nodes,
            "`weights` (one column per variable of [theta, x])",
            "num_constraints",
            torch.float64,
            device,
        )
        bounds = torch.as_tensor(self.bounds, dtype=torch.float64, device=device)
        bounds = bounds.reshape(-1)
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

    def as_rows(
        self, num_nodes: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(A, b)``: one row ``A v <= b`` per finite end, on ``device``."""
        if not 0 <= self.node < num_nodes:
            raise ValueError(
                f"`node` must index one of the {num_nodes} variables of [theta, x], "
                f"got {self.node}."
            )
        rows, bounds = [], []
        for sign, end in ((-1.0, self.low), (1.0, self.high)):
            if not math.isinf(end):
                row = torch.zeros(num_nodes, dtype=torch.float64, device=device)
                row[self.node] = sign
                rows.append(row)
                bounds.append(sign * end)
        bounds = torch.tensor(bounds, dtype=torch.float64, device=device)
        return torch.stack(rows), bounds


Constraint = Interval | LinearConstraint


class Guidance:
    """Constraints in standardized coordinates, and their score correction.

    Args:
        constraints: The constraints (user units, over ``[theta, x]``).
        mean: ``(num_nodes,)`` standardization mean.
        std: ``(num_nodes,)`` standardization std.
        latent: ``(num_nodes,)`` booleans, ``True`` for the sampled variables;
            constraints may only involve those.

    The constraints are kept on the device of ``mean`` (the estimator's).
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
        num_nodes, device = mean.numel(), mean.device
        rows = [c.as_rows(num_nodes, device) for c in constraints]
        weights = torch.cat([w for w, _ in rows])
        bounds = torch.cat([b for _, b in rows])
        touched = (weights != 0).any(dim=0)
        conditioned = touched & ~latent.to(device)
        if conditioned.any():
            nodes = torch.nonzero(conditioned).flatten().tolist()
            raise ValueError(
                f"Constraints involve variables {nodes}, which are conditioned on; "
                "guidance acts on the sampled (latent) variables only."
            )
        # v = mean + std * u  =>  A v <= b  <=>  (A std) u <= b - A mean.
        mean, std = mean.double(), std.double().to(device)
        scaled = weights * std
        offset = bounds - weights @ mean
        norm = scaled.norm(dim=1, keepdim=True)
        self.weights = (scaled / norm).float()
        self.bounds = (offset / norm.squeeze(1)).float()

    def score_correction(
        self, v: Tensor, denoised: Tensor, sigma: Tensor, step_variance: Tensor
    ) -> Tensor:
        """Gradient of the soft constraints at the Tweedie estimate.

        Args:
            v: ``(batch, n)`` standardized noised values.
            denoised: ``(batch, n)`` the denoiser's output at ``v``.
            sigma: ``(batch, 1)`` noise level :math:`\\sigma`.
            step_variance: The sampler step's :math:`\\sigma_i^2 -
                \\sigma_{i+1}^2`, for the cap of :func:`sharpness`.

        Returns:
            ``(batch, n)`` correction to add to the score.
        """
        weights, bounds = self.weights.to(v), self.bounds.to(v)
        kappa = sharpness(sigma, step_variance)
        with torch.enable_grad():
            clean = denoised.detach().requires_grad_(True)
            slack = bounds - clean @ weights.T  # >= 0 where the constraint holds
            log_weight = F.logsigmoid(kappa * slack).sum()
            (gradient,) = torch.autograd.grad(log_weight, clean)
        return gradient


def sharpness(sigma: Tensor, step_variance: Tensor) -> Tensor:
    """:math:`\\kappa = 1/\\sigma^2`, capped where a sampler step would overshoot.

    A violated constraint pulls with :math:`\\kappa` per unit, which moves a sample
    by :math:`\\Delta\\,\\kappa` in one sampler step, :math:`\\Delta =
    \\hat\\sigma(\\hat\\sigma - \\sigma_{i+1})` (see
    :mod:`sbi_allinone.diffusion.stochastic`). :math:`\\Delta / \\sigma^2` exceeds
    one on EDM's grid; the cap keeps the move below :data:`MAX_GUIDED_MOVE`
    standardized units.

    Args:
        sigma: ``(batch, 1)`` :math:`\\sigma`.
        step_variance: :math:`\\Delta`.

    Returns:
        ``(batch, 1)`` sharpness.
    """
    return torch.minimum(sigma**-2, MAX_GUIDED_MOVE / step_variance)
