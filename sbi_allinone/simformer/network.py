r"""The Simformer's network: one token per variable, a masked pre-LN transformer.

Token of variable :math:`i` (Gloeckler et al. 2024, Sec. 3.1):
:math:`[e_{id}(i) \,|\, W_v x_i \,|\, c_i\, e_{cond}]`, a learned identifier embedding,
a linear embedding of the (noisy or clean) value and a learned condition-state vector
multiplied by the condition flag :math:`c_i \in \{0, 1\}`. The diffusion time enters
every block through Gaussian Fourier features; a per-token linear head returns the
network output :math:`F`, and the score is :math:`F / \max(\sigma(t), 10^{-3})`.
Attention masks ``(batch, n, n)`` (token ``i`` attends to ``j`` where ``True``) come
from :mod:`.masks`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["GaussianFourierFeatures", "SimformerNet"]


class GaussianFourierFeatures(nn.Module):
    """Fixed random Fourier features :math:`[\\sin 2\\pi Wt, \\cos 2\\pi Wt]`.

    Args:
        num_features: Output size (even).
        scale: Std of the fixed frequencies ``W``.
    """

    def __init__(self, num_features: int = 128, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.randn(num_features // 2) * scale)

    def forward(self, t: Tensor) -> Tensor:
        """Map times ``(batch, 1)`` to features ``(batch, num_features)``."""
        angles = 2 * math.pi * t * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _Block(nn.Module):
    """Pre-LN transformer block with masked multi-head attention and time input."""

    def __init__(
        self, width: int, num_heads: int, key_size: int, widening: int, time_dim: int
    ) -> None:
        super().__init__()
        self.num_heads, self.key_size = num_heads, key_size
        inner = num_heads * key_size
        self.time = nn.Linear(time_dim, width)
        self.norm_attention = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * inner)
        self.out = nn.Linear(inner, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, widening * width),
            nn.GELU(),
            nn.Linear(widening * width, width),
        )

    def forward(self, h: Tensor, time: Tensor, mask: Tensor | None) -> Tensor:
        batch, n, _ = h.shape
        h = h + self.time(time).unsqueeze(1)
        q, k, v = (
            self.qkv(self.norm_attention(h))
            .view(batch, n, 3, self.num_heads, self.key_size)
            .permute(2, 0, 3, 1, 4)
        )
        attention = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if mask is None else mask.unsqueeze(1)
        )
        h = h + self.out(attention.transpose(1, 2).reshape(batch, n, -1))
        return h + self.mlp(self.norm_mlp(h))


class SimformerNet(nn.Module):
    """Transformer over variable tokens; returns one output per variable.

    Args:
        num_nodes: Number of variables (parameters then data).
        id_dim: Size of the identifier embedding.
        value_dim: Size of the value embedding.
        condition_dim: Size of the condition-state embedding.
        num_layers: Transformer blocks (paper: 6; large variant 8).
        num_heads: Attention heads (paper: 4).
        key_size: Size of each head's keys (paper: 10).
        widening: MLP widening factor (paper: 3; large variant 4).
        time_dim: Number of Gaussian Fourier features of the time (paper: 128).
    """

    def __init__(
        self,
        num_nodes: int,
        id_dim: int = 20,
        value_dim: int = 20,
        condition_dim: int = 10,
        num_layers: int = 6,
        num_heads: int = 4,
        key_size: int = 10,
        widening: int = 3,
        time_dim: int = 128,
    ) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        width = id_dim + value_dim + condition_dim
        self.identifier = nn.Parameter(torch.randn(num_nodes, id_dim) * 0.5)
        self.value = nn.Linear(1, value_dim)
        self.condition = nn.Parameter(torch.randn(condition_dim) * 0.5)
        self.time = GaussianFourierFeatures(time_dim)
        self.blocks = nn.ModuleList(
            _Block(width, num_heads, key_size, widening, time_dim)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def forward(
        self,
        values: Tensor,
        t: Tensor,
        condition_mask: Tensor,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Network output for every variable.

        Args:
            values: Noisy latent and clean conditioned values, ``(batch, num_nodes)``.
            t: Diffusion times, ``(batch, 1)``.
            condition_mask: ``(batch, num_nodes)`` booleans, ``True`` = conditioned.
            attention_mask: ``(batch, num_nodes, num_nodes)`` booleans or ``None``
                (dense attention).

        Returns:
            ``(batch, num_nodes)`` outputs (the score times :math:`\\sigma(t)`).
        """
        batch = values.shape[0]
        tokens = torch.cat(
            [
                self.identifier.expand(batch, -1, -1),
                self.value(values.unsqueeze(-1)),
                condition_mask.unsqueeze(-1).to(values.dtype) * self.condition,
            ],
            dim=-1,
        )
        time = self.time(t)
        for block in self.blocks:
            tokens = block(tokens, time, attention_mask)
        return self.head(self.norm(tokens)).squeeze(-1)
