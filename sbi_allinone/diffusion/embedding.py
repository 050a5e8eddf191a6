"""Fourier embedding of the noise level (or time) fed to a denoiser network."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["FourierEmbedding"]


class FourierEmbedding(nn.Module):
    """Features :math:`[\\sin(\\omega c), \\cos(\\omega c)]` of a scalar ``c``.

    Args:
        num_features: Output size (even).
        frequencies: ``"geometric"``: :math:`\\omega_k = \\pi 2^k / 2`,
            ``k < num_features / 2`` (for ``c`` in ``[0, 1]``); ``"gaussian"``:
            fixed :math:`\\omega \\sim 2\\pi\\,\\mathcal N(0, \\text{scale}^2)`
            (random Fourier features, Tancik et al. 2020).
        scale: Std of the Gaussian frequencies.
    """

    def __init__(
        self,
        num_features: int,
        frequencies: Literal["geometric", "gaussian"] = "geometric",
        scale: float = 16.0,
    ) -> None:
        super().__init__()
        if num_features < 2 or num_features % 2:
            raise ValueError(
                f"`num_features` must be even and positive, got {num_features}."
            )
        half = num_features // 2
        if frequencies == "geometric":
            omega = math.pi * 2.0 ** torch.arange(half) / 2
        elif frequencies == "gaussian":
            omega = 2 * math.pi * scale * torch.randn(half)
        else:
            raise ValueError(
                f"`frequencies` must be 'geometric' or 'gaussian', got {frequencies!r}."
            )
        self.register_buffer("frequencies", omega)

    def forward(self, c: Tensor) -> Tensor:
        """``(batch, 1)`` scalars to ``(batch, num_features)`` features."""
        angles = c * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
