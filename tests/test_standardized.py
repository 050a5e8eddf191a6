"""The estimators' common base: z-scoring round trip, embedding, sbi's shapes."""

import pytest
import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import nn

from sbi_allinone.standardized import StandardizedEstimator, fit_standardization

DIM_THETA, DIM_X = 3, 4


class _Sampler(StandardizedEstimator):
    """The smallest concrete subclass: each sample is the first entries of ``y``."""

    def loss(self, input, condition, **kwargs):
        return self.net(self._standardize(input)).sum(-1)

    def _sample_given(self, y):
        return self._unstandardize(y[:, :DIM_THETA])


class _Density(_Sampler, ConditionalDensityEstimator):
    """With sbi's density interface listed after the base, as the package does."""

    def log_prob(self, input, condition, **kwargs):
        theta, _, num_samples = self._flatten(input, condition)
        return -self._standardize(theta).square().sum(-1).reshape(num_samples, -1)


def _data(n: int = 200):
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(n, DIM_THETA, generator=generator, dtype=torch.float64)
    theta = theta * torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64) + 3.0
    x = torch.randn(n, DIM_X, generator=generator, dtype=torch.float64) * 4 - 1
    return theta, x


def _estimator(cls=_Sampler, embedding_net=None):
    theta, x = _data()
    standardization = fit_standardization(
        theta,
        x,
        z_score_theta="independent",
        z_score_x="independent",
        embedding_net=embedding_net,
    )
    net = nn.Linear(DIM_THETA, 1).double()
    return cls(net, standardization), theta, x


def test_standardization_round_trip_and_unit_scale():
    estimator, theta, x = _estimator()
    standardized = estimator._standardize(theta)
    torch.testing.assert_close(standardized.mean(0), torch.zeros(3).double())
    torch.testing.assert_close(standardized.std(0), torch.ones(3).double())
    torch.testing.assert_close(estimator._unstandardize(standardized), theta)
    torch.testing.assert_close(
        estimator._standardize_x(x).std(0), torch.ones(4).double()
    )


def test_z_scoring_ignores_invalid_rows_and_can_be_off():
    theta, x = _data()
    x[:5] = float("nan")
    fitted = fit_standardization(
        theta, x, z_score_theta="none", z_score_x="independent", embedding_net=None
    )
    assert torch.isfinite(fitted.x_mean).all() and torch.isfinite(fitted.x_std).all()
    assert (fitted.theta_mean == 0).all() and (fitted.theta_std == 1).all()
    assert fitted.dim_theta == DIM_THETA and fitted.dim_y == DIM_X
    assert fitted.condition_shape == (DIM_X,)


def test_embedding_sees_z_scored_data_and_must_be_flat():
    embedding = nn.Linear(DIM_X, 5).double()
    estimator, _, x = _estimator(embedding_net=embedding)
    assert estimator.embedding_net is embedding and estimator.dim_y == 5
    torch.testing.assert_close(
        estimator._embed(x[:7]), embedding((x[:7] - x.mean(0)) / x.std(0))
    )
    theta, x = _data()
    with pytest.raises(ValueError, match="flat"):
        fit_standardization(
            theta, x.reshape(-1, 2, 2), z_score_theta="independent",
            z_score_x="independent", embedding_net=None,
        )  # fmt: skip
    with pytest.raises(ValueError, match="num_simulations, dim_theta"):
        fit_standardization(
            theta[:, None], x, z_score_theta="independent",
            z_score_x="independent", embedding_net=None,
        )  # fmt: skip


def test_sample_repeats_each_condition_sample_major():
    estimator, _, x = _estimator()
    samples = estimator.sample(torch.Size([2, 3]), x[:4])
    assert samples.shape == (2, 3, 4, DIM_THETA)
    expected = estimator._unstandardize(estimator._embed(x[:4])[:, :DIM_THETA])
    torch.testing.assert_close(samples, expected.expand(2, 3, 4, DIM_THETA))
    with pytest.raises(ValueError, match="condition"):
        estimator.sample(torch.Size([2]), torch.randn(4, DIM_X + 1))


def test_flatten_broadcasts_as_sbi():
    estimator, theta, x = _estimator()
    flat_theta, flat_x, num_samples = estimator._flatten(
        theta[:12].reshape(3, 4, DIM_THETA), x[:4]
    )
    assert num_samples == 3
    assert flat_theta.shape == (12, DIM_THETA) and flat_x.shape == (12, DIM_X)
    torch.testing.assert_close(flat_x[4:8], x[:4])
    y = estimator._embed_for_latents(torch.randn(6, 2), x[:1], dim_z=2)
    assert y.shape == (6, DIM_X)
    with pytest.raises(ValueError, match="`z`"):
        estimator._embed_for_latents(torch.randn(6, 3), x[:1], dim_z=2)


def test_state_dict_keys_and_reload():
    estimator, theta, x = _estimator()
    keys = set(estimator.state_dict())
    assert {"theta_mean", "theta_std", "x_mean", "x_std", "net.weight"} <= keys
    fresh, _, _ = _estimator()
    fresh.load_state_dict(estimator.state_dict())
    torch.testing.assert_close(fresh.loss(theta, x), estimator.loss(theta, x))


def test_density_subclass_is_an_sbi_density_estimator():
    estimator, theta, x = _estimator(_Density)
    assert isinstance(estimator, ConditionalDensityEstimator)
    assert isinstance(estimator.net, nn.Linear)
    assert isinstance(estimator.embedding_net, nn.Identity)  # not sbi's None
    assert estimator.input_shape == (DIM_THETA,)
    assert estimator.condition_shape == (DIM_X,)
    assert estimator.log_prob(theta[:5], x[:5]).shape == (1, 5)
    samples, log_q = estimator.sample_and_log_prob(torch.Size([2]), x[:3])
    assert samples.shape == (2, 3, DIM_THETA) and log_q.shape == (2, 3)
    assert not isinstance(_estimator()[0], ConditionalDensityEstimator)
