"""InflationaryFlow trainer and NPE drop-in path: accuracy, diagnostics, pickling."""

import warnings

import pytest
import torch
from sbi.inference import NPE
from sbi.utils.metrics import c2st

from sbi_allinone import InflationaryFlow, inflationary_flow_nn
from sbi_allinone.inflationary.trainer import (
    cosine_learning_rate,
    default_num_steps,
    patience_epochs,
)
from sbi_allinone.tracking import NullTracker

PRIOR = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
NOISE = 0.5
X_O = torch.tensor([[0.8, -0.5]])


def _simulate(n: int):
    theta = PRIOR.sample((n,))
    return theta, theta + NOISE * torch.randn_like(theta)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    theta, x = _simulate(2000)
    # Two residual blocks (default five) and a bounded budget keep the suite fast;
    # the default patience trains longer.
    inference = InflationaryFlow(
        PRIOR, tracker=NullTracker(), show_progress_bars=False, num_layers=2
    )
    inference.append_simulations(theta, x).train(max_num_epochs=300)
    return inference


def test_posterior_matches_the_analytic_one(trained):
    posterior = trained.build_posterior()
    samples = posterior.sample((2000,), x=X_O, show_progress_bars=False)
    shrink = 1 / (1 + NOISE**2)
    reference = shrink * X_O + (NOISE**2 * shrink) ** 0.5 * torch.randn(2000, 2)
    assert c2st(samples, reference, classifier="mlp") < 0.6


def test_pickle_round_trip_and_reproducible_training(trained, tmp_path):
    posterior = trained.build_posterior()
    path = tmp_path / "iflow.pt"
    torch.save({"trainer": trained, "posterior": posterior}, path)
    loaded = torch.load(path, weights_only=False)
    torch.manual_seed(4)
    expected = posterior.sample((3,), x=X_O, show_progress_bars=False)
    torch.manual_seed(4)
    assert torch.equal(
        loaded["posterior"].sample((3,), x=X_O, show_progress_bars=False), expected
    )

    def train_once():
        torch.manual_seed(2)
        theta, x = _simulate(200)
        inference = NPE(
            PRIOR,
            density_estimator=inflationary_flow_nn(steps=4),
            tracker=NullTracker(),
            show_progress_bars=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference.append_simulations(theta, x).train(max_num_epochs=2)
        return inference.build_posterior().sample((4,), x=X_O, show_progress_bars=False)

    assert torch.equal(train_once(), train_once())


def test_multi_round_is_refused(trained):
    posterior = trained.build_posterior().set_default_x(X_O)
    theta, x = _simulate(50)
    with pytest.raises(ValueError, match="single"):
        trained.append_simulations(theta, x, proposal=posterior).train()


def test_patience_is_a_number_of_optimizer_steps():
    # 1 000 simulations: 4 steps an epoch, 20 000 steps are capped at 1 000 epochs.
    assert patience_epochs(1_000, 200, 0.1) == 1000
    # 10 000 simulations: 45 steps an epoch (5 000 steps stopped too early here).
    assert patience_epochs(10_000, 200, 0.1) == 445
    # 1 000 000 simulations: 4 500 steps an epoch, at least 20 epochs.
    assert patience_epochs(1_000_000, 200, 0.1) == 20


def _trainer(n: int = 200, **kwargs) -> InflationaryFlow:
    torch.manual_seed(3)
    theta, x = _simulate(n)
    inference = InflationaryFlow(
        PRIOR, tracker=NullTracker(), show_progress_bars=False, num_layers=1, **kwargs
    )
    return inference.append_simulations(theta, x)


def test_the_cosine_schedule_is_a_step_budget_with_decay_to_zero():
    # 200 simulations, 180 for training: one step of 200 an epoch.
    inference = _trainer()
    inference.train(num_steps=30, stop_after_epochs=1_000)
    assert inference.epoch == 30
    lr = inference.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(cosine_learning_rate(29, 2e-3, 30)) and lr < 2e-5
    assert cosine_learning_rate(0, 2e-3, 30) == 2e-3
    assert cosine_learning_rate(15, 2e-3, 30) == pytest.approx(1e-3)
    # Three steps an epoch at batches of 60: ceil(30 / 3) epochs.
    inference = _trainer()
    inference.train(num_steps=30, training_batch_size=60, stop_after_epochs=1_000)
    assert inference.epoch == 10
    # sbi's max_num_epochs instead of a step budget: the decay spans its epochs.
    inference = _trainer()
    inference.train(max_num_epochs=3)
    assert inference.epoch == 4
    lr = inference.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(cosine_learning_rate(3, 2e-3, 4))


def test_num_steps_counts_the_optimizer_steps_taken():
    # 180 training rows in batches of 50: 3 full batches an epoch (sbi's loader
    # drops the partial fourth), so 30 steps take 10 epochs.
    inference = _trainer()
    inference.train(num_steps=30, training_batch_size=50)
    assert inference.epoch == 10
    steps = {int(state["step"]) for state in inference.optimizer.state.values()}
    assert steps == {30}


def test_a_step_budget_validates_every_sixteen_steps_and_at_the_end(monkeypatch):
    validated = []
    get_losses = InflationaryFlow._get_losses

    def recording(self, batch, loss_args=None):  # noqa: ANN001
        if not self._neural_net.training:
            validated.append(getattr(self, "epoch", None))
        return get_losses(self, batch=batch, loss_args=loss_args)

    monkeypatch.setattr(InflationaryFlow, "_get_losses", recording)
    inference = _trainer()  # 20 validation rows: one validation batch
    # 3 steps an epoch: every 6th epoch (18 steps), the first and the last (10th).
    inference.train(num_steps=30, training_batch_size=60)
    assert validated[1:] == [0, 5, 9]  # validated[0]: the divergence check's
    # A constant rate validates every epoch (its patience counts epochs).
    validated.clear()
    _trainer().train(lr_decay="constant", max_num_epochs=3, training_batch_size=60)
    assert validated[1:] == [0, 1, 2, 3]
    # So does a step budget with early stopping: a skipped validation would count
    # as an epoch without improvement and stop the run after `stop_after_epochs`.
    validated.clear()
    _trainer().train(num_steps=30, training_batch_size=60, stop_after_epochs=100)
    assert validated[1:] == list(range(10))


def test_the_constant_schedule_keeps_its_rate_and_patience():
    inference = _trainer()
    inference.train(lr_decay="constant", max_num_epochs=5)
    assert inference.optimizer.param_groups[0]["lr"] == 1e-3
    assert inference.epoch == 6  # sbi runs epochs 0..max_num_epochs


def test_adam_updates_the_live_network_only():
    inference = _trainer()
    inference.train(num_steps=2)
    estimator = inference._neural_net
    optimized = {
        id(p) for group in inference.optimizer.param_groups for p in group["params"]
    }
    live = {id(p) for p in estimator.net.net.parameters()}
    average = {id(p) for p in estimator.net.average.parameters()}
    assert live <= optimized and not (average & optimized)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="lr_decay"):
        _trainer().train(lr_decay="linear")
    with pytest.raises(ValueError, match="not both"):
        _trainer().train(num_steps=10, max_num_epochs=3)
    with pytest.raises(ValueError, match="num_steps"):
        _trainer().train(num_steps=0)


def test_the_default_budget_grows_with_the_simulations():
    assert default_num_steps(100) == default_num_steps(1_000) == 2_400
    assert default_num_steps(10_000) == 9_000
    assert 2_400 < default_num_steps(3_000) < 9_000
    assert default_num_steps(10**7) == 30_000


@pytest.mark.parametrize("dataloader_kwargs", [None, {"num_workers": 0}])
def test_epochs_take_sbis_batches_by_indexing_unless_loaders_are_customised(
    dataloader_kwargs,
):
    torch.manual_seed(0)
    theta, x = _simulate(1050)
    inference = InflationaryFlow(
        PRIOR, tracker=NullTracker(), show_progress_bars=False, num_layers=1
    )
    inference.append_simulations(theta, x)
    calls = []
    batch_losses = inference._get_losses

    def counting(batch, **kwargs):
        indexed = inference._split_rows is not None
        calls.append((inference._neural_net.training, len(batch[0]), indexed))
        return batch_losses(batch=batch, **kwargs)

    inference._get_losses = counting
    inference.train(
        num_steps=8, training_batch_size=200, dataloader_kwargs=dataloader_kwargs
    )
    # 945 training rows: 4 full batches of 200 per epoch, the rest dropped as sbi
    # does; all 105 validation rows scored before training and after each epoch.
    assert [size for training, size, _ in calls if training] == [200] * 8
    assert sum(size for training, size, _ in calls if not training) == 3 * 105
    assert {indexed for *_, indexed in calls} == {dataloader_kwargs is None}
    assert inference._split_rows is None  # the copies are not kept
