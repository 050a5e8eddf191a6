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

Taken at :math:`\hat v_0` only, the correction moves just the variables the
constraint reads: a bound on a data variable pushes that variable, and the
parameters follow only as far as later steps' denoising couples them to it.
``through_network=True`` takes the gradient with respect to the noised values
instead, through the denoiser (as diffusion posterior sampling, Chung et al.
2023): :math:`\nabla_{v_\sigma} = J_D^\top \nabla_{\hat v_0}`, where
:math:`J_D = \operatorname{Cov}[v_0 \mid v_\sigma] / \sigma^2` carries the push
to every variable the model correlates with the constrained one. It costs a
backward pass through the network per call.

The constraints themselves (user units, their slack :math:`d`) are in
:mod:`.constraints`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sbi_allinone.simformer.constraints import (
    Constraint,
    FunctionConstraint,
    Interval,
    LinearConstraint,
)

__all__ = [
    "Constraint",
    "FunctionConstraint",
    "Guidance",
    "Interval",
    "LinearConstraint",
    "sharpness",
]

MAX_GUIDED_MOVE = 0.5


class Guidance:
    """Constraints in standardized coordinates, and their score correction.

    Args:
        constraints: The constraints (user units, over ``[theta, x]``).
        mean: ``(num_nodes,)`` standardization mean.
        std: ``(num_nodes,)`` standardization std.
        latent: ``(num_nodes,)`` booleans, ``True`` for the sampled variables;
            interval and linear constraints may only involve those.
        through_network: Differentiate through the denoiser (see the module's
            docstring); the sampler must then pass a ``v`` that requires
            gradients and the denoiser's output with its graph.

    The constraints are kept on the device of ``mean`` (the estimator's). Each
    :class:`FunctionConstraint` is tried once on rows near ``mean``, so that a
    wrong shape or a non-differentiable ``fn`` raises here.
    """

    def __init__(
        self,
        constraints: Sequence[Constraint],
        mean: Tensor,
        std: Tensor,
        latent: Tensor,
        through_network: bool = False,
    ) -> None:
        self.through_network = through_network
        if not constraints:
            raise ValueError("`guidance` needs at least one constraint.")
        for c in constraints:
            if not isinstance(c, Interval | LinearConstraint | FunctionConstraint):
                raise TypeError(
                    "`guidance` entries must be Interval, LinearConstraint or "
                    f"FunctionConstraint, got {type(c).__name__}."
                )
        device = mean.device
        self.mean, self.std = mean, std.to(device)
        self.latent = latent.to(device).bool()
        self.functions = [c for c in constraints if isinstance(c, FunctionConstraint)]
        linear = [c for c in constraints if not isinstance(c, FunctionConstraint)]
        self.weights, self.bounds = _standardized_rows(linear, mean, std, self.latent)
        probe = torch.linspace(
            -0.5, 0.5, mean.numel() + 1, dtype=mean.dtype, device=device
        )
        probe = probe.unsqueeze(1).expand(-1, mean.numel())
        self.slack(probe)

    def slack(self, clean: Tensor) -> tuple[Tensor, Tensor]:
        """Every constraint's :math:`d` and its gradient.

        Args:
            clean: ``(batch, n)`` standardized rows (the Tweedie estimates).

        Returns:
            ``(batch, k)`` :math:`d` in standardized units (``>= 0`` where the
            constraint holds) and ``(batch, k, n)`` its gradient.
        """
        weights, bounds = self.weights.to(clean), self.bounds.to(clean)
        slacks = [bounds - clean @ weights.T]
        gradients = [-weights.expand(clean.shape[0], *weights.shape)]
        mean, std = self.mean.to(clean), self.std.to(clean)
        for constraint in self.functions:
            slack, gradient = constraint.slack(clean, mean, std, self.latent)
            slacks.append(slack)
            gradients.append(gradient)
        return torch.cat(slacks, dim=1), torch.cat(gradients, dim=1)

    def score_correction(
        self, v: Tensor, denoised: Tensor, sigma: Tensor, step_variance: Tensor
    ) -> Tensor:
        """Gradient of the soft constraints at the Tweedie estimate.

        :math:`\\nabla \\sum_k \\log \\operatorname{sigmoid}(\\kappa d_k) = \\sum_k
        \\kappa \\operatorname{sigmoid}(-\\kappa d_k) \\nabla d_k`.

        Args:
            v: ``(batch, n)`` standardized noised values (requiring gradients
                when ``through_network``).
            denoised: ``(batch, n)`` the denoiser's output at ``v`` (with its
                graph when ``through_network``).
            sigma: ``(batch, 1)`` noise level :math:`\\sigma`.
            step_variance: The sampler step's :math:`\\sigma_i^2 -
                \\sigma_{i+1}^2`, for the cap of :func:`sharpness`.

        Returns:
            ``(batch, n)`` correction to add to the score.
        """
        kappa = sharpness(sigma, step_variance)
        slack, gradient = self.slack(denoised.detach())
        weight = kappa * torch.sigmoid(-kappa * slack)
        push = (weight.unsqueeze(-1) * gradient).sum(dim=1)
        if not self.through_network:
            return push
        (push,) = torch.autograd.grad(denoised, v, grad_outputs=push)
        return push * self.latent  # conditioned entries stay


def _standardized_rows(
    constraints: Sequence[Interval | LinearConstraint],
    mean: Tensor,
    std: Tensor,
    latent: Tensor,
) -> tuple[Tensor, Tensor]:
    """``(W, c)``, ``(k, n)`` and ``(k,)``: ``A v <= b`` as unit rows ``W u <= c``."""
    num_nodes, device = mean.numel(), mean.device
    if not constraints:
        return torch.zeros(0, num_nodes, device=device), torch.zeros(0, device=device)
    rows = [c.as_rows(num_nodes, device) for c in constraints]
    weights = torch.cat([w for w, _ in rows])
    bounds = torch.cat([b for _, b in rows])
    conditioned = (weights != 0).any(dim=0) & ~latent
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
    return (scaled / norm).float(), (offset / norm.squeeze(1)).float()


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
