r"""The Simformer's network: one token per variable, a masked pre-LN transformer.

Token of variable :math:`i` (Gloeckler et al. 2024, Sec. 3.1):
:math:`[e_{id}(i) \,|\, W_v x_i \,|\, c_i\, e_{cond}]`, a learned identifier embedding,
a linear embedding of the (noisy or clean) value and a learned condition-state vector
multiplied by the condition flag :math:`c_i \in \{0, 1\}`. Identifiers index the
variable's *kind* (``node_ids``; default: one kind per position), so that the tokens
of one series share an identifier; continuous per-token metadata (a time, a position)
is embedded by :class:`MetadataEmbedding` and added to the token, which is what tells
the tokens of one kind apart and lets their number vary. The noise level enters
every block through Gaussian Fourier features of EDM's :math:`c_{noise} =
\tfrac14\log\sigma`; a per-token linear head returns the network output :math:`F` of
the preconditioned denoiser (:mod:`.estimator`). Attention masks (token ``i`` attends
to ``j`` where ``True``) are ``(n, n)`` or ``(batch, n, n)``, from :mod:`.masks`.

Speed on a CPU: a training batch is a thousand tiny attention problems (4 to 20
tokens, 4 heads of 10). Up to :data:`SMALL_ATTENTION` tokens the attention is written
as broadcast products on the unpermuted ``(batch, n, heads, key)`` layout: forward
and backward took 8.1 ms per layer at 4 tokens and batch 1000, against 11.5 ms for
``scaled_dot_product_attention`` and 9.9 ms for ``einsum`` (batched matrix products
of 4 x 10 matrices). From 6 tokens on, the fused kernel on contiguous heads wins
(at 8 tokens: 11 ms against 33-42 ms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from sbi_allinone.diffusion.embedding import FourierEmbedding
from sbi_allinone.simformer.grouping import ColumnGroups
from sbi_allinone.simformer.tokens import Tokens

__all__ = ["MATMUL_DTYPES", "MetadataEmbedding", "SimformerNet"]

SMALL_ATTENTION = 4

#: Dtypes of the blocks' matrix products: ``"float32"`` (the network's own dtype) or
#: ``"bfloat16"``, which rounds the inputs of each product to 8 significant bits and
#: its output to bfloat16 (the sums into the residual stream keep the network's
#: dtype). A ``(10 000 x 50) @ (50 x 150)`` product took 0.47 ms against 2.6 ms on a
#: CPU with AVX512-BF16; where bfloat16 is emulated it is usually slower. The first
#: block keeps the network's dtype: its inputs are the embedded values, and
#: rounding them to 8 bits blurs a conditioned value by 0.4 % of its size, which
#: moved narrow posteriors (gaussian_mixture, posterior sd 0.017 of the z-scored
#: scale: random-forest C2ST 0.535 in float32, 0.566 with every block in bfloat16,
#: 0.536 with the first block in float32; rounding the weights alone: 0.534).
MATMUL_DTYPES = ("float32", "bfloat16")


def _attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Multi-head attention on ``(batch, n, heads, key)`` tensors.

    Args:
        q, k, v: ``(batch, n, heads, key)``.
        mask: ``(n, n)`` or ``(batch, n, n)`` booleans (``True`` = attend), or
            ``None``.

    Returns:
        ``(batch, n, heads * key)``.
    """
    batch, n, heads, key = q.shape
    if n <= SMALL_ATTENTION:
        # scores[b, i, j, h] and out[b, i, h, :] as broadcast products and sums.
        scores = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) / math.sqrt(key)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(-1), -torch.inf)
        weights = scores.softmax(2).unsqueeze(-1)
        return (weights * v.unsqueeze(1)).sum(2).reshape(batch, n, heads * key)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if torch.is_grad_enabled():
        # Training: contiguous heads are faster forward and backward (13 tokens:
        # 21.9 against 25.9 ms); without autograd the copies cost more than they
        # save (500 rows, 20 tokens: 6.8 against 3.5 ms a layer).
        q, k, v = (t.contiguous() for t in (q, k, v))
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=None if mask is None else mask.unsqueeze(-3)
    )
    return out.transpose(1, 2).reshape(batch, n, heads * key)


def _product(inputs: Tensor, linear: nn.Linear) -> Tensor:
    """``linear(inputs)`` in the dtype of ``inputs`` (the weights cast to it).

    Not ``torch.autocast``: it would also run attention in bfloat16 (slower than
    float32 on CPU, 6.1 against 3.8 ms at 20 tokens and 500 rows) and cannot feed
    the in-place float32 sums of the inference path."""
    dtype = inputs.dtype
    return F.linear(inputs, linear.weight.to(dtype), linear.bias.to(dtype))


def _linear(inputs: Tensor, linear: nn.Linear, dtype: torch.dtype | None) -> Tensor:
    """``linear(inputs)`` with the product computed in ``dtype`` (``None``: the
    inputs' own), returned in the inputs' dtype."""
    if dtype is None:
        return linear(inputs)
    return _product(inputs.to(dtype), linear).to(inputs.dtype)


def _accumulate(
    rows: Tensor, inputs: Tensor, linear: nn.Linear, dtype: torch.dtype | None
) -> None:
    """``rows += linear(inputs)`` in place, for ``(rows, features)`` tensors."""
    if dtype is not None:
        rows.add_(_linear(inputs, linear, dtype))
        return
    rows.addmm_(inputs, linear.weight.t()).add_(linear.bias)


class _Block(nn.Module):
    """Pre-LN transformer block with masked multi-head attention and noise input."""

    def __init__(
        self, width: int, num_heads: int, key_size: int, widening: int, time_dim: int
    ) -> None:
        super().__init__()
        self.num_heads, self.key_size = num_heads, key_size
        # Dtype of the matrix products; None: the network's own.
        self.matmul_dtype: torch.dtype | None = None
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
        dtype = self.matmul_dtype
        h = h + self.time(time).unsqueeze(1)
        qkv = _linear(self.norm_attention(h), self.qkv, dtype)
        q, k, v = qkv.view(batch, n, 3, self.num_heads, self.key_size).unbind(2)
        attended = _attention(q, k, v, mask)
        if torch.is_grad_enabled():
            h = h + _linear(attended, self.out, dtype)
            return h + self._mlp(self.norm_mlp(h), dtype)
        # Without autograd the residual sums accumulate into ``h`` (a new tensor
        # since the time term): no bias copy and no extra pass per product.
        rows = h.view(batch * n, -1)
        _accumulate(rows, attended.reshape(batch * n, -1), self.out, dtype)
        if dtype is not None:
            rows.add_(self._mlp(self.norm_mlp(rows), dtype))
            return h
        first, _, second = self.mlp
        hidden = F.gelu(first(self.norm_mlp(h)))
        _accumulate(rows, hidden.view(batch * n, -1), second, dtype)
        return h

    def _mlp(self, inputs: Tensor, dtype: torch.dtype | None) -> Tensor:
        """The MLP with its products (and GELU) in ``dtype`` (``None``: the inputs'
        own); returns ``inputs.dtype``."""
        if dtype is None:
            return self.mlp(inputs)
        first, _, second = self.mlp
        hidden = F.gelu(_product(inputs.to(dtype), first))
        return _product(hidden, second).to(inputs.dtype)


class MetadataEmbedding(nn.Module):
    """Embedding of continuous per-token metadata, added to the tokens.

    Each metadata channel is z-scored with the given statistics and expanded into
    Gaussian Fourier features (scale 1: a smooth function of the standardized
    value, so that unseen times interpolate); a linear map takes all features to
    the token width. Tokens without metadata (NaN in a channel) get nothing from
    that channel.

    Args:
        mean: Mean per channel ``(num_channels,)``, of the training metadata.
        std: Standard deviation per channel ``(num_channels,)``.
        width: Token width.
        num_features: Fourier features per channel (even).
    """

    def __init__(
        self, mean: Tensor, std: Tensor, width: int, num_features: int = 32
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.features = FourierEmbedding(num_features, "gaussian", scale=1.0)
        self.project = nn.Linear(self.mean.numel() * num_features, width)

    @property
    def num_channels(self) -> int:
        """Number of metadata channels."""
        return self.mean.numel()

    def forward(self, metadata: Tensor) -> Tensor:
        """``(batch, n, num_channels)`` metadata (NaN = none) to ``(batch, n,
        width)`` additions to the tokens."""
        if metadata.shape[-1] != self.num_channels:
            raise ValueError(
                f"`metadata` must have {self.num_channels} channel(s) in its last "
                f"dimension, got shape {tuple(metadata.shape)}."
            )
        known = torch.isfinite(metadata)
        scaled = torch.where(known, (metadata - self.mean) / self.std, 0.0)
        features = self.features(scaled.unsqueeze(-1)) * known.unsqueeze(-1)
        return self.project(features.flatten(-2))


class SimformerNet(nn.Module):
    """Transformer over variable tokens; returns one output per variable.

    Args:
        num_nodes: Number of identifiers: variables (parameters then data), or
            variable kinds when ``node_ids`` are passed to :meth:`forward`.
        id_dim: Size of the identifier embedding.
        value_dim: Size of the value embedding.
        condition_dim: Size of the condition-state embedding.
        num_layers: Transformer blocks (paper: 6; large variant 8).
        num_heads: Attention heads (paper: 4).
        key_size: Size of each head's keys (paper: 10).
        widening: MLP widening factor (paper: 3; large variant 4).
        time_dim: Number of Gaussian Fourier features of the noise level (paper:
            128, of the time).
        metadata_statistics: Mean and standard deviation ``(num_channels,)`` of
            the training metadata, to embed per-token metadata with
            :class:`MetadataEmbedding`; ``None``: no metadata.
        groups: Token index of each of the ``num_nodes`` values, for several
            values per token (:class:`~.grouping.ColumnGroups`); ``None``: one
            token per value.
        matmul_dtype: Dtype of the blocks' matrix products, one of
            :data:`MATMUL_DTYPES` (``"float32"``: the network's own dtype; with
            ``"bfloat16"``, the first block, weights, attention and sums keep it).
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
        metadata_statistics: tuple[Tensor, Tensor] | None = None,
        groups: Sequence[int] | None = None,
        matmul_dtype: str = "float32",
    ) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        width = id_dim + value_dim + condition_dim
        self.groups = None
        slots = 1
        if groups is not None:
            self._check_groups(groups, metadata_statistics)
            self.groups = ColumnGroups(groups)
            num_nodes, slots = self.groups.num_tokens, self.groups.size
        self.identifier = nn.Parameter(torch.randn(num_nodes, id_dim) * 0.5)
        # Grouped tokens see their values and which of them are conditioned.
        self.value = nn.Linear(1 if groups is None else 2 * slots, value_dim)
        self.condition = nn.Parameter(torch.randn(condition_dim) * 0.5)
        self.time = FourierEmbedding(time_dim, "gaussian", scale=16.0)
        self.blocks = nn.ModuleList(
            _Block(width, num_heads, key_size, widening, time_dim)
            for _ in range(num_layers)
        )
        self.set_matmul_dtype(matmul_dtype)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, slots)
        self.metadata = None
        if metadata_statistics is not None:
            self.metadata = MetadataEmbedding(*metadata_statistics, width)

    def forward(
        self,
        values: Tensor,
        c_noise: Tensor,
        condition_mask: Tensor,
        attention_mask: Tensor | None,
        tokens: Tokens | None = None,
    ) -> Tensor:
        """Network output for every token.

        Args:
            values: Scaled noisy latents and clean conditioned values,
                ``(batch, n)``; ``n = num_nodes`` unless ``tokens`` are given.
            c_noise: Noise-level input ``(batch, 1)``.
            condition_mask: ``(batch, n)`` booleans, ``True`` = conditioned.
            attention_mask: ``(n, n)`` or ``(batch, n, n)`` booleans, or ``None``
                (dense).
            tokens: The identifier (variable kind, in ``[0, num_nodes)``) and the
                metadata of each token (metadata only for a network built with
                ``metadata_statistics``); default one token per variable.

        Returns:
            ``(batch, n)`` outputs ``F``.
        """
        if self.groups is not None:
            if tokens is not None:
                raise ValueError("Grouped values and `tokens` cannot be combined.")
            hidden = self._embed_groups(values, condition_mask)
            attention_mask = self.groups.token_mask(attention_mask)
        else:
            hidden = self._embed(values, condition_mask, tokens)
        time = self.time(c_noise)
        for block in self.blocks:
            hidden = block(hidden, time, attention_mask)
        out = self.head(self.norm(hidden))
        return out.squeeze(-1) if self.groups is None else self.groups.scatter(out)

    def set_matmul_dtype(self, dtype: str) -> None:
        """Compute the blocks' matrix products in ``dtype`` (one of
        :data:`MATMUL_DTYPES`) from now on."""
        if dtype not in MATMUL_DTYPES:
            raise ValueError(
                f"`matmul_dtype` must be one of {MATMUL_DTYPES}, got {dtype!r}."
            )
        low = None if dtype == "float32" else getattr(torch, dtype)
        # The first block sees the embedded values: see MATMUL_DTYPES.
        for index, block in enumerate(self.blocks):
            block.matmul_dtype = None if index == 0 else low

    def _check_groups(
        self,
        groups: Sequence[int],
        metadata_statistics: tuple[Tensor, Tensor] | None,
    ) -> None:
        if len(groups) != self.num_nodes:
            raise ValueError(
                f"`groups` must give the token of each of the {self.num_nodes} "
                f"values, got {len(groups)}."
            )
        if metadata_statistics is not None:
            raise ValueError("Grouped values and metadata cannot be combined.")

    def _embed_groups(self, values: Tensor, condition_mask: Tensor) -> Tensor:
        """The input tokens ``(batch, num_tokens, width)`` of grouped values."""
        batch = values.shape[0]
        share = self.groups.conditioned_fraction(condition_mask).to(values.dtype)
        parts = [
            self.identifier.expand(batch, -1, -1),
            self.value(self.groups.gather(values, condition_mask)),
            share.unsqueeze(-1) * self.condition,
        ]
        return torch.cat(parts, dim=-1)

    def _embed(
        self, values: Tensor, condition_mask: Tensor, tokens: Tokens | None
    ) -> Tensor:
        """The input tokens ``(batch, n, width)``."""
        batch, n = values.shape
        metadata = None if tokens is None else tokens.metadata
        if tokens is None:
            if n != self.num_nodes:
                raise ValueError(
                    f"`values` has {n} tokens, the network {self.num_nodes}: pass "
                    "`tokens` to give each token its variable."
                )
            identifier = self.identifier.expand(batch, -1, -1)
        else:
            identifier = self.identifier[tokens.node_ids].expand(batch, n, -1)
        embedded = torch.cat(
            [
                identifier,
                self.value(values.unsqueeze(-1)),
                condition_mask.unsqueeze(-1).to(values.dtype) * self.condition,
            ],
            dim=-1,
        )
        if (metadata is None) != (self.metadata is None):
            raise ValueError(
                "`metadata` must be given exactly when the network embeds metadata "
                f"(it {'does' if self.metadata is not None else 'does not'})."
            )
        return embedded if metadata is None else embedded + self.metadata(metadata)
