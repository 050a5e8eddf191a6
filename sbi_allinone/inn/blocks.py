"""Invertible building blocks of the INN core, as ``nflows`` transforms.

Every block is an :class:`nflows.transforms.Transform`: ``forward(u, context)``
returns ``(v, log_det)`` and ``inverse(v, context)`` returns ``(u, -log_det)``, where
``u`` and ``v`` are ``(batch, dim)``, ``context`` is ``(batch, context_dim)`` (or
``None`` for an unconditional block) and ``log_det`` is ``(batch,)``, holding
``log |det dv/du|``. The core the estimator holds, :class:`InvertibleSequence`,
returns only ``u`` from its inverse.

From ``nflows``: the one-sided affine coupling (with the INN's soft-clamped scale),
ActNorm, the permutation and the composition. From ``zuko``: the subnets' MLP.
Hand-written, each with its reason: the context-concatenating subnet wrapper, the
fixed random rotation, and ActNorm's data-dependent initialization.

References:
    L. Ardizzone et al., Analyzing Inverse Problems with Invertible Neural Networks,
    ICLR 2019, https://arxiv.org/abs/1808.04730.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nflows.transforms as nft
import torch
from torch import Tensor, nn
from zuko.nn import MLP

__all__ = [
    "CORE_DEFAULTS",
    "ActNorm",
    "AffineCoupling",
    "CoreDefaults",
    "FixedPermutation",
    "FixedRotation",
    "InvertibleSequence",
    "SoftClampedAffineCoupling",
    "build_core",
    "soft_clamp",
]


def soft_clamp(s: Tensor, clamp: float) -> Tensor:
    r"""Bound log-scales smoothly to ``(-clamp, clamp)``; the identity near zero.

    Unbounded exponents let a single coupling multiply by ``e^{20}`` early in training,
    which breaks inversion in float32; the paper soft-clamps them at about 2. This is
    :math:`\alpha \tanh(s / \alpha)`, slope 1 at zero; the INN papers'
    :math:`\frac{2\alpha}{\pi} \arctan(s / \alpha)` has the same bound but slope
    :math:`2 / \pi` at zero.

    Args:
        s: Unconstrained log-scales, any shape.
        clamp: The bound :math:`\alpha`.

    Returns:
        Clamped log-scales, the shape of ``s``.
    """
    return clamp * torch.tanh(s / clamp)


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


class _Subnet(nn.Module):
    """Fully connected coupling subnet on ``[given half, context]``.

    Hand-written wrapper: ``nflows`` calls a coupling's net as ``net(given, context)``,
    while ``zuko``'s MLP (the paper's plain fully connected subnet) takes one input;
    ``nflows``' own context-aware net is a residual network. The last layer starts at
    zero, so that every coupling starts as the identity.

    Args:
        in_features: Size of ``[given half, context]``.
        out_features: Size of the output (shift and log-scale).
        hidden_features: Width of the hidden layers.
        num_layers: Number of hidden layers.
    """

    def __init__(
        self, in_features: int, out_features: int, hidden_features: int, num_layers: int
    ) -> None:
        super().__init__()
        self.mlp = MLP(
            in_features,
            out_features,
            hidden_features=[hidden_features] * num_layers,
            activation=nn.ReLU,
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, given: Tensor, context: Tensor | None = None) -> Tensor:
        """``(batch, given)``, ``(batch, context_dim)`` -> ``(batch, out_features)``."""
        inputs = given if context is None else torch.cat([given, context], dim=-1)
        return self.mlp(inputs)


class SoftClampedAffineCoupling(nft.AffineCouplingTransform):
    """``nflows``' affine coupling with the INN paper's soft-clamped scale.

    The entries where ``mask > 0`` become ``u * exp(soft_clamp(s)) + t``, with
    ``[t, s]`` the subnet's output on the other entries and the context.
    ``nflows`` 0.14 (the latest release) fixes the scale to ``sigmoid(s + 2) + 1e-3``
    (never above 1.001) and takes no ``scale_activation`` yet, so only the scale is
    overridden here; splitting, merging and the log-determinant stay ``nflows``'.

    Args:
        mask: ``(dim,)``; entries ``> 0`` are transformed, the others condition.
        transform_net_create_fn: ``(in_features, out_features) -> net``, the net called
            as ``net(given, context)``.
        clamp: Soft clamp of the log-scales.
    """

    def __init__(
        self,
        mask: Tensor,
        transform_net_create_fn: Callable[[int, int], nn.Module],
        clamp: float,
    ) -> None:
        super().__init__(mask, transform_net_create_fn)
        self.clamp = clamp

    def _scale_and_shift(self, transform_params: Tensor) -> tuple[Tensor, Tensor]:
        # nflows' layout: shift first, then the unconstrained scale.
        shift = transform_params[:, : self.num_transform_features]
        log_scale = soft_clamp(
            transform_params[:, self.num_transform_features :], self.clamp
        )
        return log_scale.exp(), shift


class AffineCoupling(nft.CompositeTransform):
    """Two-sided affine coupling (the INN paper's block): both halves are transformed.

    ``v1 = u1 * exp(s2(u2, c)) + t2(u2, c)``, then
    ``v2 = u2 * exp(s1(v1, c)) + t1(v1, c)``, with soft-clamped log-scales ``s``: two
    :class:`SoftClampedAffineCoupling` with complementary masks. For a single
    dimension there is nothing to couple with, and the block is an affine map whose
    scale and shift depend on the context only.

    Args:
        dim: Number of dimensions transformed.
        context_dim: Size of the condition the subnets see (0: none).
        hidden_features: Width of the subnets.
        num_layers: Hidden layers per subnet.
        clamp: Soft clamp of the log-scales.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        hidden_features: int = CORE_DEFAULTS.hidden_features,
        num_layers: int = CORE_DEFAULTS.num_layers,
        clamp: float = CORE_DEFAULTS.clamp,
    ) -> None:
        if dim < 1:
            raise ValueError(f"`dim` must be at least 1, got {dim}.")
        if dim == 1 and context_dim == 0:
            raise ValueError(
                "A coupling over a single dimension needs a context to depend on; got "
                "`dim=1` and `context_dim=0`."
            )

        def subnet(in_features: int, out_features: int) -> _Subnet:
            return _Subnet(
                in_features + context_dim, out_features, hidden_features, num_layers
            )

        first_half = (torch.arange(dim) < dim // 2).long()
        masks = [first_half, 1 - first_half]
        # With one dimension the first half is empty: only the context-driven map.
        super().__init__(
            [SoftClampedAffineCoupling(m, subnet, clamp) for m in masks if m.any()]
        )


class ActNorm(nft.ActNorm):
    """``nflows``' per-dimension affine map, initialized from the first training batch.

    On the first forward pass in training mode the scale and shift are set so that the
    batch leaves with zero mean and unit variance (Glow); afterwards they are ordinary
    parameters. Hand-written: the initialization only. ``nflows`` divides by the batch
    standard deviation, which gives ``inf`` for a constant column (the zero padding of
    the ``mmd`` core without noise) and ``nan`` for a batch of one; here the standard
    deviation is floored at ``1e-6`` and a single sample keeps unit scale.

    Args:
        dim: Number of dimensions.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)

    @torch.no_grad()
    def _initialize(self, inputs: Tensor) -> None:
        if inputs.shape[0] > 1:
            std = inputs.std(0).clamp_min(1e-6)
        else:
            std = torch.ones_like(inputs[0])
        self.log_scale.copy_(-std.log())
        self.shift.copy_(-inputs.mean(0) / std)
        self.initialized.fill_(True)


class FixedPermutation(nft.Permutation):
    """``nflows``' permutation of the dimensions, drawn from a given generator.

    ``nflows.transforms.RandomPermutation`` draws from the global random state; the
    core's permutations must follow ``build_core``'s ``seed`` instead.

    Args:
        dim: Number of dimensions.
        generator: Source of the random permutation (``None``: global state).
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__(torch.randperm(dim, generator=generator))


class FixedRotation(nft.Transform):
    """A fixed random orthogonal matrix: mixes all dimensions, volume-preserving.

    Hand-written: ``nflows``' linear transforms (naive, LU, QR, SVD, Householder) are
    all learnable, and ``zuko``'s ``RotationTransform`` is ``exp(A - A^T)``, which
    cannot be handed a Haar-random matrix and covers rotations of determinant +1 only.

    Args:
        dim: Number of dimensions.
        generator: Source of the random matrix (``None``: global state).
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        gaussian = torch.randn(dim, dim, generator=generator).double()
        q, r = torch.linalg.qr(gaussian)
        # Sign fix makes Q Haar-distributed rather than biased by the QR convention.
        matrix = q * torch.sign(torch.diagonal(r))
        self.register_buffer("matrix", matrix.to(torch.get_default_dtype()))

    def _log_det(self, batch: int) -> Tensor:
        # slogdet and solve rather than 0 and the transpose: the stored matrix is
        # orthogonal only to the precision of its dtype.
        return torch.linalg.slogdet(self.matrix)[1].expand(batch)

    def forward(
        self, inputs: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return inputs @ self.matrix.T, self._log_det(inputs.shape[0])

    def inverse(
        self, inputs: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        outputs = torch.linalg.solve(self.matrix, inputs.T).T
        return outputs, -self._log_det(inputs.shape[0])


class InvertibleSequence(nft.CompositeTransform):
    """Blocks applied in order (``nflows``' composition); ``log_det`` adds up.

    Unlike ``nflows``' transforms, :meth:`inverse` returns the input only: the
    estimator samples through the inverse and never uses its log-determinant.

    Args:
        blocks: The transforms, first applied first.
    """

    def __init__(self, blocks: list[nft.Transform]) -> None:
        super().__init__(blocks)

    @property
    def blocks(self) -> nn.ModuleList:
        """The transforms, in the order they are applied."""
        return self._transforms

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        """``v`` ``(batch, dim)`` -> ``u`` ``(batch, dim)``."""
        return super().inverse(inputs, context)[0]


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
        The invertible network: ``core(u, context)`` gives ``(v, log_det)``,
        ``core.inverse(v, context)`` gives ``u``.

    Example:
        >>> core = build_core(3, context_dim=2, num_blocks=2, hidden_features=8)
        >>> v, log_det = core(torch.randn(4, 3), torch.randn(4, 2))
        >>> v.shape, log_det.shape
        (torch.Size([4, 3]), torch.Size([4]))
    """
    if mixing not in ("permutation", "rotation"):
        raise ValueError(
            f"`mixing` must be 'permutation' or 'rotation', got {mixing!r}."
        )
    if num_blocks < 1:
        raise ValueError(f"`num_blocks` must be at least 1, got {num_blocks}.")
    generator = torch.Generator().manual_seed(seed)
    mix = FixedPermutation if mixing == "permutation" else FixedRotation
    blocks: list[nft.Transform] = []
    for _ in range(num_blocks):
        blocks += [
            ActNorm(dim),
            AffineCoupling(dim, context_dim, hidden_features, num_layers, clamp),
            mix(dim, generator),
        ]
    return InvertibleSequence(blocks)
