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
the standardized coordinates :math:`u = (v - \mu)/s` the sampler works in (rows
rescaled to unit norm, so that :math:`d` is a distance in standard deviations and
:math:`\kappa` has the same meaning for every constraint). A nonlinear constraint
:math:`c(v) \le 0` (:class:`FunctionConstraint`) is evaluated on :math:`\hat v_0`
converted back to user units, with :math:`d = -c / \lVert \nabla_u c \rVert` (the
norm over the latent entries, held fixed when differentiating): to first order the
signed distance to the boundary in standard deviations, exact for a linear
:math:`c`, which thus gives the same correction as the :class:`LinearConstraint`.
Its gradient is taken by autograd through :math:`c` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

from sbi_allinone.simformer.shapes import as_matrix, as_tensor

__all__ = [
    "Constraint",
    "FunctionConstraint",
    "Guidance",
    "Interval",
    "LinearConstraint",
    "sharpness",
]

MAX_GUIDED_MOVE = 0.5
MIN_GRADIENT_NORM = 1e-12


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
        empty = torch.nonzero((weights == 0).all(dim=1)).flatten().tolist()
        if weights.shape[0] == 0 or empty:
            raise ValueError(
                "`weights` must have at least one row and no row of zeros (it "
                f"would constrain nothing); got rows {empty[:5]} of zeros in "
                f"{weights.shape[0]} rows."
            )
        bounds = as_tensor(self.bounds, "`bounds`", torch.float64, device).reshape(-1)
        if bounds.numel() == 1:
            bounds = bounds.expand(weights.shape[0])
        if bounds.shape != (weights.shape[0],) or not torch.isfinite(bounds).all():
            raise ValueError(
                f"`bounds` must have {weights.shape[0]} finite entries (one per row "
                f"of `weights`), got {bounds.tolist()!r:.60}."
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
        if isinstance(self.node, bool) or not isinstance(self.node, Integral):
            raise TypeError(f"`node` must be an integer, got {self.node!r:.40}.")
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real | Tensor):
                raise TypeError(f"`{name}` must be a number, got {value!r:.40}.")
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


@dataclass(frozen=True)
class FunctionConstraint:
    r"""Nonlinear constraints :math:`c(v) \le 0` on the variables ``v = [theta, x]``.

    Args:
        fn: Differentiable torch function :math:`c` of rows of ``[theta, x]`` in
            the user's units: ``(batch, num_nodes) -> (batch,)`` for one
            constraint, or ``(batch, k)`` for ``k`` constraints that must all
            hold. A row satisfies constraint ``j`` where ``fn(v)[:, j] <= 0``.
            ``fn`` may read conditioned variables (at their observed values);
            guidance moves the sampled ones only.
        scale: The change of ``fn`` over one standard deviation of the data, so
            that :math:`d = -c / \text{scale}`. Default: the norm of the gradient
            of :math:`c` with respect to the standardized sampled variables at
            :math:`\hat v_0`, which makes :math:`d` the first-order signed
            distance to the boundary (exact for a linear :math:`c`; measured
            more accurate than a fixed scale on a disk). Where the gradient
            vanishes, neither moves the sample.

    Example:
        >>> disk = FunctionConstraint(lambda v: v[:, 0] ** 2 + v[:, 1] ** 2 - 1.0)
    """

    fn: Callable[[Tensor], Tensor]
    scale: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(
                "`fn` must be a callable (batch, num_nodes) -> (batch,) or "
                f"(batch, k), got {type(self.fn).__name__}."
            )
        if self.scale is not None and not (
            math.isfinite(self.scale) and self.scale > 0
        ):
            raise ValueError(f"`scale` must be a positive number, got {self.scale}.")

    def slack(
        self, clean: Tensor, mean: Tensor, std: Tensor, latent: Tensor
    ) -> tuple[Tensor, Tensor]:
        """:math:`d` and its gradient at standardized rows, by autograd through ``fn``.

        Args:
            clean: ``(batch, n)`` standardized rows (the Tweedie estimates).
            mean: ``(n,)`` standardization mean.
            std: ``(n,)`` standardization std.
            latent: ``(n,)`` booleans, ``True`` for the sampled variables.

        Returns:
            ``(batch, k)`` :math:`d` (``>= 0`` where the constraint holds) and
            ``(batch, k, n)`` its gradient with respect to ``clean`` (zero off the
            latents; the normalization is held fixed).
        """
        with torch.enable_grad():
            u = clean.detach().requires_grad_(True)
            value = _checked_value(self.fn, mean + std * u)
            k = value.shape[1]
            gradient = torch.stack(
                [_row_gradient(value[:, j], u, retain=j < k - 1) for j in range(k)],
                dim=1,
            )
        gradient = gradient * latent
        if self.scale is None:
            norm = gradient.norm(dim=-1).clamp_min(MIN_GRADIENT_NORM)
        else:
            norm = torch.full_like(value, self.scale)
        return -value.detach() / norm, -gradient / norm.unsqueeze(-1)


def _checked_value(fn: Callable[[Tensor], Tensor], rows: Tensor) -> Tensor:
    """``fn(rows)`` as ``(batch, k)``, or a clear error."""
    batch, n = rows.shape
    expected = f"rows of shape ({batch}, {n}) to ({batch},) or ({batch}, k)"
    value = fn(rows)
    if not isinstance(value, Tensor) or not value.is_floating_point():
        kind = getattr(value, "dtype", type(value).__name__)
        raise TypeError(f"`fn` must map {expected} floating-point, got {kind}.")
    shape = tuple(value.shape)
    value = value.unsqueeze(1) if value.ndim == 1 else value
    if value.ndim != 2 or value.shape[0] != batch or value.shape[1] == 0:
        raise ValueError(f"`fn` must map {expected}, got {shape}.")
    if not torch.isfinite(value).all():
        raise ValueError(
            "`fn` returned NaN or infinite values; it must be finite on every "
            "row [theta, x] the sampler reaches (Tweedie estimates, which can lie "
            "outside the data's range)."
        )
    if not value.requires_grad:
        raise TypeError(
            f"`fn` must be differentiable, mapping {expected} by torch operations "
            "(no numpy, `.item()`, `.detach()` or comparisons)."
        )
    return value


def _row_gradient(value: Tensor, u: Tensor, retain: bool) -> Tensor:
    """``(batch, n)`` gradient of each row's ``value`` with respect to its ``u``."""
    (gradient,) = torch.autograd.grad(
        value.sum(), u, retain_graph=retain, allow_unused=True
    )
    if gradient is None:
        raise TypeError(
            "`fn` must be differentiable with respect to its input rows "
            "(batch, num_nodes): its output does not depend on them."
        )
    if not torch.isfinite(gradient).all():
        raise ValueError("The gradient of `fn` is NaN or infinite.")
    return gradient


Constraint = Interval | LinearConstraint | FunctionConstraint


class Guidance:
    """Constraints in standardized coordinates, and their score correction.

    Args:
        constraints: The constraints (user units, over ``[theta, x]``).
        mean: ``(num_nodes,)`` standardization mean.
        std: ``(num_nodes,)`` standardization std.
        latent: ``(num_nodes,)`` booleans, ``True`` for the sampled variables;
            interval and linear constraints may only involve those.

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
    ) -> None:
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
            v: ``(batch, n)`` standardized noised values.
            denoised: ``(batch, n)`` the denoiser's output at ``v``.
            sigma: ``(batch, 1)`` noise level :math:`\\sigma`.
            step_variance: The sampler step's :math:`\\sigma_i^2 -
                \\sigma_{i+1}^2`, for the cap of :func:`sharpness`.

        Returns:
            ``(batch, n)`` correction to add to the score.
        """
        kappa = sharpness(sigma, step_variance)
        slack, gradient = self.slack(denoised.detach())
        weight = kappa * torch.sigmoid(-kappa * slack)
        return (weight.unsqueeze(-1) * gradient).sum(dim=1)


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
