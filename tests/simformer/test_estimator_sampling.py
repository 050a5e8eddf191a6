"""The Simformer's denoiser loss and samplers, checked against a Gaussian oracle."""

import math

import pytest
import torch

from sbi_allinone.diffusion.noise import LogNormalNoise, VENoise, VPNoise
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.sampling import ode_log_prob, sample_ode, sample_sde

# Standardized joint of (theta_1, theta_2, x_1): x_1 = (theta_1 + theta_2) / sqrt(2)
# blurred, so that every conditional is a known Gaussian.
COV = torch.tensor(
    [[1.0, 0.3, 0.6], [0.3, 1.0, 0.5], [0.6, 0.5, 1.0]], dtype=torch.float64
)
NOISES = [LogNormalNoise(), VENoise(), VPNoise()]


def _estimator(noise=None, attention="dense", graph=None, n=3):
    net = SimformerNet(n, num_layers=1).double()
    noise = noise or LogNormalNoise()
    return SimformerEstimator(
        net, noise, 2, torch.zeros(n), torch.ones(n), graph=graph, attention=attention
    ).double()


class GaussianOracle(SimformerEstimator):
    """Exact denoiser E[latent | noised latent, clean condition] of the joint."""

    def denoise(self, values, sigma, condition_mask, missing=None, tokens=None):
        c = condition_mask[0]
        assert (condition_mask == c).all(), "the oracle takes one condition mask"
        lat = ~c
        sll, slc, scc = COV[lat][:, lat], COV[lat][:, c], COV[c][:, c]
        gain = slc @ torch.linalg.inv(scc)
        mean = values[:, c] @ gain.T
        cov = sll - gain @ slc.T
        eye = torch.eye(int(lat.sum()), dtype=COV.dtype)
        noised_cov = cov + sigma[..., None] ** 2 * eye  # (batch, L, L)
        residual = (values[:, lat] - mean).unsqueeze(-1)
        out = values.clone()
        out[:, lat] = mean + (cov @ torch.linalg.solve(noised_cov, residual)).squeeze(
            -1
        )
        return out


def _oracle(noise=None):
    net = SimformerNet(3, num_layers=1).double()
    noise = noise or LogNormalNoise()
    return GaussianOracle(net, noise, 2, torch.zeros(3), torch.ones(3)).double()


def _posterior(x):
    gain = COV[:2, 2:] / COV[2, 2]
    return gain.flatten() * x, COV[:2, :2] - gain @ COV[2:, :2]


def _conditioned_rows(n, x=1.2):
    values = torch.zeros(n, 3, dtype=torch.float64)
    values[:, 2] = x
    condition = torch.tensor([False, False, True]).expand(n, 3)
    return values, condition, torch.zeros(n, 3, dtype=torch.bool)


@pytest.mark.parametrize("noise", NOISES, ids=repr)
def test_ode_and_sde_sample_the_exact_conditional(noise):
    torch.manual_seed(1)
    estimator = _oracle(noise)
    values, condition, missing = _conditioned_rows(8000)
    mean, cov = _posterior(1.2)
    for samples in (
        sample_sde(estimator, values, condition, missing, steps=200),
        sample_ode(estimator, values, condition, missing, steps=32),
        sample_ode(estimator, values, condition, missing, 32, solver="heun"),
    ):
        assert torch.equal(samples[:, 2], values[:, 2])  # conditions stay clamped
        assert torch.allclose(samples[:, :2].mean(0), mean, atol=0.05)
        assert torch.allclose(torch.cov(samples[:, :2].T), cov, atol=0.05)


def test_ode_sampler_is_deterministic_given_the_start():
    estimator = _oracle()
    values, condition, missing = _conditioned_rows(5)
    torch.manual_seed(0)
    first = sample_ode(estimator, values, condition, missing, steps=8)
    torch.manual_seed(0)
    assert torch.equal(sample_ode(estimator, values, condition, missing, 8), first)
    with pytest.raises(ValueError, match="solver"):
        sample_ode(estimator, values, condition, missing, 8, solver="euler")


def test_multistep_grid_is_uniform_in_log_noise_and_edm_is_selectable(monkeypatch):
    from sbi_allinone.simformer import sampling

    estimator = _oracle()
    values, condition, missing = _conditioned_rows(4000)
    mean, cov = _posterior(1.2)
    seen = []
    original = sampling.multistep

    orders = []

    def recording(denoise, v, sigmas, latent, order):
        seen.append(sigmas)
        orders.append(order)
        return original(denoise, v, sigmas, latent, order=order)

    monkeypatch.setattr(sampling, "multistep", recording)
    # With an exact denoiser 24 calls on the log grid are as exact as 32 on EDM's
    # (at 16, EDM's grid was off by 0.09 in the covariance, the log grid by 0.03).
    assert sampling.MULTISTEP_GRID == "log" and sampling.FIRST_STEP_TO is None
    for grid, steps in (("log", 24), ("edm", 32)):
        monkeypatch.setattr(sampling, "MULTISTEP_GRID", grid)
        torch.manual_seed(2)
        samples = sample_ode(estimator, values, condition, missing, steps=steps)
        assert torch.allclose(samples[:, :2].mean(0), mean, atol=0.05)
        assert torch.allclose(torch.cov(samples[:, :2].T), cov, atol=0.05)
    noise = estimator.noise
    log_steps = seen[0].log().diff()
    assert torch.allclose(log_steps, log_steps[0].expand_as(log_steps))
    assert seen[1][1] > seen[0][1]  # EDM's rho-grid starts with shorter steps
    assert [len(s) for s in seen] == [24, 32]
    assert orders == [2, 2]  # sampling.MULTISTEP_ORDER, the second order
    assert all(s[0] == pytest.approx(noise.sigma_max) for s in seen)
    assert all(s[-1] == pytest.approx(noise.sigma_min) for s in seen)
    monkeypatch.setattr(sampling, "MULTISTEP_GRID", "cosine")
    with pytest.raises(ValueError, match="MULTISTEP_GRID"):
        sample_ode(estimator, values, condition, missing, steps=20)


@pytest.mark.parametrize("x", [0.0, 1.5])
@pytest.mark.parametrize("exact_below", [10, 0], ids=["exact", "hutchinson"])
def test_ode_log_prob_matches_the_gaussian(exact_below, x):
    torch.manual_seed(2)
    estimator = _oracle()
    theta = torch.tensor([[0.2, -0.1], [0.9, 0.7], [-0.5, 0.4]], dtype=torch.float64)
    # sigma_max = 80 makes the centred base density exact to ~1e-4 nats even
    # for a conditional mean away from 0.
    values = torch.cat([theta, torch.full((3, 1), x, dtype=torch.float64)], 1)
    condition = torch.tensor([False, False, True]).expand(3, 3)
    missing = torch.zeros(3, 3, dtype=torch.bool)
    mean, cov = _posterior(x)
    expected = torch.distributions.MultivariateNormal(mean, cov).log_prob(theta)
    if exact_below:
        # Heun's error falls as steps^-2: 0.046, 0.015, 0.004 nats at 32, 64, 128.
        got = ode_log_prob(estimator, values, condition, missing, steps=128)
        assert torch.allclose(got, expected, atol=0.01)
    else:
        repeats = 400
        got = ode_log_prob(
            estimator,
            values.repeat(repeats, 1),
            condition.repeat(repeats, 1),
            missing.repeat(repeats, 1),
            steps=32,
            exact_below=0,
        )
        assert torch.allclose(got.reshape(repeats, 3).mean(0), expected, atol=0.1)


def test_denoiser_is_edm_preconditioned():
    estimator = _estimator()
    values, condition = (
        torch.randn(4, 3, dtype=torch.float64),
        torch.zeros(4, 3, dtype=torch.bool),
    )
    sigma = torch.full((4, 1), 2.0, dtype=torch.float64)
    # F = 0 gives D = c_skip x = x / (1 + sigma^2).
    estimator.net.forward = lambda *args: torch.zeros(4, 3, dtype=torch.float64)
    assert torch.allclose(estimator.denoise(values, sigma, condition), values / 5)
    score = estimator.score(values, sigma, condition)
    assert torch.allclose(score, (values / 5 - values) / 4)


def test_loss_ignores_conditioned_and_missing_entries():
    estimator = _estimator()
    values = torch.randn(6, 3, dtype=torch.float64)
    values[0, 1] = math.nan
    condition = torch.tensor([[False, False, True]] * 6)
    sigma = torch.full((6, 1), 0.3, dtype=torch.float64)
    noise = torch.randn(6, 3, dtype=torch.float64)
    loss = estimator.loss(values, condition, fixed=(sigma, noise))
    assert loss.shape == (6,) and torch.isfinite(loss).all()

    # Whatever the network says on conditioned or missing entries: same loss.
    original = estimator.net.forward

    def shifted(v, c_noise, c, mask, tokens=None):
        out = original(v, c_noise, c, mask, tokens)
        return out + 100.0 * (c | torch.isnan(values)).to(out)

    estimator.net.forward = shifted
    assert torch.allclose(estimator.loss(values, condition, fixed=(sigma, noise)), loss)

    # ... but it does change with what the network says on latent entries.
    estimator.net.forward = lambda v, s, c, mask, tokens=None: (
        original(v, s, c, mask, tokens) + 1.0
    )
    assert not torch.allclose(
        estimator.loss(values, condition, fixed=(sigma, noise)), loss
    )


def test_missing_entries_do_not_reach_other_tokens():
    estimator = _estimator()
    values = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    condition = torch.zeros(2, 3, dtype=torch.bool)
    missing = torch.tensor([[False, False, True]] * 2)
    sigma = torch.full((2, 1), 0.5, dtype=torch.float64)
    score = estimator.score(values, sigma, condition, missing=missing)
    (grad,) = torch.autograd.grad(score[:, :2].sum(), values)
    assert grad[:, 2].abs().max() == 0 and grad[:, :2].abs().max() > 0


def test_weight_average_is_used_in_eval_mode_only():
    estimator = _estimator()
    with torch.no_grad():
        for p in estimator.net.parameters():
            p.add_(1.0)
    assert estimator.network is estimator.net  # training mode: live weights
    estimator.eval()
    assert estimator.network is estimator.average.module
    estimator.update_average()  # the first update copies the live weights
    live, averaged = estimator.net.head.bias, estimator.average.module.head.bias
    assert torch.equal(live, averaged)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`attention` must be 'dense'"):
        _estimator(attention="sparse")
    with pytest.raises(ValueError, match="needs a dependency `graph`"):
        _estimator(attention="undirected")
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for 3 variables"):
        _estimator(attention="undirected", graph=torch.zeros(2, 2))
