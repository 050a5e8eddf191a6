"""Invertibility and log-determinants of the INN building blocks."""

import pytest
import torch
from torch import nn

from sbi_allinone.inn.blocks import (
    ActNorm,
    AffineCoupling,
    FixedPermutation,
    FixedRotation,
    InvertibleSequence,
    SoftClampedAffineCoupling,
    build_core,
    soft_clamp,
)


def _randomize(module: nn.Module) -> nn.Module:
    """Non-zero weights everywhere: the zero-initialized last layers make a fresh
    block the identity, which would pass any invertibility test."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.5)
    return module


def _jacobian_log_det(block: nn.Module, u: torch.Tensor, context) -> torch.Tensor:
    rows = []
    for i in range(u.shape[0]):
        c = None if context is None else context[i : i + 1]
        jacobian = torch.autograd.functional.jacobian(
            lambda v, c=c: block(v.unsqueeze(0), c)[0].squeeze(0), u[i]
        )
        rows.append(torch.linalg.slogdet(jacobian)[1])
    return torch.stack(rows)


def _one_sided(mask: list[int], context_dim: int) -> SoftClampedAffineCoupling:
    def net(in_features: int, out_features: int) -> nn.Module:
        return _ContextNet(in_features + context_dim, out_features)

    return SoftClampedAffineCoupling(torch.tensor(mask), net, clamp=2.0)


class _ContextNet(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, given, context=None):
        inputs = given if context is None else torch.cat([given, context], dim=-1)
        return torch.tanh(self.linear(inputs))


def _inverse(block: nn.Module, v: torch.Tensor, context) -> torch.Tensor:
    """The blocks follow nflows (inverse returns ``(u, log_det)``); the core returns
    ``u`` only."""
    if isinstance(block, InvertibleSequence):
        return block.inverse(v, context)
    return block.inverse(v, context)[0]


# (block factory, dim, context_dim); nflows transforms: inverse gives (u, log_det)
TRANSFORMS = [
    (lambda: _one_sided([1, 0, 1, 0], context_dim=2), 4, 2),
    (lambda: _one_sided([1, 0, 0], context_dim=0), 3, 0),
    (lambda: AffineCoupling(3, context_dim=2, hidden_features=16), 3, 2),
    (lambda: AffineCoupling(1, context_dim=2, hidden_features=16), 1, 2),
    (lambda: AffineCoupling(4, context_dim=0, hidden_features=16), 4, 0),
    (lambda: ActNorm(3), 3, 0),
    (lambda: FixedPermutation(3), 3, 0),
    (lambda: FixedRotation(3), 3, 0),
]
# The core: inverse gives u only
CORES = [
    (lambda: build_core(3, context_dim=2, num_blocks=3, hidden_features=16), 3, 2),
    (lambda: build_core(4, num_blocks=2, hidden_features=16, mixing="rotation"), 4, 0),
]
BLOCKS = TRANSFORMS + CORES


def _inputs(dim: int, context_dim: int, batch: int):
    u = torch.randn(batch, dim, dtype=torch.float64)
    context = (
        torch.randn(batch, context_dim, dtype=torch.float64) if context_dim else None
    )
    return u, context


@pytest.mark.parametrize(("make", "dim", "context_dim"), BLOCKS)
def test_inverse_undoes_forward(make, dim, context_dim):
    block = _randomize(make()).double()
    u, context = _inputs(dim, context_dim, 50)
    v, _ = block(u, context)
    if not isinstance(block, FixedPermutation):  # a permutation may fix a 1-D column
        assert not torch.allclose(v, u)
    torch.testing.assert_close(_inverse(block, v, context), u, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("make", "dim", "context_dim"), BLOCKS)
def test_log_det_matches_autograd(make, dim, context_dim):
    block = _randomize(make()).double()
    u, context = _inputs(dim, context_dim, 5)
    _, log_det = block(u, context)
    torch.testing.assert_close(log_det, _jacobian_log_det(block, u, context))


@pytest.mark.parametrize(("make", "dim", "context_dim"), TRANSFORMS)
def test_inverse_log_det_is_minus_forward(make, dim, context_dim):
    block = _randomize(make()).double()
    u, context = _inputs(dim, context_dim, 7)
    v, log_det = block(u, context)
    torch.testing.assert_close(block.inverse(v, context)[1], -log_det)


def test_soft_clamp_bounds_and_identity_near_zero():
    s = torch.linspace(-100, 100, 1001)
    assert soft_clamp(s, 2.0).abs().max() <= 2.0
    assert soft_clamp(torch.tensor([3.0]), 2.0).item() < 2.0
    small = torch.tensor([1e-3, -1e-3])
    torch.testing.assert_close(soft_clamp(small, 2.0), small, rtol=1e-5, atol=0)


def test_zero_initialized_coupling_is_identity():
    block = AffineCoupling(3, context_dim=2)
    u = torch.randn(10, 3)
    v, log_det = block(u, torch.randn(10, 2))
    torch.testing.assert_close(v, u)
    torch.testing.assert_close(log_det, torch.zeros(10))


def test_actnorm_initializes_from_first_batch():
    norm = ActNorm(2)
    u = torch.randn(500, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0])
    v, _ = norm(u)
    torch.testing.assert_close(v.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(v.std(0), torch.ones(2), atol=1e-5, rtol=0)
    assert bool(norm.initialized)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="context"):
        AffineCoupling(1, context_dim=0)
    with pytest.raises(ValueError, match="mixing"):
        build_core(3, mixing="shuffle")
    with pytest.raises(ValueError, match="num_blocks"):
        build_core(3, num_blocks=0)


def test_coupling_log_scales_are_soft_clamped():
    # Huge subnet outputs: each of the dim transformed entries contributes at most
    # `clamp` to |log_det| (the two couplings transform dim entries in all).
    block = AffineCoupling(4, context_dim=2, hidden_features=8, clamp=1.5).double()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.normal_(0, 50.0)
    u, context = _inputs(4, 2, 100)
    _, log_det = block(u, context)
    assert log_det.abs().max() <= 4 * 1.5
    assert log_det.abs().max() > 4 * 1.5 * 0.9  # the clamp is reached, not avoided


def test_actnorm_initialization_survives_constant_column_and_single_sample():
    norm = ActNorm(2)
    u = torch.stack([torch.randn(100), torch.zeros(100)], dim=-1)  # zero padding
    v, log_det = norm(u)
    assert torch.isfinite(v).all() and torch.isfinite(log_det).all()
    single = ActNorm(3)
    v, log_det = single(torch.randn(1, 3))
    assert torch.isfinite(v).all() and torch.isfinite(log_det).all()
    torch.testing.assert_close(single.log_scale, torch.zeros(3))


def test_actnorm_initializes_only_in_training_mode():
    norm = ActNorm(2).eval()
    u = torch.randn(50, 2) * 3.0
    v, _ = norm(u)
    torch.testing.assert_close(v, u)
    assert not bool(norm.initialized)


def test_fixed_mixing_follows_the_seed():
    first, second = build_core(6, seed=3), build_core(6, seed=3)
    other = build_core(6, seed=4)
    perms = [
        torch.stack([b._permutation for b in c.blocks[2::3]])
        for c in (first, second, other)
    ]
    torch.testing.assert_close(perms[0], perms[1])
    assert not torch.equal(perms[0], perms[2])
    rotations = [
        build_core(4, mixing="rotation", seed=s).blocks[2].matrix for s in (1, 1)
    ]
    torch.testing.assert_close(rotations[0], rotations[1])


def test_core_exposes_blocks_and_returns_input_from_inverse():
    # The estimator reads the core's size from its first ActNorm and samples
    # through an inverse that returns a tensor.
    core = build_core(5, context_dim=3, num_blocks=2, hidden_features=8)
    assert isinstance(core.blocks[0], ActNorm)
    assert core.blocks[0].log_scale.numel() == 5
    u, context = torch.randn(4, 5), torch.randn(4, 3)
    assert isinstance(core.inverse(core(u, context)[0], context), torch.Tensor)
