"""Fixed validation draws: random numbers that are functions of the example.

A diffusion model's loss is an expectation over noise levels and noise; its
validation loss is only comparable between epochs when every validation example
gets the same draws each time, whatever order the loader yields it in. Here the
draws are a deterministic function of the example's values and a draw index.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["fixed_draws"]


def fixed_draws(
    rows: Tensor, num_uniforms: int, num_normals: int, draw: int = 0
) -> tuple[Tensor, Tensor]:
    """Uniforms and standard normals that are fixed functions of each row.

    A hash of the row's values (rounded to 1e-4, NaN as 0) seeds a Weyl sequence
    ``frac(seed * counter * golden ratio)``; normals come from pairs of its values
    by Box-Muller.

    Args:
        rows: ``(batch, features)`` values identifying each example.
        num_uniforms: Uniforms in ``(0, 1)`` per row.
        num_normals: Standard normals per row.
        draw: Index of the draw; different draws give different numbers.

    Returns:
        ``(batch, num_uniforms)`` uniforms (float64) and ``(batch, num_normals)``
        normals (float64).
    """
    keys = (rows.double() * 1e4).round().nan_to_num(0).long() % 1_000_003
    weights = torch.arange(1, rows.shape[1] + 1, device=rows.device) * 7919
    seeds = (keys * weights).sum(-1) % (2**31 - 1)
    per_draw = num_uniforms + 2 * num_normals
    first = 1 + draw * per_draw
    counters = torch.arange(
        first, first + per_draw, device=rows.device, dtype=torch.float64
    )
    golden = (math.sqrt(5) - 1) / 2
    uniforms = torch.frac(seeds.double().unsqueeze(-1) * counters * golden)
    uniforms = uniforms.clamp(1e-6, 1 - 1e-6)
    u1 = uniforms[:, num_uniforms : num_uniforms + num_normals]
    u2 = uniforms[:, num_uniforms + num_normals :]
    normals = torch.sqrt(-2 * u1.log()) * torch.cos(2 * math.pi * u2)
    return uniforms[:, :num_uniforms], normals
