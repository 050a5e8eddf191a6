"""``constrain_by="rejection"``: constraints by rejecting unconstrained samples
(Gaussian oracle: the exact truncated conditional is known)."""

import pytest
import torch

from sbi_allinone.simformer.guidance import FunctionConstraint, Interval
from tests.simformer.test_estimator_sampling import _posterior
from tests.simformer.test_guidance import exact_simformer, truncated_likelihood


def _truncated_posterior(accept, x=1.2, n=400_000):
    mean, cov = _posterior(x)
    draws = torch.distributions.MultivariateNormal(mean, cov).sample((n,))
    return draws[accept(draws)]


def test_rejection_samples_the_truncated_posterior():
    posterior = exact_simformer().build_posterior(
        steps=32,
        guidance=[Interval(node=0, low=0.6, high=1.2)],
        constrain_by="rejection",
    )
    assert posterior.sample_with == "ode"  # no stochastic sampler needed
    torch.manual_seed(11)
    x_o = torch.tensor([[1.2]], dtype=torch.float64)
    samples = posterior.sample((2000,), x=x_o)
    reference = _truncated_posterior(lambda d: (d[:, 0] > 0.6) & (d[:, 0] < 1.2))
    assert ((samples[:, 0] > 0.6) & (samples[:, 0] < 1.2)).all()
    # About 2.5 and 3.5 standard errors of 2 000 samples (theta_2's sd is 0.87).
    assert torch.allclose(samples.mean(0), reference.mean(0), atol=0.05)
    assert torch.allclose(samples.std(0), reference.std(0), atol=0.05)


def test_rejection_on_the_likelihood_with_a_function_constraint():
    above = FunctionConstraint(lambda v: v[:, 0] - v[:, 2])  # x_1 >= theta_1
    likelihood = exact_simformer().build_likelihood(
        steps=32, guidance=[above], constrain_by="rejection"
    )
    theta_o = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    torch.manual_seed(12)
    samples = likelihood.sample((2000,), x=theta_o)[:, 0]
    reference = truncated_likelihood(theta_o, 1.0)
    assert (samples >= 1.0).all()
    assert abs(samples.mean() - reference.mean()) < 0.03
    assert abs(samples.std() - reference.std()) < 0.03


def test_a_constraint_the_conditional_never_meets_stops_and_names_guidance():
    # theta_1 | x ~ N(0.72, 0.45^2): 8 standard deviations below the interval.
    posterior = exact_simformer().build_posterior(
        steps=16,
        guidance=[Interval(node=0, low=4.5, high=5.0)],
        constrain_by="rejection",
    )
    with pytest.raises(RuntimeError, match="guidance \\(the default `constrain_by`"):
        posterior.sample((10,), x=torch.tensor([[1.2]], dtype=torch.float64))


def test_constrain_by_must_be_guidance_or_rejection():
    with pytest.raises(ValueError, match="`constrain_by` must be"):
        exact_simformer().build_posterior(
            guidance=[Interval(node=0, high=1.0)], constrain_by="reject"
        )
