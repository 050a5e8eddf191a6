"""The conditional inflationary flow against an exactly known model.

With the exact denoiser of a Gaussian ``p(u | y) = N(mu(y), diag s²)`` plugged into
the estimator, the probability-flow ODE is exact, so ``log_prob``, sampling, the
latent map and the chi-squared check can be compared with closed forms.
"""

import pytest
import torch
from torch import nn

from sbi_allinone.inflationary import inflationary_flow_nn
from sbi_allinone.inflationary.calibration import latent_chi2_check
from sbi_allinone.inflationary.denoiser import PreconditionedDenoiser
from sbi_allinone.inflationary.estimator import _fixed_draws

SCALES = torch.tensor([0.6, 0.3])


class ExactGaussianF(nn.Module):
    """``F`` whose preconditioned denoiser is ``E[u | u~, y]`` for
    ``u | y ~ N(0.5 y, diag scales²)``."""

    def __init__(self, schedule, scales: torch.Tensor) -> None:
        super().__init__()
        self.schedule, self.scales = schedule, scales

    def forward(self, scaled, c_noise, context):
        t = c_noise * self.schedule.t_max
        gamma, eigenvalues = self.schedule.gamma(t), self.schedule.eigenvalues
        noised = scaled * torch.sqrt(eigenvalues + gamma)
        mean = 0.5 * context
        variance = self.scales**2
        denoised = mean + variance / (variance + gamma) * (noised - mean)
        c_skip = eigenvalues / (eigenvalues + gamma)
        c_out = torch.sqrt(eigenvalues * gamma / (eigenvalues + gamma))
        return (denoised - c_skip * noised) / c_out


def _exact_estimator(scales=SCALES, coupling=0.0, **kwargs):
    torch.manual_seed(0)
    x = torch.randn(2000, 2)
    theta = torch.randn(2000, 2) @ torch.tensor([[1.5, 0.4], [0.0, 0.8]]) + 1.0
    # With a coupling theta depends on x linearly: the linear adjustment is not 0.
    theta = theta + coupling * x.flip(-1)
    estimator = inflationary_flow_nn(z_score_x="none", **kwargs)(theta, x)
    schedule = estimator.schedule
    exact = ExactGaussianF(schedule, scales)
    estimator.net = PreconditionedDenoiser(exact, schedule, ema_decay=None)
    return estimator.eval()


def _exact_conditional(estimator, x, scales=SCALES):
    """The model's q(theta | x) in parameter space (a Gaussian)."""
    basis, std = estimator.basis, estimator.theta_std
    y = torch.as_tensor(x, dtype=torch.float32).reshape(-1, estimator.dim_y)
    shift = estimator.shift(y)
    mean = ((0.5 * x) @ basis.T + shift) * std + estimator.theta_mean
    linear = torch.diag(std) @ basis
    covariance = linear @ torch.diag(scales**2) @ linear.T
    return torch.distributions.MultivariateNormal(mean, covariance)


@pytest.mark.parametrize("solver", ["heun", "adaptive"])
@pytest.mark.parametrize(
    ("x_o", "max_error"), [([0.0, 0.0], 0.04), ([0.4, -1.0], 0.08)]
)
def test_log_prob_matches_the_exact_density(solver, x_o, max_error):
    # Two approximations of the method bound the error rather than the solver:
    # the flow starts at gamma0 = 1e-6 of noise, not 0, and ends at N(0, Sigma_T)
    # although the noised conditional still has mean alpha_T * mu (1/40 of mu).
    estimator = _exact_estimator(solver=solver, steps=128, coupling=0.8)
    assert estimator.adjustment_weight.abs().max() > 0.3  # the shift is tested too
    x_o = torch.tensor([x_o])
    exact = _exact_conditional(estimator, x_o)
    theta = exact.sample((200,)).squeeze(1)
    log_q = estimator.log_prob(theta, x_o).squeeze(0)
    error = log_q - exact.log_prob(theta).squeeze(-1)
    assert error.abs().max() < max_error, error.abs().max()
    assert error.mean().abs() < 0.005


def test_samples_and_round_trip():
    estimator = _exact_estimator(steps=128, coupling=0.8)
    x_o = torch.tensor([[0.4, -1.0]])
    exact = _exact_conditional(estimator, x_o)
    samples = estimator.sample((4000,), x_o).squeeze(1)
    torch.testing.assert_close(samples.mean(0), exact.mean[0], atol=0.05, rtol=0)
    torch.testing.assert_close(
        torch.cov(samples.T), exact.covariance_matrix[0], atol=0.05, rtol=0.05
    )
    z = estimator.inverse_transform(samples[:500], x_o)
    torch.testing.assert_close(
        estimator.transform(z, x_o), samples[:500], atol=1e-3, rtol=0
    )


def _round_trip_error(estimator) -> torch.Tensor:
    x_o = torch.tensor([[0.4, -1.0]])
    theta = _exact_conditional(estimator, x_o).sample((500,)).squeeze(1)
    z = estimator.inverse_transform(theta, x_o)
    return (estimator.transform(z, x_o) - theta).abs().max()


def test_reducing_schedule_defaults_to_more_heun_steps():
    # Even with the exact denoiser, the compressed direction contracts too fast for
    # steps of T / 64: the round trip is off by about 4e-2 (6e-4 with 256 steps).
    assert _exact_estimator().steps == 64
    reducing = _exact_estimator(schedule="prr", latent_dim=1)
    assert reducing.steps == 256
    assert _round_trip_error(reducing) < 2e-3
    coarse = _exact_estimator(schedule="prr", latent_dim=1, steps=64)
    assert _round_trip_error(coarse) > 1e-2


def test_adaptive_tolerance_is_relative_to_the_smallest_latent_scale():
    preserving = _exact_estimator(solver="adaptive")
    assert preserving._absolute_tolerance() == pytest.approx(1e-5, rel=1e-3)
    reducing = _exact_estimator(schedule="prr", latent_dim=1, solver="adaptive")
    factor = reducing._absolute_tolerance() / reducing.atol
    assert factor < 1e-4  # the compressed coordinate ends ~2e-5 of the kept one
    assert _round_trip_error(reducing) < 1e-4
    # An absolute 1e-5 does not control the compressed coordinate.
    reducing.atol = 1e-5 / factor
    assert _round_trip_error(reducing) > 1e-3


def test_batched_shapes():
    estimator = _exact_estimator(steps=8)
    x = torch.randn(3, 2)
    assert estimator.sample((5,), x).shape == (5, 3, 2)
    assert estimator.log_prob(torch.randn(4, 3, 2), x).shape == (4, 3)
    assert estimator.loss(torch.randn(6, 2), torch.randn(6, 2)).shape == (6,)


def test_chi2_check_passes_for_the_exact_model_and_fails_for_a_wrong_one():
    estimator = _exact_estimator(steps=64, coupling=0.8)
    x = torch.randn(1000, 2)
    theta = _exact_conditional(estimator, x).sample()
    assert latent_chi2_check(estimator, theta, x).p_value > 0.01
    wrong = _exact_conditional(estimator, x, scales=1.6 * SCALES).sample()
    check = latent_chi2_check(estimator, wrong, x)
    assert check.p_value < 1e-4 and check.statistics.mean() > 2.5


def test_validation_loss_is_a_fixed_function():
    theta, x = torch.randn(64, 2), torch.randn(64, 2)
    estimator = inflationary_flow_nn()(theta, x).eval()
    first = estimator.loss(theta, x)
    permutation = torch.randperm(64)
    torch.testing.assert_close(
        estimator.loss(theta[permutation], x[permutation]), first[permutation]
    )
    estimator.train()
    assert not torch.allclose(estimator.loss(theta, x), first)


def test_validation_loss_averages_distinct_fixed_draws():
    theta, x = torch.randn(64, 2), torch.randn(64, 2)
    torch.manual_seed(1)
    single = inflationary_flow_nn(validation_draws=1)(theta, x).eval()
    torch.manual_seed(1)
    several = inflationary_flow_nn(validation_draws=4)(theta, x).eval()
    draws = [_fixed_draws(theta, x, 2, draw) for draw in range(4)]
    assert all(not torch.allclose(draws[0][1], other[1]) for other in draws[1:])
    y = several._embed(x)
    torch.testing.assert_close(single.loss(theta, x), several._denoising_loss(
        several.to_pca(theta, y), *draws[0], y
    ))  # fmt: skip
    per_draw = torch.stack([
        several._denoising_loss(several.to_pca(theta, y), *d, y) for d in draws
    ])  # fmt: skip
    torch.testing.assert_close(several.loss(theta, x), per_draw.mean(0))
    with pytest.raises(ValueError, match="validation_draws"):
        inflationary_flow_nn(validation_draws=0)(theta, x)


def test_bad_input_raises():
    theta, x = torch.randn(50, 3), torch.randn(50, 2)
    with pytest.raises(ValueError, match="schedule"):
        inflationary_flow_nn(schedule="vp")
    with pytest.raises(ValueError, match="latent_dim"):
        inflationary_flow_nn(schedule="prr")
    with pytest.raises(ValueError, match="latent_dim"):
        inflationary_flow_nn(latent_dim=1)
    with pytest.raises(ValueError, match="latent_dim"):
        inflationary_flow_nn(schedule="prr", latent_dim=3)(theta, x)
    with pytest.raises(ValueError, match="solver"):
        inflationary_flow_nn(solver="rk4")(theta, x)
    estimator = inflationary_flow_nn(steps=4)(theta, x)
    with pytest.raises(ValueError, match="`z`"):
        estimator.transform(torch.randn(2, 2), x[:1])
    with pytest.raises(ValueError, match="condition"):
        estimator.sample((2,), torch.randn(1, 5))
    with pytest.raises(ValueError, match="same n"):
        latent_chi2_check(estimator, theta[:3], x[:4])


def test_latent_dim_as_explained_variance_finds_the_intrinsic_dimension():
    s = torch.randn(500, 1)
    near_a_line = torch.cat([s, 2 * s, -s], dim=1) + 0.01 * torch.randn(500, 3)
    x = torch.randn(500, 2)
    estimator = inflationary_flow_nn(schedule="prr", latent_dim=0.99)(near_a_line, x)
    g = estimator.net.schedule.g
    assert g[0] == 1.0 and (g[1:] < 0).all()
    assert estimator.steps == 256

    with pytest.warns(UserWarning, match="every direction is kept"):
        isotropic = inflationary_flow_nn(schedule="prr", latent_dim=0.99)(
            torch.randn(500, 3), x
        )
    assert (isotropic.net.schedule.g == 0).all()
    assert isotropic.steps == 64  # PR-preserving after all
    with pytest.raises(ValueError, match="fraction"):
        inflationary_flow_nn(schedule="prr", latent_dim=1.5)


def test_embedding_net_is_averaged_with_the_denoiser():
    theta, x = torch.randn(64, 2), torch.randn(64, 3)
    embedding = nn.Linear(3, 4)
    estimator = inflationary_flow_nn(embedding_net=embedding, ema_decay=0.5)(theta, x)
    estimator.train().loss(theta, x)  # one update: the averages start as copies
    with torch.no_grad():
        embedding.weight.add_(1.0)
    live = estimator._embed(x)
    estimator.eval()
    averaged = estimator._embed(x)
    assert not torch.allclose(live, averaged)
    estimator.train().loss(theta, x)
    # Warm-up decay min(0.5, 2 / 11): the average moved 9 / 11 of the shift.
    torch.testing.assert_close(
        estimator._embedding_average.module.weight,
        embedding.weight - 2 / 11,
    )
    plain = inflationary_flow_nn(embedding_net=nn.Linear(3, 4), ema_decay=None)
    without = plain(theta, x)
    assert without._embedding_average is None
