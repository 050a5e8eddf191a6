"""Guidance for interval observations and linear constraints (Gaussian oracle)."""

import pytest
import torch

from sbi_allinone.simformer.guidance import Guidance, Interval, LinearConstraint
from sbi_allinone.simformer.sampling import sample_sde
from tests.simformer.test_estimator_sampling import _oracle, _posterior

LATENT = torch.tensor([True, True, False])


def _guided(constraints, recurrence, n=4000, x=1.2):
    estimator = _oracle()
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
