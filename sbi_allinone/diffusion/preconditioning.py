r"""EDM preconditioning (Karras et al. 2022, Table 1), per dimension or scalar.

A denoiser :math:`D(x; \sigma) = c_{skip} x + c_{out} F(c_{in} x, c_{noise})` of data
with variance :math:`\sigma_d^2` under noise of variance :math:`\sigma^2` uses

.. math::
    c_{in} = (\sigma^2 + \sigma_d^2)^{-1/2},\quad
    c_{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2},\quad
    c_{out} = \sqrt{\frac{\sigma^2 \sigma_d^2}{\sigma^2 + \sigma_d^2}},\quad
    c_{noise} = \tfrac14 \log \sigma,

so that ``F``'s input and its regression target
:math:`(x_0 - c_{skip} x) / c_{out}` have unit variance at every noise level. The
Simformer uses a scalar :math:`\sigma` and :math:`\sigma_d = 1` (standardized
variables); the inflationary flow a per-direction :math:`\sigma^2 = \gamma_i(t)`,
:math:`\sigma_d^2 = \lambda_i` (its PCA eigenvalues).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Preconditioning", "edm_preconditioning"]


class Preconditioning(NamedTuple):
    """The four coefficients; each broadcasts like the variances they came from."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def edm_preconditioning(
    noise_variance: Tensor, data_variance: Tensor | float = 1.0
) -> Preconditioning:
    """EDM's coefficients for noise variance :math:`\\sigma^2` and data variance
    :math:`\\sigma_d^2`.

    Args:
        noise_variance: :math:`\\sigma^2`, any shape, positive.
        data_variance: :math:`\\sigma_d^2`, broadcastable to ``noise_variance``.

    Returns:
        ``(c_skip, c_out, c_in, c_noise)`` broadcast together; ``c_noise`` is
        :math:`\\frac14\\log\\sigma`.

    Example:
        At small noise the denoiser passes its input through (``c_skip`` near
        1), at large noise the network alone predicts the data (``c_skip`` near 0,
        ``c_out`` near the data's standard deviation):

        >>> c = edm_preconditioning(torch.tensor([1e-4, 1.0, 1e4]))
        >>> c.c_skip
        tensor([9.9990e-01, 5.0000e-01, 9.9990e-05])
        >>> c.c_out
        tensor([0.0100, 0.7071, 0.9999])
    """
    total = data_variance + noise_variance
    return Preconditioning(
        c_skip=data_variance / total,
        c_out=torch.sqrt(data_variance * noise_variance / total),
        c_in=total.rsqrt(),
        c_noise=0.125 * torch.log(noise_variance),
    )
