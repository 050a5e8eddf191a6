"""The same checks in every trainer (Simformer, InflationaryFlow, INN): a diverging
training run raises and leaves no network behind, the prior's event shape must
match ``theta``, and float64 or 1-D simulations are treated alike."""

import warnings

import pytest
import torch
from sbi.utils import BoxUniform

from sbi_allinone import INN, InflationaryFlow, Simformer
from sbi_allinone.inflationary.estimator import InflationaryFlowEstimator
from sbi_allinone.inn.estimator import INNDensityEstimator
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.tracking import NullTracker

ESTIMATORS = ("Simformer", "InflationaryFlow", "INN")
OPTIONS = dict(tracker=NullTracker(), show_progress_bars=False)


def _prior(dim: int = 2) -> BoxUniform:
    return BoxUniform(-torch.ones(dim), torch.ones(dim))


def _trainer(name: str, prior: BoxUniform):
    """The tiniest configuration of each trainer."""
    if name == "Simformer":
        return Simformer(prior, net_kwargs=dict(num_layers=1), **OPTIONS)
    if name == "InflationaryFlow":
        return InflationaryFlow(prior, hidden_features=16, num_layers=1, **OPTIONS)
    return INN(prior, num_blocks=2, hidden_features=16, **OPTIONS)


def _train_options(name: str) -> dict:
    if name == "Simformer":
        return dict(num_steps=20, steps_per_epoch=5)
    return dict(max_num_epochs=5, stop_after_epochs=3)


def _simulations(rows: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    theta = _prior().sample((rows,))
    return theta, theta + 0.1 * torch.randn(rows, 2)


LOSSES = {
    "Simformer": SimformerEstimator,
    "InflationaryFlow": InflationaryFlowEstimator,
    "INN": INNDensityEstimator,
}


@pytest.mark.parametrize("cause", ["learning_rate", "nan_loss"])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_divergence_raises_and_leaves_no_network(name, cause, monkeypatch):
    trainer = _trainer(name, _prior()).append_simulations(*_simulations())
    options = _train_options(name)
    if cause == "learning_rate":
        options["learning_rate"] = 10.0
    else:
        estimator = LOSSES[name]
        loss = estimator.loss

        def nan_loss(self, *args, **kwargs):
            return loss(self, *args, **kwargs) * float("nan")

        monkeypatch.setattr(estimator, "loss", nan_loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError) as error:
            trainer.train(**options)
    message = str(error.value)
    assert f"{name} training diverged in epoch" in message
    assert "smaller `learning_rate`" in message
    with pytest.raises(RuntimeError, match="training run diverged"):
        trainer.build_posterior()
    if cause == "learning_rate":  # a fresh run at a sane rate works
        options = _train_options(name)
        with pytest.raises(ValueError, match="nothing to resume"):
            trainer.train(resume_training=True, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train(**options)
        assert trainer.build_posterior() is not None


@pytest.mark.parametrize("dim", [1, 3])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_prior_event_shape_must_match_theta(name, dim):
    trainer = _trainer(name, _prior(dim))
    expected = r"`prior` must have event shape \(2,\).*got \(" + str(dim) + r",\)"
    with pytest.raises(ValueError, match=expected):
        trainer.append_simulations(*_simulations(20))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_float64_is_cast_and_1d_input_names_the_argument(name):
    theta, x = _simulations(20)
    trainer = _trainer(name, _prior())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cast without a warning, as the Simformer
        trainer.append_simulations(theta.double(), x.double())
    stored_theta, stored_x, _ = trainer.get_simulations()
    assert stored_theta.dtype == stored_x.dtype == torch.float32
    assert torch.equal(stored_theta, theta) and torch.equal(stored_x, x)
    expected = r"`x` must have shape \(num_simulations, dim_x\)"
    with pytest.raises(ValueError, match=expected):
        _trainer(name, _prior()).append_simulations(theta, x[:, 0])
    expected = r"`theta` must have shape \(num_simulations, dim_theta\)"
    with pytest.raises(ValueError, match=expected):
        _trainer(name, _prior()).append_simulations(theta[:, 0], x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_weight_is_divergence(bad):
    # Finite losses, one bad weight among many tensors: the one-sum check sees it.
    trainer = _trainer("InflationaryFlow", _prior())
    trainer._neural_net = torch.nn.Sequential(
        *(torch.nn.Linear(3, 3) for _ in range(4))
    )
    trainer._loss_scale = None
    assert trainer._divergence_reason(1.0, 1.0) is None
    with torch.no_grad():
        trainer._neural_net[2].bias[1] = bad
    assert "non-finite weights" in trainer._divergence_reason(1.0, 1.0)
