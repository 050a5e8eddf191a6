"""The INN trainer and the NPE drop-in path: accuracy, sbi diagnostics, persistence."""

import warnings

import pytest
import torch
from sbi.inference import NPE
from sbi.utils.metrics import c2st

from sbi_allinone import INN, inn_nn
from sbi_allinone.inn import BidirectionalINN
from sbi_allinone.inn.toy import MultimodalToy
from sbi_allinone.tracking import NullTracker

PRIOR = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
NOISE = 0.5
X_O = torch.tensor([[0.8, -0.5]])


def _simulate(n: int):
    theta = PRIOR.sample((n,))
    return theta, theta + NOISE * torch.randn_like(theta)


def _true_posterior_samples(x_o: torch.Tensor, n: int) -> torch.Tensor:
    """x = theta + N(0, s²): posterior N(x / (1 + s²), s² / (1 + s²))."""
    shrink = 1 / (1 + NOISE**2)
    return shrink * x_o + (NOISE**2 * shrink) ** 0.5 * torch.randn(n, 2)


@pytest.fixture(scope="module")
def trained_ml():
    torch.manual_seed(0)
    theta, x = _simulate(2000)
    inference = NPE(
        PRIOR,
        density_estimator=inn_nn(num_blocks=4, hidden_features=64),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    inference.append_simulations(theta, x).train()
    return inference


def test_npe_drop_in_matches_the_analytic_posterior(trained_ml):
    posterior = trained_ml.build_posterior()
    samples = posterior.sample((2000,), x=X_O, show_progress_bars=False)
    accuracy = c2st(samples, _true_posterior_samples(X_O, 2000), classifier="mlp")
    assert accuracy < 0.58
    # The density agrees with the analytic one up to the training error.
    true = torch.distributions.MultivariateNormal(
        X_O[0] / (1 + NOISE**2), NOISE**2 / (1 + NOISE**2) * torch.eye(2)
    )
    theta = true.sample((500,))
    error = posterior.log_prob(theta, x=X_O) - true.log_prob(theta)
    assert error.abs().mean() < 0.15


def test_trainer_pickles_and_seeds_reproduce(trained_ml, tmp_path):
    posterior = trained_ml.build_posterior()
    path = tmp_path / "inn.pt"
    torch.save({"trainer": trained_ml, "posterior": posterior}, path)
    loaded = torch.load(path, weights_only=False)
    torch.manual_seed(5)
    expected = posterior.sample((4,), x=X_O, show_progress_bars=False)
    torch.manual_seed(5)
    again = loaded["posterior"].sample((4,), x=X_O, show_progress_bars=False)
    assert torch.equal(again, expected)

    def train_once() -> torch.Tensor:
        torch.manual_seed(11)
        theta, x = _simulate(200)
        inference = INN(
            PRIOR, tracker=NullTracker(), show_progress_bars=False, num_blocks=2
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference.append_simulations(theta, x).train(max_num_epochs=3)
        return inference.build_posterior().sample((5,), x=X_O, show_progress_bars=False)

    assert torch.equal(train_once(), train_once())


def test_ml_mode_recovers_every_mode_with_its_weight():
    torch.manual_seed(0)
    toy = MultimodalToy()
    theta = toy.prior.sample((3000,))
    inference = INN(toy.prior, tracker=NullTracker(), show_progress_bars=False)
    inference.append_simulations(theta, toy.simulator(theta)).train()
    posterior = inference.build_posterior()
    for colour in range(toy.num_colours):
        samples = posterior.sample(
            (4000,), x=toy.observation(colour), show_progress_bars=False
        )
        error = toy.mode_weights(samples) - toy.true_mode_weights(colour)
        assert error.abs().max() < 0.06, (colour, error)


def test_mmd_mode_samples_but_has_no_density():
    torch.manual_seed(0)
    theta, x = _simulate(500)
    inference = INN(PRIOR, mode="mmd", tracker=NullTracker(), show_progress_bars=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.append_simulations(theta, x).train(max_num_epochs=5)
    posterior = inference.build_posterior()
    assert posterior.sample((10,), x=X_O, show_progress_bars=False).shape == (10, 2)
    with pytest.raises(AttributeError, match="log_prob"):
        posterior.log_prob(torch.zeros(3, 2), x=X_O)
    with pytest.raises(ValueError, match="proposal"):
        inference.append_simulations(theta, x, proposal=posterior).train()


def test_mmd_builder_is_a_drop_in_for_sbi_npe():
    torch.manual_seed(0)
    theta, x = _simulate(300)
    inference = NPE(
        PRIOR,
        density_estimator=inn_nn("mmd", num_blocks=2, hidden_features=16),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.append_simulations(theta, x).train(
            max_num_epochs=2, training_batch_size=100
        )
    posterior = inference.build_posterior()
    assert isinstance(posterior.posterior_estimator, BidirectionalINN)
    assert posterior.sample((10,), x=X_O, show_progress_bars=False).shape == (10, 2)


def test_invalid_simulations_are_excluded_as_in_sbi():
    theta, x = _simulate(300)
    x[:7, 0] = float("nan")
    inference = INN(
        PRIOR, tracker=NullTracker(), show_progress_bars=False, num_blocks=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.append_simulations(theta, x).train(max_num_epochs=2)
    assert torch.isfinite(
        inference.build_posterior().sample((5,), x=X_O, show_progress_bars=False)
    ).all()


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="`mode`"):
        INN(PRIOR, mode="gan")
