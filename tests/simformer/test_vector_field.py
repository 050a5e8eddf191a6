"""The Simformer as an sbi vector-field estimator (``simformer/vector_field.py``)."""

import math

import pytest
import torch
from sbi.inference.posteriors.vector_field_posterior import VectorFieldPosterior
from torch.distributions import Independent, Normal

from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.vector_field import (
    SimformerVectorField,
    vector_field_posterior,
)

MEAN = torch.tensor([0.5, -1.0, 2.0, 0.0])
STD = torch.tensor([2.0, 0.5, 3.0, 1.5])
PRIOR = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)


def _estimator() -> SimformerEstimator:
    torch.manual_seed(0)
    net = SimformerNet(4, num_layers=1)
    return SimformerEstimator(net, LogNormalNoise(), 2, MEAN, STD).eval()


def test_shapes_and_sde_functions():
    field = SimformerVectorField(_estimator())
    assert field.input_shape == (2,) and field.condition_shape == (2,)
    assert torch.allclose(field.mean_base, MEAN[:2].reshape(1, 2))
    assert torch.allclose(field.std_base, STD[:2] * math.sqrt(1 + 80.0**2))
    t = torch.tensor(0.3)
    sigma = 0.002 * (80.0 / 0.002) ** 0.3
    assert torch.allclose(field.std_fn(t), sigma * STD[:2])
    assert torch.allclose(field.mean_t_fn(t), torch.ones(1))
    # sbi's sample x batch x event layout, condition broadcast as in iid scoring.
    assert field.score(torch.randn(7, 3, 2), torch.randn(3, 2), t).shape == (7, 3, 2)
    assert field.score(torch.randn(5, 1, 2), torch.randn(4, 2), t).shape == (5, 4, 2)
    assert field.ode_fn(torch.randn(6, 2), torch.randn(1, 2), t).shape == (6, 2)


@pytest.mark.parametrize(
    "mask", [None, torch.tensor([True, False, False, True])], ids=["posterior", "mixed"]
)
def test_score_is_the_simformer_score_in_user_units(mask):
    estimator = _estimator()
    field = SimformerVectorField(estimator, mask)
    mask = field.condition_mask
    theta, x = torch.randn(6, 2), torch.randn(6, 2)
    t = torch.tensor(0.4)
    values = torch.zeros(6, 4)
    values[:, ~mask], values[:, mask] = theta, x
    sigma = torch.full((6, 1), float(field.sigma(t)))
    expected = (
        estimator.score(estimator.standardize(values), sigma, mask.expand(6, 4))[
            :, ~mask
        ]
        / STD[~mask]
    )
    assert torch.allclose(field.score(theta, x, t), expected, atol=1e-5)
    # Chain rule: the user-unit score is the gradient of the log-density of
    # theta = mean + std * v, so it scales as 1 / std.
    assert torch.allclose(field(theta, x, t), expected, atol=1e-5)


def test_posterior_samples_one_and_iid_observations():
    posterior = vector_field_posterior(_estimator(), PRIOR)
    assert isinstance(posterior, VectorFieldPosterior)
    quiet = {"show_progress_bars": False}
    x_o = torch.tensor([[1.0, 0.0]])
    assert posterior.sample((4,), x=x_o, steps=5, **quiet).shape == (4, 2)
    x_iid = torch.randn(3, 2)
    samples = posterior.sample((4,), x=x_iid, steps=5, iid_method="gauss", **quiet)
    assert samples.shape == (4, 2) and torch.isfinite(samples).all()


def test_needs_a_prior_and_an_estimator():
    with pytest.raises(ValueError, match="prior"):
        vector_field_posterior(_estimator())
    with pytest.raises(ValueError, match="Simformer"):
        vector_field_posterior(object(), PRIOR)
    with pytest.raises(ValueError, match="condition_mask"):
        SimformerVectorField(_estimator(), torch.ones(4, dtype=torch.bool))


# User-unit linear Gaussian: theta ~ N(PRIOR_MEAN, diag(PRIOR_VAR)), x = theta +
# 0.5 eps. An exact denoiser of its standardized joint stands in for a trained net.
PRIOR_MEAN, PRIOR_VAR = torch.tensor([1.0, -2.0]), torch.tensor([1.0, 4.0])


class LinearGaussianOracle(SimformerEstimator):
    """Exact E[theta | noised theta, x] of the joint, in standardized units."""

    def denoise(self, values, sigma, condition_mask, missing=None, tokens=None):
        cov = torch.diag(torch.cat([PRIOR_VAR, PRIOR_VAR + 0.25])).double()
        cov[:2, 2:] = cov[2:, :2] = torch.diag(PRIOR_VAR).double()
        cov = cov / torch.outer(self.std, self.std).double()
        gain = cov[:2, 2:] @ torch.linalg.inv(cov[2:, 2:])
        mean = values[:, 2:].double() @ gain.T
        post = cov[:2, :2] - gain @ cov[2:, :2]
        noised = post + sigma.double()[..., None] ** 2 * torch.eye(2).double()
        residual = (values[:, :2].double() - mean).unsqueeze(-1)
        out = values.clone()
        shrunk = (post @ torch.linalg.solve(noised, residual)).squeeze(-1)
        out[:, :2] = (mean + shrunk).to(values)
        return out


def test_iid_posterior_of_an_exact_denoiser_is_exact():
    """sbi's Gauss-corrected iid score is exact for Gaussians given the individual
    posteriors' precision; sbi's own estimates of it are not (see the benchmark)."""
    std = torch.cat([PRIOR_VAR, PRIOR_VAR + 0.25]).sqrt()
    net = SimformerNet(4, num_layers=1)
    oracle = LinearGaussianOracle(
        net, LogNormalNoise(), 2, PRIOR_MEAN.repeat(2), std
    ).eval()
    prior = Independent(Normal(PRIOR_MEAN, PRIOR_VAR.sqrt()), 1)
    posterior = vector_field_posterior(oracle, prior)
    torch.manual_seed(1)
    x_iid = torch.tensor([0.5, -1.0]) + 0.5 * torch.randn(5, 2)
    precision = 1 / PRIOR_VAR + 4.0 * 5
    mean = (PRIOR_MEAN / PRIOR_VAR + 4.0 * x_iid.sum(0)) / precision
    samples = posterior.sample(
        (4000,),
        x=x_iid,
        iid_method="gauss",
        iid_params={"posterior_precision": 1 / PRIOR_VAR + 4.0},
        steps=200,
        show_progress_bars=False,
    )
    assert torch.allclose(samples.mean(0), mean, atol=0.02)
    assert torch.allclose(samples.var(0), 1 / precision, rtol=0.1)
