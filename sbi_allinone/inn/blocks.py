"""Invertible building blocks: affine coupling, activation normalization, mixing.

Every block maps ``u -> v`` with ``forward(u, context) -> (v, log_det)`` and back with
``inverse(v, context) -> u``; ``u`` and ``v`` are ``(batch, dim)``, ``context`` is
``(batch, context_dim)`` (or ``None`` for an unconditional block), ``log_det`` is
``(batch,)`` and holds ``log |det dv/du|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "FixedPermutation",
    "FixedRotation",
    "InvertibleSequence",
]


def soft_clamp(s: Tensor, clamp: float) -> Tensor:
    """Bound log-scales smoothly to ``(-clamp, clamp)``; the identity near zero.

    Unbounded exponents let a single coupling multiply by ``e^{20}`` early in training,
    which breaks inversion in float32; the paper soft-clamps them at about 2.
    """
    return clamp * torch.tanh(s / clamp)


def _subnet(
    in_features: int, out_features: int, hidden: int, layers: int
) -> nn.Sequential:
    """Fully connected subnet whose last layer starts at zero (identity coupling)."""
    widths = [in_features] + [hidden] * layers
    modules: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        modules += [nn.Linear(a, b), nn.ReLU()]
    last = nn.Linear(widths[-1], out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*modules, last)


@dataclass(frozen=True)
class CoreDefaults:
    """The INN core's architecture defaults, defined once (used by
    :func:`build_core`, :class:`AffineCoupling` and :func:`sbi_allinone.inn_nn`)."""

    num_blocks: int = 6
    hidden_features: int = 128
    num_layers: int = 2
    clamp: float = 2.0
    mixing: str = "permutation"


CORE_DEFAULTS = CoreDefaults()


class AffineCoupling(nn.Module):
    """Two-sided affine coupling (the INN paper's block): both halves are transformed.

    ``v1 = u1 * exp(s2(u2, c)) + t2(u2, c)``, then
    ``v2 = u2 * exp(s1(v1, c)) + t1(v1, c)``,
    with soft-clamped log-scales ``s``. For a single dimension there is nothing to
    couple with, and the block is an affine map whose scale and shift depend on the
    context only.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        hidden_features: int = CORE_DEFAULTS.hidden_features,
        num_layers: int = CORE_DEFAULTS.num_layers,
        clamp: float = CORE_DEFAULTS.clamp,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"`dim` must be at least 1, got {dim}.")
        if dim == 1 and context_dim == 0:
            raise ValueError(
                "A coupling over a single dimension needs a context to depend on; got "
                "`dim=1` and `context_dim=0`."
            )
        self.dim, self.clamp = dim, clamp
        self.split = dim // 2
        first, second = self.split, dim - self.split
        # subnet_a transforms the first half from the second (+context) and vice versa.
        self.subnet_a = (
            _subnet(second + context_dim, 2 * first, hidden_features, num_layers)
            if first > 0
            else None
        )
        self.subnet_b = _subnet(
            first + context_dim, 2 * second, hidden_features, num_layers
        )

    def _scale_shift(
        self, subnet: nn.Module, given: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        inputs = given if context is None else torch.cat([given, context], dim=-1)
        s, t = subnet(inputs).chunk(2, dim=-1)
        return soft_clamp(s, self.clamp), t

    def forward(
        self, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        u1, u2 = u[:, : self.split], u[:, self.split :]
        log_det = u.new_zeros(u.shape[0])
        if self.subnet_a is not None:
            s, t = self._scale_shift(self.subnet_a, u2, context)
            u1 = u1 * s.exp() + t
            log_det = log_det + s.sum(-1)
        s, t = self._scale_shift(self.subnet_b, u1, context)
        v2 = u2 * s.exp() + t
        return torch.cat([u1, v2], dim=-1), log_det + s.sum(-1)

    def inverse(self, v: Tensor, context: Tensor | None = None) -> Tensor:
        v1, v2 = v[:, : self.split], v[:, self.split :]
        s, t = self._scale_shift(self.subnet_b, v1, context)
        u2 = (v2 - t) * (-s).exp()
        if self.subnet_a is not None:
            s, t = self._scale_shift(self.subnet_a, u2, context)
            v1 = (v1 - t) * (-s).exp()
        return torch.cat([v1, u2], dim=-1)


class ActNorm(nn.Module):
    """Per-dimension affine map initialized from the first training batch (Glow).

    On the first forward pass in training mode the scale and shift are set so that the
    batch leaves with zero mean and unit variance; afterwards they are ordinary
    parameters.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, u: Tensor) -> None:
        std = u.std(0).clamp_min(1e-6) if u.shape[0] > 1 else torch.ones_like(u[0])
        self.log_scale.copy_(-std.log())
        self.shift.copy_(-u.mean(0) / std)
        self.initialized.fill_(True)

    def forward(
        self, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._initialize(u)
        v = u * self.log_scale.exp() + self.shift
        return v, self.log_scale.sum().expand(u.shape[0])

    def inverse(self, v: Tensor, context: Tensor | None = None) -> Tensor:
        return (v - self.shift) * (-self.log_scale).exp()


class FixedPermutation(nn.Module):
    """A fixed random permutation of the dimensions (volume-preserving)."""

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        permutation = torch.randperm(dim, generator=generator)
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def forward(
        self, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return u[:, self.permutation], u.new_zeros(u.shape[0])

    def inverse(self, v: Tensor, context: Tensor | None = None) -> Tensor:
        return v[:, self.inverse_permutation]


class FixedRotation(nn.Module):
    """A fixed random orthogonal matrix: mixes all dimensions, volume-preserving."""

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        gaussian = torch.randn(dim, dim, generator=generator).double()
        q, r = torch.linalg.qr(gaussian)
        # Sign fix makes Q Haar-distributed rather than biased by the QR convention.
        matrix = q * torch.sign(torch.diagonal(r))
        self.register_buffer("matrix", matrix.to(torch.get_default_dtype()))

    def forward(
        self, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        # slogdet and solve rather than 0 and the transpose: the stored matrix is
        # orthogonal only to the precision of its dtype.
        log_det = torch.linalg.slogdet(self.matrix)[1]
        return u @ self.matrix.T, log_det.expand(u.shape[0])

    def inverse(self, v: Tensor, context: Tensor | None = None) -> Tensor:
        return torch.linalg.solve(self.matrix, v.T).T


class InvertibleSequence(nn.Module):
    """Blocks applied in order; ``log_det`` adds up."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(
        self, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        log_det = u.new_zeros(u.shape[0])
        for block in self.blocks:
            u, block_log_det = block(u, context)
            log_det = log_det + block_log_det
        return u, log_det

    def inverse(self, v: Tensor, context: Tensor | None = None) -> Tensor:
        for block in reversed(self.blocks):
            v = block.inverse(v, context)
        return v


def build_core(
    dim: int,
    context_dim: int = 0,
    num_blocks: int = CORE_DEFAULTS.num_blocks,
    hidden_features: int = CORE_DEFAULTS.hidden_features,
    num_layers: int = CORE_DEFAULTS.num_layers,
    clamp: float = CORE_DEFAULTS.clamp,
    mixing: str = CORE_DEFAULTS.mixing,
    seed: int = 0,
) -> InvertibleSequence:
    """The INN core: ``num_blocks`` times [ActNorm, AffineCoupling, mixing].

    Args:
        dim: Number of dimensions transformed.
        context_dim: Size of the condition every coupling subnet sees (0: none).
        num_blocks: Number of coupling blocks.
        hidden_features: Width of the coupling subnets.
        num_layers: Hidden layers per subnet.
        clamp: Soft clamp of the log-scales.
        mixing: ``"permutation"`` (fixed random permutation) or ``"rotation"``
            (fixed random orthogonal matrix) after each coupling.
        seed: Seed of the fixed permutations / rotations.

    Returns:
        The invertible network.
    """
    if mixing not in ("permutation", "rotation"):
        raise ValueError(
            f"`mixing` must be 'permutation' or 'rotation', got {mixing!r}."
        )
    if num_blocks < 1:
        raise ValueError(f"`num_blocks` must be at least 1, got {num_blocks}.")
    generator = torch.Generator().manual_seed(seed)
    mix = FixedPermutation if mixing == "permutation" else FixedRotation
    blocks: list[nn.Module] = []
    for _ in range(num_blocks):
        blocks += [
            ActNorm(dim),
            AffineCoupling(dim, context_dim, hidden_features, num_layers, clamp),
            mix(dim, generator),
        ]
    return InvertibleSequence(blocks)
