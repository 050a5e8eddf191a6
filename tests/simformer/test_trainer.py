"""Simformer trainer and posterior objects: the sbi interface, shapes and errors.

Accuracy is checked elsewhere; here the network trains for two epochs only.
"""

import warnings

import pytest
import torch

from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.tracking import NullTracker

PRIOR = torch.distributions.Independent(
    torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1
)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    theta = PRIOR.sample((300,))
    x = torch.cat([theta + 0.5 * torch.randn_like(theta), theta.sum(1, True)], 1)
    x[:10, 2] = float("nan")
    inference = Simformer(
        PRIOR,
        tracker=NullTracker(),
        show_progress_bars=False,
        net_kwargs={"num_layers": 1},
    )
    with pytest.warns(UserWarning, match="10 entries of `x` .* treated as missing"):
        inference.append_simulations(theta, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.train(num_steps=4, steps_per_epoch=2, training_batch_size=50)
    return inference


def test_posterior_likelihood_and_conditional_shapes(trained):
    posterior = trained.build_posterior(steps=5)
    x_o = torch.tensor([[0.1, -0.2, 0.0]])
    assert posterior.sample((7,), x=x_o).shape == (7, 2)
    assert posterior.sample_batched((4,), x=x_o.repeat(3, 1)).shape == (4, 3, 2)
    assert posterior.log_prob(torch.zeros(5, 2), x=x_o).shape == (5,)
    posterior.set_default_x(x_o)
    assert posterior.sample((3,)).shape == (3, 2)

    likelihood = trained.build_likelihood(steps=5)
    assert likelihood.sample((6,), x=torch.zeros(1, 2)).shape == (6, 3)

    mask = torch.tensor([True, False, False, True, False])
    conditional = trained.build_conditional(mask, sample_with="ode", steps=3)
    assert conditional.sample((2,), x=torch.zeros(1, 2)).shape == (2, 3)


def test_missing_observation_entries_are_allowed(trained):
    posterior = trained.build_posterior(steps=5)
    samples = posterior.sample((5,), x=torch.tensor([[0.1, float("nan"), 0.0]]))
    assert samples.shape == (5, 2) and torch.isfinite(samples).all()


def test_validation_loss_is_a_fixed_function(trained):
    train_loader, val_loader = trained.get_dataloaders(0, 50, 0.1, True)
    trained._neural_net.eval()
    losses = [
        sum(trained._get_losses(batch).sum().item() for batch in val_loader)
        for _ in range(2)
    ]
    assert losses[0] == losses[1]


def test_learning_rate_decays_over_the_second_half(trained):
    # 2 epochs of 2 steps: epoch 0 at the base rate, epoch 1 at the half-way point.
    assert trained.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    inference = Simformer(PRIOR, tracker=NullTracker(), show_progress_bars=False)
    inference.append_simulations(PRIOR.sample((60,)), PRIOR.sample((60,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.train(num_steps=8, steps_per_epoch=1, training_batch_size=10)
    # Epoch 7 of 8: 7/8 of the way, 3/4 through the decay from 1e-3 to 1e-6.
    assert inference.optimizer.param_groups[0]["lr"] == pytest.approx(
        1e-3 + 0.75 * (1e-6 - 1e-3)
    )


def test_early_stopping_counts_its_patience_from_the_decay():
    # 20 epochs of 1 step, the decay from epoch 11; a validation loss that never
    # improves stops training 2 epochs into the decay, not 2 epochs in.
    inference = Simformer(PRIOR, tracker=NullTracker(), show_progress_bars=False)
    inference.append_simulations(PRIOR.sample((60,)), PRIOR.sample((60,)))
    inference._validate_epoch = lambda val_loader, loss_args: 1.0
    inference.train(
        num_steps=20, steps_per_epoch=1, training_batch_size=10, stop_after_epochs=2
    )
    assert inference.epoch == 13
    assert inference.summary["epochs_trained"] == [13]


def test_bad_input():
    inference = Simformer(PRIOR, tracker=NullTracker())
    with pytest.raises(ValueError, match="`theta` must have shape"):
        inference.append_simulations(torch.zeros(5), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="`theta` has 5 rows but `x` has 4"):
        inference.append_simulations(torch.zeros(5, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="`theta` contains NaN"):
        inference.append_simulations(
            torch.full((2, 2), float("nan")), torch.zeros(2, 2)
        )
    with pytest.raises(ValueError, match="call `append_simulations` first"):
        inference.train()
    inference.append_simulations(torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="`num_steps` must be at least 2"):
        inference.train(num_steps=0)
    with pytest.raises(ValueError, match="needs a dependency `graph`"):
        Simformer(PRIOR, attention="directed", tracker=NullTracker())


def test_bad_conditions(trained):
    with pytest.raises(ValueError, match="`condition_mask` must have 5 entries"):
        trained.build_conditional(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="some but not all"):
        trained.build_conditional(torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must have shape \(batch, 3\)"):
        trained.build_posterior().sample((2,), x=torch.zeros(1, 2))


def test_pickle_round_trip(trained, tmp_path):
    posterior = trained.build_posterior(steps=5)
    path = tmp_path / "simformer.pt"
    torch.save({"trainer": trained, "posterior": posterior}, path)
    loaded = torch.load(path, weights_only=False)
    x_o = torch.tensor([[0.1, -0.2, 0.0]])
    torch.manual_seed(3)
    expected = posterior.sample((4,), x=x_o)
    torch.manual_seed(3)
    assert torch.equal(loaded["posterior"].sample((4,), x=x_o), expected)
    torch.manual_seed(3)
    again = loaded["trainer"].build_posterior(steps=5).sample((4,), x=x_o)
    assert torch.equal(again, expected)


def test_guided_conditional_through_the_trainer(trained):
    from sbi_allinone.simformer.guidance import Interval

    # Interval observation of x_3 (node 4) in [0.5, 1.0], x_1 observed exactly.
    mask = torch.tensor([False, False, True, False, False])
    guided = trained.build_conditional(
        mask, steps=100, guidance=[Interval(4, 0.5, 1.0)], recurrence=2
    )
    free = trained.build_conditional(mask, steps=100)
    samples = guided.sample((300,), x=torch.tensor([[0.3]]))
    assert samples.shape == (300, 4)

    def inside(samples):
        return ((samples[:, 3] > 0.5) & (samples[:, 3] < 1.0)).float().mean()

    # Even a barely trained network is pulled into the interval.
    assert inside(samples) > 0.8
    assert inside(free.sample((300,), x=torch.tensor([[0.3]]))) < 0.5
    with pytest.raises(ValueError, match="no tractable density"):
        guided.log_prob(torch.zeros(1, 4), x=torch.tensor([[0.3]]))
    with pytest.raises(ValueError, match="sample_with='sde'"):
        trained.build_conditional(mask, sample_with="ode", guidance=[Interval(4, 0.5)])
    with pytest.raises(ValueError, match="conditioned on"):
        trained.build_conditional(mask, guidance=[Interval(2, 0.5)])
    with pytest.raises(ValueError, match="ode_solver"):
        trained.build_conditional(mask, ode_solver="euler")


def test_default_schedule_scales_with_simulations_and_variables():
    from sbi_allinone.simformer.schedule import default_batch_size, default_num_steps

    assert [default_num_steps(n) for n in (100, 1000, 8000, 10_000, 10**6)] == [
        3000,
        3000,
        4000,
        5000,
        5000,
    ]
    # About 4 000 tokens a batch, between 200 and 500 examples.
    assert [default_batch_size(n) for n in (2, 4, 13, 20, 100)] == [
        500,
        500,
        307,
        200,
        200,
    ]


def test_training_uses_a_fused_adam_over_the_live_network_only(trained):
    estimator = trained._neural_net
    optimized = {id(p) for g in trained.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in estimator.net.parameters()}
    assert not optimized & {id(p) for p in estimator.average.parameters()}


def test_bad_noise_levels_and_average():
    with pytest.raises(ValueError, match="`ema_decay` must be in"):
        Simformer(PRIOR, ema_decay=1.0)
    with pytest.raises(ValueError, match="`sde` must be 'edm', 've', 'vp'"):
        Simformer(PRIOR, sde="subvp")


def test_mask_weights_reach_training_and_validation(monkeypatch):
    seen = []
    loss = SimformerEstimator.loss

    def recording(self, values, condition_mask, **kwargs):  # noqa: ANN001, ANN202
        seen.append(condition_mask.clone())
        return loss(self, values, condition_mask, **kwargs)

    monkeypatch.setattr(SimformerEstimator, "loss", recording)
    inference = Simformer(PRIOR, tracker=NullTracker(), show_progress_bars=False)
    theta = PRIOR.sample((60,))
    inference.append_simulations(theta, theta + 0.1 * torch.randn_like(theta))
    with pytest.raises(ValueError, match="`mask_weights` has unknown kinds"):
        inference.train(num_steps=2, mask_weights={"post": 1.0})
    inference.train(
        num_steps=2, training_batch_size=20, mask_weights={"posterior": 1.0}
    )
    posterior = torch.tensor([False, False, True, True])
    assert seen and all((masks == posterior).all() for masks in seen)
