"""The INN paper's calibration error: coverage of central credible intervals.

For each credible level ``q``, the fraction of true parameters that fall inside the
central ``q``-interval of their posterior's marginal (per parameter) is compared with
``q``; the calibration error is the mean of ``|coverage - q|`` over levels and
parameters. 0 is perfect; overconfident posteriors have coverage below ``q``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CalibrationResult", "calibration_error"]


@dataclass(frozen=True)
class CalibrationResult:
    """Coverage of central credible intervals.

    Args:
        levels: Nominal levels ``(num_levels,)``.
        coverage: Observed coverage ``(num_levels, dim_theta)``.
        error: Mean of ``|coverage - levels|`` over levels and parameters.
    """

    levels: Tensor
    coverage: Tensor
    error: float


def calibration_error(
    posterior_samples: Tensor, true_theta: Tensor, levels: Tensor | None = None
) -> CalibrationResult:
    """Calibration error of posterior samples against the parameters they came from.

    Args:
        posterior_samples: ``(num_samples, num_observations, dim_theta)``, e.g. from
            ``posterior.sample_batched((num_samples,), x=xs)``.
        true_theta: ``(num_observations, dim_theta)``: the parameters that generated
            each observation (drawn from the prior).
        levels: Nominal credible levels in ``(0, 1)``; default ``0.05, 0.10, ...,
            0.95``.

    Returns:
        Levels, per-parameter coverage and the mean absolute calibration error.
    """
    if posterior_samples.ndim != 3 or posterior_samples.shape[1:] != true_theta.shape:
        raise ValueError(
            "`posterior_samples` must be (num_samples, num_observations, dim_theta) "
            f"matching `true_theta` (num_observations, dim_theta); got "
            f"{tuple(posterior_samples.shape)} and {tuple(true_theta.shape)}."
        )
    if levels is None:
        levels = torch.linspace(0.05, 0.95, 19)
    if ((levels <= 0) | (levels >= 1)).any():
        raise ValueError("`levels` must lie strictly between 0 and 1.")
    # Rank of the true value among its posterior samples, as a quantile in [0, 1].
    quantile = (posterior_samples < true_theta.unsqueeze(0)).float().mean(0)
    inside = (quantile.unsqueeze(0) - 0.5).abs() <= levels.view(-1, 1, 1) / 2
    coverage = inside.float().mean(1)  # (num_levels, dim_theta)
    error = (coverage - levels.unsqueeze(-1)).abs().mean().item()
    return CalibrationResult(levels, coverage, error)
