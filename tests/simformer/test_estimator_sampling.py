"""Joint score estimator loss and the samplers, checked against a Gaussian oracle."""

import math

import pytest
import torch

from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.sampling import ode_log_prob, sample_ode, sample_sde
from sbi_allinone.simformer.sde import VESDE, VPSDE

# Standardized joint of (theta_1, theta_2, x_1): x_1 = (theta_1 + theta_2) / sqrt(2)
# blurred, so that every conditional is a known Gaussian.
COV = torch.tensor(
    [[1.0, 0.3, 0.6], [0.3, 1.0, 0.5], [0.6, 0.5, 1.0]], dtype=torch.float64
)


def _estimator(sde, attention="dense", graph=None, n=3):
    net = SimformerNet(n, num_layers=1).double()
    return SimformerEstimator(
        net, sde, 2, torch.zeros(n), torch.ones(n), graph=graph, attention=attention
    ).double()


class GaussianOracle(SimformerEstimator):
    """Exact conditional score of the diffused Gaussian joint (clean conditions)."""

    def score(self, values, t, condition_mask, missing=None):
        c = condition_mask[0]
        assert (condition_mask == c).all(), "the oracle takes one condition mask"
        lat = ~c
        m, s = self.sde.mean_factor(t), self.sde.std(t)  # (batch, 1)
        sll, slc, scc = COV[lat][:, lat], COV[lat][:, c], COV[c][:, c]
        gain = slc @ torch.linalg.inv(scc)
        mean = m * (values[:, c] @ gain.T)
        eye = torch.eye(int(lat.sum()), dtype=COV.dtype)
        cov = m[..., None] ** 2 * (sll - gain @ slc.T) + s[..., None] ** 2 * eye
        out = torch.zeros_like(values)
        residual = (values[:, lat] - mean).unsqueeze(-1)
        out[:, lat] = -torch.linalg.solve(cov, residual).squeeze(-1)
        return out


def _oracle(sde):
    net = SimformerNet(3, num_layers=1).double()
    return GaussianOracle(net, sde, 2, torch.zeros(3), torch.ones(3)).double()


def _posterior(x):
    gain = COV[:2, 2:] / COV[2, 2]
    return gain.flatten() * x, COV[:2, :2] - gain @ COV[2:, :2]


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=repr)
def test_sde_and_ode_sample_the_exact_conditional(sde):
    torch.manual_seed(1)
    estimator = _oracle(sde)
    n = 2000
    values = torch.zeros(n, 3, dtype=torch.float64)
    values[:, 2] = 1.2
    condition = torch.tensor([False, False, True]).expand(n, 3)
    missing = torch.zeros(n, 3, dtype=torch.bool)
    mean, cov = _posterior(1.2)
    for samples in (
        sample_sde(estimator, values, condition, missing, steps=200),
        sample_ode(estimator, values, condition, missing, steps=100),
    ):
        assert torch.equal(samples[:, 2], values[:, 2])  # conditions stay clamped
        assert torch.allclose(samples[:, :2].mean(0), mean, atol=0.06)
        assert torch.allclose(torch.cov(samples[:, :2].T), cov, atol=0.06)


@pytest.mark.parametrize("exact_below", [10, 0], ids=["exact", "hutchinson"])
def test_ode_log_prob_matches_the_gaussian(exact_below):
    torch.manual_seed(2)
    estimator = _oracle(VPSDE())
    theta = torch.tensor([[0.2, -0.1], [0.9, 0.7], [-0.5, 0.4]], dtype=torch.float64)
    # Conditioning on x = 0 keeps the conditional mean at 0, where the base
    # N(0, m^2 + sigma^2) at t_max is exact up to ~1e-3; a nonzero mean leaves a
    # bias of order m(T) |mean| (VP) or |mean| / sigma_max (VE), ~0.05 nats here.
    values = torch.cat([theta, torch.zeros(3, 1, dtype=torch.float64)], 1)
    condition = torch.tensor([False, False, True]).expand(3, 3)
    missing = torch.zeros(3, 3, dtype=torch.bool)
    mean, cov = _posterior(0.0)
    expected = torch.distributions.MultivariateNormal(mean, cov).log_prob(theta)
    if exact_below:
        got = ode_log_prob(estimator, values, condition, missing, steps=200)
        assert torch.allclose(got, expected, atol=0.01)
    else:
        repeats = values.repeat(400, 1)
        got = (
            ode_log_prob(
                estimator,
                repeats,
                condition.repeat(400, 1),
                missing.repeat(400, 1),
                steps=50,
                exact_below=0,
            )
            .reshape(400, 3)
            .mean(0)
        )
        assert torch.allclose(got, expected, atol=0.1)


def test_loss_ignores_conditioned_and_missing_entries():
    estimator = _estimator(VESDE())
    values = torch.randn(6, 3, dtype=torch.float64)
    values[0, 1] = math.nan
    condition = torch.tensor([[False, False, True]] * 6)
    times = torch.full((6, 1), 0.3, dtype=torch.float64)
    noise = torch.randn(6, 3, dtype=torch.float64)
    loss = estimator.loss(values, condition, times, noise)
    assert loss.shape == (6,) and torch.isfinite(loss).all()

    # Whatever the network says on conditioned or missing entries: same loss.
    original = estimator.net.forward

    def shifted(v, t, c, mask=None):
        out = original(v, t, c, mask)
        return out + 100.0 * (c | torch.isnan(values)).to(out)

    estimator.net.forward = shifted
    assert torch.allclose(estimator.loss(values, condition, times, noise), loss)

    # ... but it does change with what the network says on latent entries.
    estimator.net.forward = lambda v, t, c, mask=None: original(v, t, c, mask) + 1.0
    assert not torch.allclose(estimator.loss(values, condition, times, noise), loss)


def test_missing_entries_do_not_reach_other_tokens():
    estimator = _estimator(VPSDE())
    values = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    condition = torch.zeros(2, 3, dtype=torch.bool)
    missing = torch.tensor([[False, False, True]] * 2)
    t = torch.full((2, 1), 0.5, dtype=torch.float64)
    score = estimator.score(values, t, condition, missing)
    (grad,) = torch.autograd.grad(score[:, :2].sum(), values)
    assert grad[:, 2].abs().max() == 0 and grad[:, :2].abs().max() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="`attention` must be 'dense'"):
        _estimator(VESDE(), attention="sparse")
    with pytest.raises(ValueError, match="needs a dependency `graph`"):
        _estimator(VESDE(), attention="undirected")
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for 3 variables"):
        _estimator(VESDE(), attention="undirected", graph=torch.zeros(2, 2))
