"""The linear regression adjustment: the ridge fit, its GCV penalty, and the
estimator's coordinates with it."""

import pickle

import pytest
import torch
from torch import nn

from sbi_allinone.inflationary import builder, inflationary_flow_nn
from sbi_allinone.inflationary.adjustment import fit_linear_adjustment


def test_fit_recovers_a_linear_relation():
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(2000, 3, generator=generator)
    coefficients = torch.tensor([[1.0, 0.0], [0.5, -0.7], [0.0, 0.3]])
    theta = y @ coefficients + 2.0 + 0.1 * torch.randn(2000, 2, generator=generator)
    weight, bias = fit_linear_adjustment(theta, y)
    torch.testing.assert_close(weight, coefficients, atol=0.01, rtol=0)
    torch.testing.assert_close(bias, torch.full((2,), 2.0), atol=0.01, rtol=0)


def test_fit_leaves_unrelated_parameters_alone():
    generator = torch.Generator().manual_seed(1)
    # 60 pairs, 40 data dimensions that say nothing: an unpenalized fit would
    # explain two thirds of the variance by chance.
    y, theta = torch.randn(60, 40, generator=generator), torch.randn(60, 2)
    weight, bias = fit_linear_adjustment(theta, y)
    fitted = y @ weight + bias
    assert (fitted - theta.mean(0)).square().mean() < 0.05 * theta.var(0).mean()


def test_fit_ignores_rows_with_nan_data():
    y = torch.randn(500, 2)
    theta = y @ torch.tensor([[2.0], [-1.0]])
    y_with_nan = torch.cat([y, torch.full((5, 2), float("nan"))])
    theta_with_nan = torch.cat([theta, torch.randn(5, 1)])
    weight, _ = fit_linear_adjustment(theta_with_nan, y_with_nan)
    torch.testing.assert_close(weight, torch.tensor([[2.0], [-1.0]]), atol=1e-3, rtol=0)


def _linear_data(num=500):
    x = torch.randn(num, 2)
    return x @ torch.tensor([[1.0, 0.5], [0.0, 1.0]]) + 0.2 * torch.randn(num, 2), x


def test_coordinates_are_the_residuals_and_invert():
    theta, x = _linear_data()
    estimator = inflationary_flow_nn()(theta, x)
    y = estimator._embed(x)
    u = estimator.to_pca(theta, y)
    # Residuals of a good linear fit: much smaller than the standardized theta.
    assert u.var(0).sum() < 0.2 * theta.shape[1]
    torch.testing.assert_close(estimator.from_pca(u, y), theta, atol=1e-5, rtol=0)
    # The eigenvalues (and so the schedule's scales) are those of the residuals.
    torch.testing.assert_close(
        estimator.schedule.eigenvalues.sum(), u.var(0).sum(), rtol=0.01, atol=0
    )


def test_default_adjusts_prp_with_a_fixed_embedding_and_few_pairs_only(monkeypatch):
    theta, x = _linear_data()
    assert inflationary_flow_nn()(theta, x).adjustment_weight.abs().max() > 0.1
    monkeypatch.setattr(builder, "MANY_PAIRS", len(theta))
    assert not inflationary_flow_nn()(theta, x).adjustment_weight.any()
    forced = inflationary_flow_nn(linear_adjustment=True)(theta, x)
    assert forced.adjustment_weight.abs().max() > 0.1
    monkeypatch.undo()
    off = inflationary_flow_nn(linear_adjustment=False)(theta, x)
    assert not off.adjustment_weight.any() and not off.adjustment_bias.any()
    reducing = inflationary_flow_nn(schedule="prr", latent_dim=1)(theta, x)
    assert not reducing.adjustment_weight.any()
    trained = inflationary_flow_nn(embedding_net=nn.Linear(2, 2))(theta, x)
    assert not trained.adjustment_weight.any()
    with pytest.raises(ValueError, match="linear_adjustment=True"):
        inflationary_flow_nn(embedding_net=nn.Linear(2, 2), linear_adjustment=True)


def test_a_model_saved_before_the_adjustment_loads_without_one():
    theta, x = _linear_data(200)
    estimator = inflationary_flow_nn(linear_adjustment=False)(theta, x)
    del estimator._buffers["adjustment_weight"], estimator._buffers["adjustment_bias"]
    loaded = pickle.loads(pickle.dumps(estimator))
    assert (
        loaded.adjustment_weight.shape == (2, 2) and not loaded.adjustment_weight.any()
    )
    samples = loaded.sample((3,), x[:2])
    assert samples.shape == (3, 2, 2) and torch.isfinite(samples).all()
