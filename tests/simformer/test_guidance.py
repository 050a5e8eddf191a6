"""Guidance for intervals, linear and nonlinear constraints (Gaussian oracle)."""

import warnings

import pytest
import torch

from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.simformer.guidance import (
    FunctionConstraint,
    Guidance,
    Interval,
    LinearConstraint,
)
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.sampling import sample_sde
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.tracking import NullTracker
from tests.simformer.test_estimator_sampling import (
    COV,
    GaussianOracle,
    _oracle,
    _posterior,
)

LATENT = torch.tensor([True, True, False])


def _guided(constraints, recurrence, estimator=None, n=4000, x=1.2):
    estimator = estimator or _oracle()
    guidance = Guidance(constraints, estimator.mean, estimator.std, LATENT)
    values = torch.zeros(n, 3, dtype=torch.float64)
    values[:, 2] = x
    condition = (~LATENT).expand(n, 3)
    missing = torch.zeros(n, 3, dtype=torch.bool)
    return sample_sde(estimator, values, condition, missing, 200, guidance, recurrence)[
        :, :2
    ]


def _truncated_reference(accept, x=1.2, n=400_000):
    mean, cov = _posterior(x)
    draws = torch.distributions.MultivariateNormal(mean, cov).sample((n,))
    return draws[accept(draws)]


def test_interval_guidance_samples_the_truncated_conditional():
    torch.manual_seed(3)
    samples = _guided([Interval(node=0, low=0.6, high=1.2)], recurrence=5)
    reference = _truncated_reference(lambda d: (d[:, 0] > 0.6) & (d[:, 0] < 1.2))
    inside = ((samples[:, 0] > 0.6) & (samples[:, 0] < 1.2)).double().mean()
    assert inside > 0.95
    # theta_2 follows theta_1 into the interval through their correlation.
    assert torch.allclose(samples.mean(0), reference.mean(0), atol=0.06)
    assert torch.allclose(samples.std(0), reference.std(0), atol=0.04)


def test_half_space_constraint_on_a_sum():
    torch.manual_seed(4)
    constraint = LinearConstraint(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([0.0]))
    samples = _guided([constraint], recurrence=5)
    reference = _truncated_reference(lambda d: d.sum(1) < 0.0)
    assert (samples.sum(1) < 0.05).double().mean() > 0.95
    assert torch.allclose(samples.mean(0), reference.mean(0), atol=0.08)


def test_without_guidance_the_interval_is_not_respected():
    # The check above can fail: unguided samples mostly leave the interval.
    torch.manual_seed(5)
    estimator = _oracle()
    values = torch.zeros(2000, 3, dtype=torch.float64)
    values[:, 2] = 1.2
    condition = (~LATENT).expand(2000, 3)
    samples = sample_sde(estimator, values, condition, torch.zeros_like(condition), 200)
    inside = ((samples[:, 0] > 0.6) & (samples[:, 0] < 1.2)).double().mean()
    assert inside < 0.5


def test_constraints_are_rescaled_to_standardized_units():
    mean, std = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 4.0, 1.0])
    guidance = Guidance([Interval(1, low=6.0)], mean, std, LATENT)
    # v_1 >= 6  <=>  u_1 >= (6 - 2) / 4 = 1  <=>  -u_1 <= -1.
    assert torch.allclose(guidance.weights, torch.tensor([[0.0, -1.0, 0.0]]))
    assert torch.allclose(guidance.bounds, torch.tensor([-1.0]))


def test_bad_constraints_raise_clear_errors():
    mean, std = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="low"):
        Interval(0, low=1.0, high=0.0)
    with pytest.raises(ValueError, match="finite end"):
        Interval(0)
    with pytest.raises(ValueError, match="conditioned on"):
        Guidance([Interval(2, high=1.0)], mean, std, LATENT)
    with pytest.raises(ValueError, match="node"):
        Guidance([Interval(5, high=1.0)], mean, std, LATENT)
    with pytest.raises(ValueError, match=r"\(num_constraints, 3\)"):
        Guidance([LinearConstraint(torch.ones(2), 0.0)], mean, std, LATENT)
    with pytest.raises(ValueError, match="at least one"):
        Guidance([], mean, std, LATENT)


# Nonlinear constraints c(v) <= 0 (FunctionConstraint).

MEAN, STD = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 4.0, 1.0])


def _disk(radius=1.0):
    return lambda v: v[:, 0] ** 2 + v[:, 1] ** 2 - radius**2


def test_function_constraint_slack_is_the_first_order_distance():
    guidance = Guidance([FunctionConstraint(_disk(5.0))], MEAN, STD, LATENT)
    u = torch.tensor([[1.0, 0.5, 3.0], [-0.5, -1.0, 0.0]])
    v = MEAN + STD * u  # user units: (3, 4) and (0, -2)
    c = v[:, 0] ** 2 + v[:, 1] ** 2 - 25.0  # 0 (on the circle) and -21
    grad_u = 2 * v * STD * LATENT  # chain rule through v = mean + std * u
    norm = grad_u.norm(dim=1, keepdim=True)
    slack, gradient = guidance.slack(u)
    assert slack.shape == (2, 1) and gradient.shape == (2, 1, 3)
    assert torch.allclose(slack, -c[:, None] / norm)
    assert torch.allclose(gradient[:, 0], -grad_u / norm)
    assert (gradient[:, 0, 2] == 0).all()  # the conditioned x_1 is not moved

    fixed = Guidance([FunctionConstraint(_disk(5.0), scale=10.0)], MEAN, STD, LATENT)
    slack, gradient = fixed.slack(u)
    assert torch.allclose(slack[:, 0], -c / 10.0)
    assert torch.allclose(gradient[:, 0], -grad_u / 10.0)


def test_several_constraints_from_one_function_and_conditioned_inputs():
    # theta_1 <= x_1 and theta_2 >= 0, as a (batch, 2) function reading x_1.
    both = FunctionConstraint(lambda v: torch.stack([v[:, 0] - v[:, 2], -v[:, 1]], 1))
    guidance = Guidance([both, Interval(0, low=-3.0)], MEAN, STD, LATENT)
    u = torch.tensor([[0.0, 0.0, 0.5], [2.0, -1.0, 0.5]])  # v = (1, 2, .5), (5, -2, .5)
    slack, gradient = guidance.slack(u)
    assert slack.shape == (2, 3) and gradient.shape == (2, 3, 3)
    # Interval first, then the function's constraints, in standard deviations.
    expected = torch.tensor([[2.0, -0.5 / 2, 2 / 4], [4.0, -4.5 / 2, -2 / 4]])
    assert torch.allclose(slack, expected)
    assert torch.allclose(gradient[0, 1], torch.tensor([-1.0, 0.0, 0.0]))
    assert torch.allclose(gradient[0, 2], torch.tensor([0.0, 1.0, 0.0]))


def test_linear_constraint_as_a_function_gives_the_same_correction():
    weights = torch.tensor([[1.0, -2.0, 0.0], [0.5, 1.0, 0.0]])
    bounds = torch.tensor([0.3, -1.0])
    linear = Guidance([LinearConstraint(weights, bounds)], MEAN, STD, LATENT)
    function = Guidance(
        [FunctionConstraint(lambda v: v @ weights.T - bounds)], MEAN, STD, LATENT
    )
    torch.manual_seed(0)
    denoised = 2 * torch.randn(50, 3)
    sigma = torch.rand(50, 1) + 0.1
    for a, b in zip(linear.slack(denoised), function.slack(denoised), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    corrections = [
        g.score_correction(denoised, denoised, sigma, torch.tensor(0.5))
        for g in (linear, function)
    ]
    assert corrections[0].abs().max() > 0.1  # some samples violate the constraints
    assert torch.allclose(*corrections, atol=1e-4)


@pytest.mark.parametrize(
    "recurrence, atol_mean, atol_std", [(1, 0.03, 0.035), (3, 0.05, 0.05)]
)
def test_disk_constraint_samples_the_truncated_conditional(
    recurrence, atol_mean, atol_std
):
    torch.manual_seed(6)
    disk = _disk()
    samples = _guided([FunctionConstraint(disk)], recurrence)
    reference = _truncated_reference(lambda d: disk(d) <= 0)
    assert (disk(samples) <= 0).double().mean() >= 0.9
    # The unconstrained conditional (mean (0.72, 0.6)) is 0.5 away from this.
    assert torch.allclose(samples.mean(0), reference.mean(0), atol=atol_mean)
    assert torch.allclose(samples.std(0), reference.std(0), atol=atol_std)


def test_function_constraints_are_evaluated_in_user_units():
    # Standardized joint as above, user units mean + std * u: theta_1 ~ 2.4 +- 1.6,
    # theta_2 ~ -1.7 +- 0.43; the disk of radius 3 cuts both at a slant.
    mean, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 1.0])
    oracle = GaussianOracle(
        SimformerNet(3, num_layers=1), LogNormalNoise(), 2, mean, std
    )
    disk = _disk(3.0)
    torch.manual_seed(7)
    samples = mean[:2] + std[:2] * _guided(
        [FunctionConstraint(disk)], 1, oracle.double()
    )
    reference = _truncated_reference(lambda d: disk(mean[:2] + std[:2] * d) <= 0)
    reference = mean[:2] + std[:2] * reference
    assert (disk(samples) <= 0).double().mean() >= 0.9
    # Errors in standard deviations of the data, as in the test above.
    assert torch.allclose(
        samples.mean(0) / std[:2], reference.mean(0) / std[:2], atol=0.03
    )
    assert torch.allclose(
        samples.std(0) / std[:2], reference.std(0) / std[:2], atol=0.035
    )


def exact_simformer() -> Simformer:
    """A Simformer over [theta_1, theta_2, x] whose denoiser is the exact one."""
    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1
    )
    inference = Simformer(prior, tracker=NullTracker(), show_progress_bars=False)
    theta = prior.sample((20,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.append_simulations(theta, theta.sum(1, keepdim=True))
    inference._neural_net = _oracle()  # the exact score instead of training
    return inference


def truncated_likelihood(theta_o, low, n=400_000):
    """Draws of x_1 | theta_o ~ N(m, s^2), truncated to x_1 >= low."""
    gain = COV[2, :2] @ torch.linalg.inv(COV[:2, :2])
    m, s = gain @ theta_o[0], (COV[2, 2] - gain @ COV[:2, 2]).sqrt()
    reference = m + s * torch.randn(n, dtype=torch.float64)
    return reference[reference >= low]


def test_likelihood_guidance_may_read_the_conditioned_parameters():
    above = FunctionConstraint(lambda v: v[:, 0] - v[:, 2])  # x_1 >= theta_1
    likelihood = exact_simformer().build_likelihood(steps=200, guidance=[above])
    theta_o = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    torch.manual_seed(8)
    samples = likelihood.sample((2000,), x=theta_o)[:, 0]
    reference = truncated_likelihood(theta_o, 1.0)
    assert (samples >= 1.0).double().mean() >= 0.9
    assert abs(samples.mean() - reference.mean()) < 0.05
    assert abs(samples.std() - reference.std()) < 0.04


def test_bad_function_constraints_raise_clear_errors():
    def guide(fn, **kwargs):
        return Guidance([FunctionConstraint(fn, **kwargs)], MEAN, STD, LATENT)

    with pytest.raises(TypeError, match="callable"):
        FunctionConstraint(torch.ones(3))
    with pytest.raises(ValueError, match="scale"):
        FunctionConstraint(_disk(), scale=0.0)
    with pytest.raises(TypeError, match="Interval, LinearConstraint or Function"):
        Guidance([lambda v: v[:, 0]], MEAN, STD, LATENT)
    shape = r"rows of shape \(4, 3\) to \(4,\) or \(4, k\)"
    with pytest.raises(ValueError, match=shape + r", got \(3,\)"):
        guide(lambda v: v.sum(0))
    with pytest.raises(ValueError, match=shape + r", got \(\)"):
        guide(lambda v: v.sum())
    with pytest.raises(ValueError, match=shape + r", got \(4, 1, 1\)"):
        guide(lambda v: v[:, :1, None])
    with pytest.raises(TypeError, match=shape + " floating-point, got float"):
        guide(lambda v: 1.0)
    with pytest.raises(TypeError, match=shape + " floating-point, got torch.bool"):
        guide(lambda v: v[:, 0] > 0)
    with pytest.raises(TypeError, match="differentiable, mapping " + shape):
        guide(lambda v: torch.as_tensor(v.detach().numpy()[:, 0]))
    weight = torch.ones((), requires_grad=True)  # depends on a weight, not on v
    with pytest.raises(TypeError, match="differentiable with respect to its input"):
        guide(lambda v: weight * torch.ones(len(v)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        guide(lambda v: v[:, 0].log())  # theta_1 < 0 near the mean
    # Finite near the mean, but not where the sampler goes: raised when sampling.
    guidance = guide(lambda v: torch.where(v[:, 0] < 5.0, v[:, 0], torch.nan))
    with pytest.raises(ValueError, match="NaN or infinite"):
        guidance.slack(torch.full((2, 3), 3.0))
