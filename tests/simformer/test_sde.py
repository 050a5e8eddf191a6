"""Forward SDEs: marginals against simulation, drift/diffusion consistency."""

import math

import pytest
import torch

from sbi_allinone.simformer.sde import VESDE, VPSDE, make_sde


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=repr)
def test_marginal_variance_solves_the_forward_sde(sde):
    # d/dt Var = 2 f Var + g^2 for dx = f x dt + g dW, started from clean data.
    t = torch.linspace(0.05, 1.0, 20, dtype=torch.float64, requires_grad=True)
    var = sde.std(t) ** 2
    (dvar,) = torch.autograd.grad(var.sum(), t)
    expected = 2 * sde.drift_coefficient(t) * var + sde.diffusion(t) ** 2
    assert torch.allclose(dvar, expected, rtol=1e-6)
    m = sde.mean_factor(t) + 0 * t  # VE: a constant, still differentiable here
    (dm,) = torch.autograd.grad(m.sum(), t)
    assert torch.allclose(dm, sde.drift_coefficient(t) * m, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=repr)
def test_euler_maruyama_reaches_the_marginal(sde):
    x0 = torch.full((20000, 1), 2.0, dtype=torch.float64)
    x, steps = x0.clone(), 2000
    times = torch.linspace(1e-5, 0.6, steps + 1, dtype=torch.float64)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        dt = t_next - t
        x = x + sde.drift_coefficient(t) * x * dt
        x = x + sde.diffusion(t) * dt.sqrt() * torch.randn_like(x)
    t = torch.tensor(0.6, dtype=torch.float64)
    assert x.mean().item() == pytest.approx(2 * sde.mean_factor(t).item(), abs=0.05)
    assert x.std().item() == pytest.approx(sde.std(t).item(), rel=0.03)


def test_paper_defaults():
    ve, vp = make_sde("ve"), make_sde("vp")
    assert ve.std(torch.tensor(1.0)).item() == pytest.approx(15.0)
    assert ve.std(torch.tensor(0.0)).item() == pytest.approx(1e-4)
    assert vp.std(torch.tensor(1.0)).item() == pytest.approx(
        math.sqrt(1 - math.exp(-(0.01 + 0.5 * 9.99))), rel=1e-6
    )
    assert ve.loss_weight(torch.tensor(0.5)) == ve.diffusion(torch.tensor(0.5)) ** 2
    assert vp.loss_weight(torch.tensor(0.5)) == vp.std(torch.tensor(0.5)) ** 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="`sde` must be 've', 'vp'"):
        make_sde("edm")
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(beta_min=-1.0)
