"""The multistep sampler and bounded priors, against an exactly known model.

As in ``test_estimator.py``, the exact denoiser of a Gaussian ``p(u | y)`` makes the
flow exact, so samples and densities can be compared with closed forms; with a
bounded prior that Gaussian lives in the unbounded space and the density in
parameter space picks up the Jacobian of the map.
"""

import io
import math

import pytest
import torch
from sbi.utils import BoxUniform
from torch.distributions import MultivariateNormal

from sbi_allinone import InflationaryFlow
from sbi_allinone.inflationary import inflationary_flow_nn
from sbi_allinone.inflationary.denoiser import PreconditionedDenoiser
from sbi_allinone.inflationary.sampling import CACHE_FRIENDLY_ROWS, noise_levels
from tests.inflationary.test_estimator import (
    SCALES,
    ExactGaussianF,
    _exact_conditional,
    _exact_estimator,
)

PRIOR = BoxUniform(torch.tensor([-2.0, 0.0]), torch.tensor([4.0, 3.0]))


def test_default_sampler_takes_few_steps_and_reproduces_the_exact_conditional():
    estimator = _exact_estimator()
    assert (estimator.steps, estimator.sample_steps) == (64, 20)
    assert estimator.sample_solver == "multistep"
    x_o = torch.tensor([[0.4, -1.0]])
    exact = _exact_conditional(estimator, x_o)
    torch.manual_seed(1)
    samples = estimator.sample((20_000,), x_o).squeeze(1)
    torch.testing.assert_close(samples.mean(0), exact.mean[0], atol=0.03, rtol=0)
    # Measured (100 000 draws): variances 0.7 % too large with 24 calls of the
    # third-order multistep solver, 2.8 % with 16, 0.6 % with 16-32 Heun steps;
    # half as large with 4 calls. The sampling error of 20 000 draws is about 1 %.
    variances = torch.cov(samples.T).diag() / exact.covariance_matrix[0].diag()
    assert (variances - 1).abs().max() < 0.03, variances


def test_too_few_sample_steps_are_measurably_wrong():
    # The test above can fail: 4 calls halve the variances.
    estimator = _exact_estimator(sample_steps=4)
    x_o = torch.tensor([[0.4, -1.0]])
    exact = _exact_conditional(estimator, x_o)
    torch.manual_seed(1)
    samples = estimator.sample((20_000,), x_o).squeeze(1)
    variances = torch.cov(samples.T).diag() / exact.covariance_matrix[0].diag()
    assert (variances - 1).abs().max() > 0.2, variances


def test_sample_steps_leave_log_prob_and_the_transforms_alone():
    few, many = _exact_estimator(sample_steps=4), _exact_estimator(sample_steps=64)
    theta, x_o = torch.randn(50, 2), torch.tensor([[0.4, -1.0]])
    torch.testing.assert_close(few.log_prob(theta, x_o), many.log_prob(theta, x_o))
    torch.testing.assert_close(
        few.inverse_transform(theta, x_o), many.inverse_transform(theta, x_o)
    )
    with pytest.raises(ValueError, match="sample_steps"):
        _exact_estimator(sample_steps=0)
    reducing = _exact_estimator(schedule="prr", latent_dim=1)
    assert (reducing.sample_solver, reducing.sample_steps) == ("heun", 256)
    # Never costlier than `steps` Heun steps: 8 of them are 16 network calls.
    assert _exact_estimator(steps=8).sample_steps == 16
    heun = _exact_estimator(steps=8, sample_solver="heun")
    assert (heun.sample_solver, heun.sample_steps) == ("heun", 8)


def test_multistep_and_heun_follow_the_same_flow():
    # The multistep solver integrates the EDM form of the same ODE: at fine
    # resolution both land on the same samples from the same latents.
    x_o = torch.tensor([[0.4, -1.0]])
    multistep = _exact_estimator(sample_steps=400, sample_solver="multistep")
    heun = _exact_estimator(sample_steps=200, sample_solver="heun")
    samples = []
    for estimator in (multistep, heun):
        torch.manual_seed(3)
        samples.append(estimator.sample((200,), x_o))
    torch.testing.assert_close(samples[0], samples[1], atol=2e-3, rtol=0)


def test_bad_sample_solvers_are_refused():
    # At construction, before any training ...
    with pytest.raises(ValueError, match="sample_solver"):
        InflationaryFlow(PRIOR, sample_solver="euler")
    with pytest.raises(ValueError, match="prp"):
        inflationary_flow_nn("prr", latent_dim=1, sample_solver="multistep")
    # ... and by the estimator itself.
    with pytest.raises(ValueError, match="sample_solver"):
        _exact_estimator(sample_solver="euler")
    with pytest.raises(ValueError, match="PR-preserving"):
        _exact_estimator(schedule="prr", latent_dim=1, sample_solver="multistep")
    with pytest.raises(ValueError, match="sample_steps"):
        _exact_estimator(sample_steps=1, sample_solver="multistep")


def _bounded_exact_estimator():
    """The exact Gaussian model, in the unbounded space of ``PRIOR``."""
    torch.manual_seed(0)
    theta, x = PRIOR.sample((2000,)), torch.randn(2000, 2)
    build = inflationary_flow_nn(
        z_score_x="none", z_score_theta="transform_to_unconstrained", x_dist=PRIOR
    )
    estimator = build(theta, x)
    schedule = estimator.schedule
    exact = ExactGaussianF(schedule, SCALES)
    estimator.net = PreconditionedDenoiser(exact, schedule, ema_decay=None)
    return estimator.eval()


def test_bounded_prior_log_prob_is_the_unbounded_density_plus_the_jacobian():
    estimator = _bounded_exact_estimator()
    x_o = torch.tensor([[0.4, -1.0]])
    unbounded = _exact_conditional(estimator, x_o)
    transform = estimator.theta_transform
    v = unbounded.sample((200,)).squeeze(1)
    theta = transform(v)
    expected = unbounded.log_prob(v).squeeze(-1) - transform.log_abs_det_jacobian(
        v, theta
    )
    error = estimator.log_prob(theta, x_o).squeeze(0) - expected
    # The method's own error at this x_o, as in test_log_prob_matches_the_exact_
    # density: largest in the tails (0.04-0.055 over draws), unbiased on average.
    assert error.abs().max() < 0.08, error.abs().max()
    assert error.mean().abs() < 0.005


def test_bounded_prior_samples_stay_inside_and_outside_has_no_mass():
    estimator = _bounded_exact_estimator()
    x_o = torch.tensor([[2.0, 2.0]])  # pushes mass against the upper bounds
    samples = estimator.sample((5000,), x_o).squeeze(1)
    assert PRIOR.support.check(samples).all()
    outside = torch.tensor([[4.5, 1.0], [0.0, -0.1]])
    assert torch.isneginf(estimator.log_prob(outside, x_o)).all()


def test_bounded_prior_density_integrates_to_one():
    estimator = _bounded_exact_estimator()
    x_o = torch.tensor([[0.4, -1.0]])
    # Midpoint rule on the prior's box; the log-density is smooth inside.
    first = torch.linspace(-2, 4, 81)[:-1] + 6 / 160
    second = torch.linspace(0, 3, 81)[:-1] + 3 / 160
    grid = torch.stack(torch.meshgrid(first, second, indexing="ij"), -1)
    log_q = estimator.log_prob(grid.reshape(-1, 2), x_o)
    mass = log_q.exp().sum().item() * (6 / 80) * (3 / 80)
    assert math.isclose(mass, 1.0, abs_tol=0.02), mass


def test_trainer_learns_in_unbounded_space_when_asked():
    theta, x = PRIOR.sample((50,)), torch.randn(50, 2)

    def estimator(prior, **kwargs):
        trainer = InflationaryFlow(prior, show_progress_bars=False, **kwargs)
        return trainer.append_simulations(theta, x).train(max_num_epochs=1)

    unbounded = estimator(PRIOR, z_score_theta="transform_to_unconstrained")
    assert unbounded.theta_transform is not None
    assert estimator(PRIOR).theta_transform is None
    gaussian = MultivariateNormal(torch.zeros(2), torch.eye(2))
    # An unbounded support maps by the identity, so nothing changes.
    free = estimator(gaussian, z_score_theta="transform_to_unconstrained")
    theta_free = torch.randn(5, 2)
    torch.testing.assert_close(free.theta_transform.inv(theta_free), theta_free)


def test_unbounding_needs_a_prior_and_a_known_flag():
    with pytest.raises(ValueError, match="x_dist"):
        inflationary_flow_nn(z_score_theta="transform_to_unconstrained")
    with pytest.raises(ValueError, match="z_score_theta"):
        inflationary_flow_nn(z_score_theta="structured")
    with pytest.raises(ValueError, match="support"):
        inflationary_flow_nn(
            z_score_theta="transform_to_unconstrained", x_dist=object()
        )


def test_unbounded_estimator_survives_save_and_load():
    estimator = _bounded_exact_estimator()
    theta, x_o = PRIOR.sample((5,)), torch.tensor([[0.4, -1.0]])
    buffer = io.BytesIO()
    torch.save(estimator, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(
        loaded.log_prob(theta, x_o), estimator.log_prob(theta, x_o)
    )
    assert PRIOR.support.check(loaded.sample((100,), x_o)).all()


def test_the_sampling_grid_jumps_to_five_data_scales_then_is_log_uniform():
    schedule = _exact_estimator().schedule
    levels = noise_levels(schedule, 20, first_step_to=5.0)
    uniform = noise_levels(schedule, 20)
    assert levels.shape == uniform.shape == (20,)
    assert levels[0] == pytest.approx(uniform[0].item())
    assert levels[-1] == pytest.approx(uniform[-1].item())
    assert levels[1] == pytest.approx(5.0 * schedule.xi**0.5)
    ratios = levels[2:] / levels[1:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand_as(ratios))
    # Uniform in t is uniform in log sigma.
    uniform_ratios = uniform[1:] / uniform[:-1]
    torch.testing.assert_close(uniform_ratios, uniform_ratios[:1].expand(19))
    # More calls refine the part above too (the grid converges); a point beyond
    # sigma(T), or too few calls, gives the uniform grid.
    fine = noise_levels(schedule, 320, first_step_to=5.0)
    assert (fine > 5.0 * schedule.xi**0.5 + 1e-9).sum() == 20
    torch.testing.assert_close(noise_levels(schedule, 20, first_step_to=1e6), uniform)
    torch.testing.assert_close(
        noise_levels(schedule, 3, first_step_to=5.0), noise_levels(schedule, 3)
    )


def test_samples_are_drawn_in_runs_of_cache_friendly_rows():
    # 4 500 samples: two full runs and a partial one, each from the same flow.
    estimator = _exact_estimator()
    x_o = torch.tensor([[0.4, -1.0]])
    torch.manual_seed(2)
    samples = estimator.sample((4_500,), x_o).squeeze(1)
    assert samples.shape == (4_500, 2)
    exact = _exact_conditional(estimator, x_o)
    for run in samples.split(CACHE_FRIENDLY_ROWS):
        scaled = (run - exact.mean[0]) / exact.covariance_matrix[0].diag().sqrt()
        assert scaled.mean(0).abs().max() < 0.15
        assert (scaled.std(0) - 1).abs().max() < 0.1
