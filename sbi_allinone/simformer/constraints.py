r"""Constraints on the variables ``[theta, x]``, for guidance and rejection.

An interval observation :math:`a \le v_i \le b` (:class:`Interval`), linear
constraints :math:`A v \le b` (:class:`LinearConstraint`) and nonlinear ones
:math:`c(v) \le 0` (:class:`FunctionConstraint`). Each gives its signed slack
:math:`d \ge 0` where it holds; :mod:`.guidance` turns slacks into a score
correction.

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
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

from sbi_allinone.simformer.shapes import as_matrix, as_tensor

__all__ = ["Constraint", "FunctionConstraint", "Interval", "LinearConstraint"]

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
