"""INNDensityEstimator and BidirectionalINN: normalization, shapes, latent maps,
modes and errors."""

import pytest
import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import nn

from sbi_allinone import inn_nn
from sbi_allinone.inn import BidirectionalINN, INNDensityEstimator
from sbi_allinone.inn.trainer import MAX_MMD_Y_DIM


def _data(n: int = 500, dim_theta: int = 2, dim_x: int = 3):
    theta = torch.randn(n, dim_theta) * 2 + 1
    x = torch.cat([theta, theta[:, :1]], dim=-1)[:, :dim_x] + torch.randn(n, dim_x)
    return theta, x


def _randomized(mode: str = "ml", **kwargs):
    theta, x = _data()
    estimator = inn_nn(mode=mode, num_blocks=2, hidden_features=16, **kwargs)(theta, x)
    with torch.no_grad():
        for name, parameter in estimator.named_parameters():
            if "subnet" in name:
                parameter.normal_(0, 0.15)
    return estimator.eval(), theta, x


def test_log_prob_integrates_to_one_on_a_grid():
    estimator, _, x = _randomized()
    axis = torch.linspace(-12, 14, 401)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        log_q = estimator.log_prob(grid.unsqueeze(1), x[:1])  # (S, 1)
    cell = (axis[1] - axis[0]) ** 2
    assert log_q.shape == (len(grid), 1)
    assert (log_q.exp().sum() * cell).item() == pytest.approx(1.0, abs=0.01)


def test_shapes_with_batched_conditions():
    estimator, theta, x = _randomized()
    with torch.no_grad():
        samples = estimator.sample((7,), x[:3])
        assert samples.shape == (7, 3, 2)
        assert estimator.log_prob(samples, x[:3]).shape == (7, 3)
        assert estimator.log_prob(theta[:4], x[:4]).shape == (1, 4)
        assert estimator.sample((2, 5), x[:1]).shape == (2, 5, 1, 2)
        samples, log_q = estimator.sample_and_log_prob((6,), x[:2])
        assert samples.shape == (6, 2, 2) and log_q.shape == (6, 2)
    assert estimator.loss(theta[:8], x[:8]).shape == (8,)


def test_latent_round_trip_and_log_prob_consistency():
    estimator, theta, x = _randomized()
    with torch.no_grad():
        z = estimator.inverse_transform(theta[:20], x[:20])
        torch.testing.assert_close(
            estimator.transform(z, x[:20]), theta[:20], atol=1e-4, rtol=0
        )
        # Sampling is the inverse map at standard-normal latents.
        torch.manual_seed(3)
        samples = estimator.sample((5,), x[:1]).squeeze(1)
        torch.manual_seed(3)
        latents = torch.randn(5, 2)
        torch.testing.assert_close(estimator.transform(latents, x[:1]), samples)


@pytest.mark.parametrize(
    ("mode", "model"),
    [("ml", INNDensityEstimator), ("hybrid", INNDensityEstimator),
     ("mmd", BidirectionalINN)],
)  # fmt: skip
def test_each_mode_builds_its_model(mode, model):
    estimator, _, _ = _randomized(mode)
    assert type(estimator) is model
    assert isinstance(estimator, ConditionalDensityEstimator)  # what sbi checks
    assert hasattr(estimator, "log_prob") == (mode != "mmd")
    if mode != "mmd":
        assert estimator.mode == mode


def test_bidirectional_model_has_no_log_prob_but_samples():
    estimator, theta, x = _randomized("mmd")
    assert not hasattr(estimator, "log_prob")  # sbi's build check skips it
    with pytest.raises(AttributeError, match="log_prob"):
        estimator.log_prob(theta[:2], x[:2])
    with torch.no_grad():
        assert estimator.sample((4,), x[:3]).shape == (4, 3, 2)
        assert estimator.loss(theta[:8], x[:8]).shape == (8,)
        z = estimator.inverse_transform(theta[:5], x[:5])
        assert z.shape == (5, 2)
        assert estimator.predict_x(theta[:5]).shape == (5, 3)
        # Sampling is the inverse map at standard-normal latents and y(x).
        torch.manual_seed(3)
        samples = estimator.sample((5,), x[:1]).squeeze(1)
        torch.manual_seed(3)
        latents = torch.randn(5, 2)
        torch.testing.assert_close(estimator.transform(latents, x[:1]), samples)
    # [theta (2), pad] -> [y (3), z (2), pad]; padded to twice y + z by default.
    assert estimator.dim_total == 10
    theta_, x_ = _data()
    assert inn_nn("mmd", padded_dim=5)(theta_, x_).dim_total == 5
    with pytest.raises(ValueError, match="padded_dim"):
        inn_nn("mmd", padded_dim=4)(theta_, x_)
    with pytest.raises(ValueError, match="padded_dim"):
        inn_nn("ml", padded_dim=4)


@pytest.mark.parametrize("match_padding", [True, False])
@pytest.mark.parametrize("joint_inverse", [True, False])
def test_inverse_mmd_matches_the_chosen_columns(match_padding, joint_inverse):
    estimator, theta, x = _randomized(
        "mmd", match_padding=match_padding, joint_inverse=joint_inverse
    )
    theta_std, y = estimator._standardize(theta[:64]), estimator._embed(x[:64])
    with torch.no_grad():
        inverse, target = estimator._inverse_pair(theta_std, y)
    width = (10 if match_padding else 2) + (3 if joint_inverse else 0)
    assert inverse.shape == target.shape == (64, width)
    torch.testing.assert_close(target[:, :2], theta_std)
    if joint_inverse:
        torch.testing.assert_close(target[:, -3:], y)
        torch.testing.assert_close(inverse[:, -3:], y)
    if match_padding:  # the target's padding is the (noisy) zero padding
        assert target[:, 2:10].abs().max() < 6 * estimator.mmd.pad_noise
        # ...and the inverse's padding is what a randomized net returns there.
        assert inverse[:, 2:10].abs().max() > 0


def test_mmd_mode_keeps_the_summary_fixed():
    summary = nn.Linear(3, 2)
    estimator, theta, x = _randomized("mmd", embedding_net=summary)
    estimator.train()
    estimator.loss(theta[:16], x[:16]).mean().backward()
    assert summary.weight.grad is None
    assert not summary.weight.requires_grad


def test_hybrid_loss_exceeds_the_ml_loss_by_mmd_terms():
    theta, x = _data()
    torch.manual_seed(0)
    ml = inn_nn("ml", num_blocks=2, hidden_features=16, seed=1)(theta, x)
    hybrid = inn_nn("hybrid", num_blocks=2, hidden_features=16, seed=1)(theta, x)
    hybrid.load_state_dict(ml.state_dict())
    difference = hybrid.loss(theta[:64], x[:64]) - ml.loss(theta[:64], x[:64])
    assert torch.allclose(difference, difference[0].expand(64))  # a batch-level term
    assert difference[0] > 0


def test_embedding_net_is_used_in_ml_mode():
    theta, x = _data(dim_x=3)
    embedding = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
    estimator = inn_nn(embedding_net=embedding, num_blocks=2, hidden_features=16)(
        theta, x
    )
    estimator.loss(theta[:16], x[:16]).mean().backward()
    assert embedding[0].weight.grad is not None
    assert estimator.embedding_net is embedding


def test_bad_input_raises_clear_errors():
    theta, x = _data()
    with pytest.raises(ValueError, match="`mode`"):
        inn_nn(mode="adversarial")
    with pytest.raises(ValueError, match="latent_dim"):
        inn_nn(mode="ml", latent_dim=2)
    big_x = torch.randn(len(theta), MAX_MMD_Y_DIM + 1)
    with pytest.raises(ValueError, match="low-dimensional"):
        inn_nn(mode="mmd")(theta, big_x)
    with pytest.raises(ValueError, match="z_score_theta"):
        inn_nn(z_score_theta="robust")(theta, x)
    with pytest.raises(ValueError, match="flat"):
        inn_nn()(theta, torch.randn(len(theta), 2, 3))
    estimator = inn_nn(num_blocks=1, hidden_features=8)(theta, x)
    with pytest.raises(ValueError, match="condition"):
        estimator.log_prob(theta[:2], torch.randn(2, 4))
    with pytest.raises(ValueError, match="`z`"):
        estimator.transform(torch.randn(3, 5), x[:1])
    with pytest.raises(ValueError, match="BidirectionalINN"):
        INNDensityEstimator(estimator.net, None, "mmd", estimator.mmd)
