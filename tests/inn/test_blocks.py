"""Invertibility and log-determinants of the INN building blocks."""

import pytest
import torch
from torch import nn

from sbi_allinone.inn.blocks import (
    ActNorm,
    AffineCoupling,
    FixedPermutation,
    FixedRotation,
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


# (block factory, dim, context_dim)
BLOCKS = [
    (lambda: AffineCoupling(3, context_dim=2, hidden_features=16), 3, 2),
    (lambda: AffineCoupling(1, context_dim=2, hidden_features=16), 1, 2),
    (lambda: AffineCoupling(4, context_dim=0, hidden_features=16), 4, 0),
    (lambda: ActNorm(3), 3, 0),
    (lambda: FixedPermutation(3), 3, 0),
    (lambda: FixedRotation(3), 3, 0),
    (lambda: build_core(3, context_dim=2, num_blocks=3, hidden_features=16), 3, 2),
    (lambda: build_core(4, num_blocks=2, hidden_features=16, mixing="rotation"), 4, 0),
]


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
    torch.testing.assert_close(block.inverse(v, context), u, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("make", "dim", "context_dim"), BLOCKS)
def test_log_det_matches_autograd(make, dim, context_dim):
    block = _randomize(make()).double()
    u, context = _inputs(dim, context_dim, 5)
    _, log_det = block(u, context)
    torch.testing.assert_close(log_det, _jacobian_log_det(block, u, context))


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
