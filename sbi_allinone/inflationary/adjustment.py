r"""Linear regression adjustment: the flow models what a linear fit of ``theta`` on
``x`` leaves over.

For each observation the flow's coordinates are shifted by a fixed linear function of
the embedded data,

    r = theta~ - (y W + b),

``theta~`` the standardized (and, for bounded priors, unbounded) parameters and ``y``
the embedding of the z-scored data. The shift depends on ``x`` only, so for every
``x`` it is a translation: the change of variables has unit Jacobian and
``log q(theta | x) = log q_r(theta~ - y W - b | x) - sum log theta_std``, exactly.
The PCA and the noise schedule are then those of the residuals, which are of the
posterior's scale rather than the prior's.

This is the regression adjustment of ABC (Beaumont, Zhang and Balding, 2002) used as
a preconditioner: the untrained denoiser is then the exact denoiser of a Gaussian
posterior with a linear mean, the affine bias that makes sbi's MAF strong on linear
tasks with few simulations. ``W`` is a ridge regression whose penalty is chosen by
generalized cross-validation among a grid that includes "no adjustment"
(``W = 0``), so data that a line does not predict are left alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AdjustedCoordinates", "fit_linear_adjustment"]

#: Ridge penalties tried, in units of the mean squared singular value of ``y``.
RELATIVE_PENALTIES = tuple(10.0**k for k in range(-6, 3))


def fit_linear_adjustment(theta: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Ridge regression ``theta ~ y W + b`` with the penalty chosen by GCV.

    Rows with a NaN or inf in ``y`` are left out.

    Args:
        theta: Standardized training parameters ``(N, D)``.
        y: Their embedded data ``(N, dim_y)``.

    Returns:
        ``W`` ``(dim_y, D)`` and ``b`` ``(D,)``, in ``theta``'s dtype; ``W = 0`` and
        ``b`` the mean of ``theta`` when no penalty beats leaving ``theta`` alone.
    """
    finite = torch.isfinite(y).all(-1) & torch.isfinite(theta).all(-1)
    theta64, y64 = theta[finite].double(), y[finite].double()
    theta_mean, y_mean = theta64.mean(0), y64.mean(0)
    centred_theta, centred_y = theta64 - theta_mean, y64 - y_mean
    u, s, vh = torch.linalg.svd(centred_y, full_matrices=False)
    projected = u.T @ centred_theta  # (rank, D)
    num = centred_theta.shape[0]
    # One degree of freedom for the intercept, which every candidate has.
    best_shrink, best_score = None, _gcv(centred_theta.square().sum(), 1.0, num)
    mean_square = s.square().mean()
    for relative in RELATIVE_PENALTIES:
        shrink = s.square() / (s.square() + relative * mean_square)  # (rank,)
        residual = centred_theta - u @ (shrink.unsqueeze(-1) * projected)
        score = _gcv(residual.square().sum(), 1.0 + shrink.sum().item(), num)
        if score < best_score:
            best_shrink, best_score = shrink, score
    weight = torch.zeros(y.shape[-1], theta.shape[-1], dtype=torch.float64)
    if best_shrink is not None:
        safe_s = torch.where(s > 0, s, torch.ones_like(s))
        weight = vh.T @ ((best_shrink / safe_s).unsqueeze(-1) * projected)
    bias = theta_mean - y_mean @ weight
    return weight.to(theta.dtype), bias.to(theta.dtype)


def _gcv(residual_sum_of_squares: Tensor, dof: float, num: int) -> float:
    """Generalized cross-validation score of a linear smoother."""
    if dof >= num:
        return math.inf
    return float(num * residual_sum_of_squares / (num - dof) ** 2)


class AdjustedCoordinates(nn.Module):
    """Parameters <-> the flow's coordinates: unbounded, standardized, adjusted and
    rotated into the PCA basis of the residuals. A base of
    :class:`~sbi_allinone.inflationary.estimator.InflationaryFlowEstimator`, which
    sets ``theta_transform`` and the standardization.

    Buffers ``basis`` ``(D, D)``, ``adjustment_weight`` ``(dim_y, D)`` and
    ``adjustment_bias`` ``(D,)`` (zeros: no adjustment).
    """

    def _register_coordinates(
        self, basis: Tensor, adjustment: tuple[Tensor, Tensor] | None, dim_y: int
    ) -> None:
        self.register_buffer("basis", basis)
        if adjustment is None:
            adjustment = (
                basis.new_zeros(dim_y, len(basis)),
                basis.new_zeros(len(basis)),
            )
        self.register_buffer("adjustment_weight", adjustment[0])
        self.register_buffer("adjustment_bias", adjustment[1])

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "adjustment_weight" not in self._buffers:  # saved before the adjustment
            self._register_coordinates(self.basis, None, self.dim_y)

    def shift(self, y: Tensor) -> Tensor:
        """The adjustment ``y W + b`` ``(B, D)`` of embedded data ``(B, dim_y)``."""
        return torch.addmm(self.adjustment_bias, y, self.adjustment_weight)

    def to_pca(self, theta: Tensor, y: Tensor) -> Tensor:
        """Parameters ``(B, D)`` given embedded data ``y`` ``(B, dim_y)`` (or
        ``(1, dim_y)``) -> the flow's coordinates ``u`` ``(B, D)``."""
        if self.theta_transform is not None:
            theta = self.theta_transform.inv(theta)
        return (self._standardize(theta) - self.shift(y)) @ self.basis

    def from_pca(self, u: Tensor, y: Tensor) -> Tensor:
        """The flow's coordinates ``(B, D)`` given ``y`` -> parameters ``(B, D)``."""
        theta = self._unstandardize(u @ self.basis.T + self.shift(y))
        if self.theta_transform is not None:
            theta = self.theta_transform(theta)
        return theta
