r"""The latent calibration check of inflationary flows.

If the flow is exact, a pair ``(theta, x)`` from the joint maps to a latent
``z ~ N(0, Sigma_T)`` whatever ``x`` is, so ``m = z^T Sigma_T^{-1} z`` follows a
chi-squared distribution with ``D`` degrees of freedom. A Kolmogorov-Smirnov test of
the ``m`` against ``chi2_D`` checks the whole map, and the plot shows where it fails
(too many large ``m``: overconfident posteriors).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats
from torch import Tensor

from sbi_allinone.inflationary.estimator import InflationaryFlowEstimator

__all__ = ["LatentCheck", "latent_chi2_check", "plot_latent_chi2_check"]


@dataclass(frozen=True)
class LatentCheck:
    """Result of :func:`latent_chi2_check`.

    Args:
        statistics: Squared Mahalanobis norms ``z^T Sigma_T^{-1} z`` ``(n,)``.
        dim: Degrees of freedom ``D``.
        ks_statistic: Kolmogorov-Smirnov distance to ``chi2_D``.
        p_value: Its p-value (small: the latents are not ``N(0, Sigma_T)``).
    """

    statistics: Tensor
    dim: int
    ks_statistic: float
    p_value: float


def latent_chi2_check(
    estimator: InflationaryFlowEstimator, theta: Tensor, x: Tensor
) -> LatentCheck:
    """Test the latents of joint samples against ``N(0, Sigma_T)``.

    Args:
        estimator: A trained inflationary flow (``inference.train()`` returns it).
        theta: Parameters ``(n, D)`` from the prior.
        x: Their simulations ``(n, *x_shape)``.

    Returns:
        The statistics and the KS test against ``chi2_D``.
    """
    if theta.ndim != 2 or len(theta) != len(x):
        raise ValueError(
            "`theta` must be (n, D) and `x` (n, *x_shape) with the same n; got "
            f"{tuple(theta.shape)} and {tuple(x.shape)}."
        )
    if len(theta) < 2:
        raise ValueError(f"The check needs at least 2 pairs, got {len(theta)}.")
    z = estimator.inverse_transform(theta, x)
    variance = estimator.schedule.latent_variance().to(z)
    statistics = (z.square() / variance).sum(-1)
    dim = theta.shape[1]
    result = stats.kstest(statistics.double().numpy(), stats.chi2(dim).cdf)
    return LatentCheck(statistics, dim, float(result.statistic), float(result.pvalue))


def plot_latent_chi2_check(check: LatentCheck, ax=None):  # noqa: ANN001, ANN201
    """Histogram of the statistics over the ``chi2_D`` density; returns the axes."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    values = check.statistics.numpy()
    ax.hist(values, bins=40, density=True, alpha=0.6, label="latents of (θ, x)")
    grid = np.linspace(0, max(values.max(), stats.chi2(check.dim).ppf(0.999)), 300)
    ax.plot(grid, stats.chi2(check.dim).pdf(grid), "k", label=f"χ²({check.dim})")
    ax.set(
        xlabel=r"$z^\top \Sigma_T^{-1} z$",
        ylabel="density",
        title=f"latent χ² check: KS p = {check.p_value:.3f}",
    )
    ax.legend()
    return ax
