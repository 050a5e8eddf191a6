"""What every estimator of the package owes its users, checked for each one and mode.

Shapes of the loss and the samples; gradients reach every trainable parameter;
saved weights load with ``torch.load(weights_only=True)`` into a fresh estimator
and reproduce its outputs; eval-mode sampling is deterministic under a seed. An
estimator with a density gives sbi-shaped log-probabilities that agree with
``sample_and_log_prob``; one without (the bidirectional INN) has no ``log_prob`` at
all, and sbi still takes it as a posterior estimator. For each trainer's posterior:
sbi's SBC and TARP run on it, and a saved posterior samples the same; with a
density, sbi's log-probability ranks run on it too, without one its ``log_prob``
fails.
"""

import functools
import inspect
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from sbi.diagnostics import check_sbc, run_sbc, run_tarp
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator

from sbi_allinone import INN, InflationaryFlow, Simformer, inflationary_flow_nn, inn_nn
from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.sampling import sample_ode
from sbi_allinone.tracking import NullTracker

DIM_THETA, DIM_X, ROWS = 2, 3, 64


def _data():
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(ROWS, DIM_THETA, generator=generator)
    x = theta @ torch.randn(DIM_THETA, DIM_X, generator=generator) + 0.1 * torch.randn(
        ROWS, DIM_X, generator=generator
    )
    return theta, x


@dataclass
class Case:
    """How to build one estimator, compute its per-example loss and sample it."""

    build: Callable[[], torch.nn.Module]
    loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    sample: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
    #: sbi's ``log_prob(theta, x)``: True, False (a sampler without a density), or
    #: None where sbi's density interface does not apply (the Simformer's vector
    #: field; its posterior has a density).
    density: bool | None = True


def _sbi_loss(estimator, theta, x):
    return estimator.loss(theta, x)


def _sbi_sample(estimator, x):
    return estimator.sample(torch.Size([5]), x[:2])  # (5, 2, dim_theta)


def _builder_case(builder, density: bool = True) -> Case:
    return Case(lambda: builder(*_data()), _sbi_loss, _sbi_sample, density)


def _simformer() -> SimformerEstimator:
    torch.manual_seed(0)
    theta, x = _data()
    values = torch.cat([theta, x], dim=1)
    net = SimformerNet(DIM_THETA + DIM_X, num_layers=2)
    return SimformerEstimator(
        net, LogNormalNoise(), DIM_THETA, values.mean(0), values.std(0)
    )


def _simformer_loss(estimator, theta, x):
    values = torch.cat([theta, x], dim=1)
    masks = torch.zeros_like(values, dtype=torch.bool)
    masks[: len(values) // 2, DIM_THETA:] = True  # half posterior, half joint
    return estimator.loss(values, masks)


def _simformer_sample(estimator, x):
    values = torch.cat([torch.zeros(2, DIM_THETA), x[:2]], dim=1).repeat(5, 1)
    condition = torch.arange(DIM_THETA + DIM_X) >= DIM_THETA
    condition = condition.expand_as(values)
    missing = torch.zeros_like(condition)
    return sample_ode(estimator, values, condition, missing, steps=4)[:, :DIM_THETA]


CASES = {
    "inn_ml": _builder_case(inn_nn("ml", num_blocks=2, hidden_features=16, seed=0)),
    "inn_hybrid": _builder_case(
        inn_nn("hybrid", num_blocks=2, hidden_features=16, seed=0)
    ),
    "inn_mmd": _builder_case(
        inn_nn("mmd", num_blocks=2, hidden_features=16, seed=0), density=False
    ),
    "iflow_prp": _builder_case(
        inflationary_flow_nn(hidden_features=16, num_layers=2, steps=4, seed=0)
    ),
    "iflow_prr": _builder_case(
        inflationary_flow_nn(
            "prr", latent_dim=1, hidden_features=16, num_layers=2, steps=4, seed=0
        )
    ),
    "simformer": Case(_simformer, _simformer_loss, _simformer_sample, None),
}
WITH_DENSITY = [name for name, case in CASES.items() if case.density]
WITHOUT_DENSITY = [name for name, case in CASES.items() if case.density is False]


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_log_prob_has_sbi_shapes_and_agrees_with_sample_and_log_prob(name):
    estimator = CASES[name].build().eval()
    theta, x = _data()
    with torch.no_grad():
        assert estimator.log_prob(theta[:4], x[:4]).shape == (1, 4)
        log_q = estimator.log_prob(theta[:12].reshape(3, 4, DIM_THETA), x[:4])
        assert log_q.shape == (3, 4) and torch.isfinite(log_q).all()
        samples, log_q = estimator.sample_and_log_prob(torch.Size([5]), x[:2])
        assert samples.shape == (5, 2, DIM_THETA) and log_q.shape == (5, 2)
        torch.testing.assert_close(log_q, estimator.log_prob(samples, x[:2]))


@pytest.mark.parametrize("name", WITHOUT_DENSITY)
def test_sampler_has_no_log_prob_and_sbi_accepts_it(name):
    estimator = CASES[name].build()
    assert not hasattr(estimator, "log_prob")
    assert not hasattr(estimator, "sample_and_log_prob")
    # sbi's NPE and DirectPosterior gate on this type, and then only sample.
    assert isinstance(estimator, ConditionalDensityEstimator)


def test_loss_is_per_example_and_gradients_reach_every_parameter(case):
    estimator = case.build().train()
    theta, x = _data()
    loss = case.loss(estimator, theta, x)
    assert loss.shape == (ROWS,) and torch.isfinite(loss).all()
    loss.mean().backward()
    trainable = {n: p for n, p in estimator.named_parameters() if p.requires_grad}
    assert trainable
    unreached = [n for n, p in trainable.items() if p.grad is None]
    assert not unreached, f"no gradient reaches {unreached}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())


def test_samples_have_sbi_shapes_and_are_deterministic_under_a_seed(case):
    estimator = case.build().eval()
    _, x = _data()
    torch.manual_seed(3)
    first = case.sample(estimator, x)
    torch.manual_seed(3)
    again = case.sample(estimator, x)
    assert first.numel() == 5 * 2 * DIM_THETA and torch.isfinite(first).all()
    assert torch.equal(first, again)


def test_weights_round_trip_with_weights_only_loading(case):
    trained = case.build()
    with torch.no_grad():  # move every weight away from its initial value
        for parameter in trained.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = case.build()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    _, x = _data()
    outputs = []
    for estimator in (trained.eval(), fresh.eval()):
        torch.manual_seed(5)
        outputs.append(case.sample(estimator, x))
    assert torch.equal(*outputs)


# --- The trainers' posteriors: sbi's diagnostics and saving, for each method. ---

PRIOR = torch.distributions.MultivariateNormal(torch.zeros(DIM_THETA), torch.eye(2))


def _simulate(n: int):
    theta = PRIOR.sample((n,))
    return theta, torch.cat([theta + 0.5 * torch.randn_like(theta), theta[:, :1]], 1)


def _quiet(trainer_class, **kwargs):
    return trainer_class(
        PRIOR, tracker=NullTracker(), show_progress_bars=False, **kwargs
    )


def _train(inference, **train_kwargs):
    theta, x = _simulate(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.append_simulations(theta, x).train(**train_kwargs)
    return inference


def _inn(mode):
    inference = _quiet(INN, mode=mode, num_blocks=2, hidden_features=16)
    return _train(inference, max_num_epochs=3).build_posterior()


def _iflow():
    inference = _quiet(InflationaryFlow, num_layers=2, hidden_features=16, steps=4)
    return _train(inference, max_num_epochs=3).build_posterior()


def _simformer_posterior():
    inference = _quiet(Simformer, net_kwargs={"num_layers": 1})
    _train(inference, num_steps=4, steps_per_epoch=2, training_batch_size=50)
    return inference.build_posterior(steps=5)


def _unnormalized(posterior):
    # sbi normalizes a DirectPosterior's log_prob by 10 000 samples per x; ranks
    # of log-probabilities at one x do not depend on it.
    if "norm_posterior" in inspect.signature(posterior.log_prob).parameters:
        return partial(posterior.log_prob, norm_posterior=False)
    return posterior.log_prob


#: Each trainer's posterior, and whether it has a density.
POSTERIORS = {
    "inn_ml": (partial(_inn, "ml"), True),
    "inn_mmd": (partial(_inn, "mmd"), False),
    "iflow": (_iflow, True),
    "simformer": (_simformer_posterior, True),
}
POSTERIORS_WITH_DENSITY = [name for name, (_, d) in POSTERIORS.items() if d]
POSTERIORS_WITHOUT_DENSITY = [name for name, (_, d) in POSTERIORS.items() if not d]


@functools.cache
def _trained(name: str):
    """Each posterior is trained once per session, from the same seed; the tests
    that use it start from their own seed all the same."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return POSTERIORS[name][0]()


@pytest.fixture(params=list(POSTERIORS), ids=list(POSTERIORS))
def trained_posterior(request):
    return _trained(request.param)


@pytest.mark.filterwarnings("ignore:.*(SBC|TARP).*:UserWarning")
def test_sbi_diagnostics_accept_the_posterior(trained_posterior):
    posterior = trained_posterior
    thetas, xs = _simulate(8)
    ranks, dap = run_sbc(
        thetas, xs, posterior, num_posterior_samples=20, show_progress_bar=False
    )
    assert ranks.shape == (8, DIM_THETA) and dap.shape == (8, DIM_THETA)
    check_sbc(ranks, thetas, dap, num_posterior_samples=20)
    ecp, alpha = run_tarp(
        thetas, xs, posterior, num_posterior_samples=20, num_bins=4,
        show_progress_bar=False,
    )  # fmt: skip
    assert ecp.shape == alpha.shape


@pytest.mark.filterwarnings("ignore:.*(SBC|TARP).*:UserWarning")
@pytest.mark.parametrize("name", POSTERIORS_WITH_DENSITY)
def test_sbi_log_prob_ranks_run_on_a_posterior_with_a_density(name):
    posterior = _trained(name)
    thetas, xs = _simulate(3)
    ranks, _ = run_sbc(
        thetas, xs, posterior, num_posterior_samples=5,
        reduce_fns=_unnormalized(posterior), show_progress_bar=False,
        use_batched_sampling=False,
    )  # fmt: skip
    assert ranks.shape == (3, 1)


@pytest.mark.parametrize("name", POSTERIORS_WITHOUT_DENSITY)
def test_posterior_without_a_density_has_no_log_prob(name):
    posterior = _trained(name)
    _, x = _simulate(1)
    with pytest.raises(AttributeError, match="log_prob"):
        posterior.log_prob(torch.zeros(3, DIM_THETA), x=x)


def test_saved_posterior_samples_the_same(trained_posterior, tmp_path):
    posterior = trained_posterior
    path = tmp_path / "posterior.pt"
    torch.save(posterior, path)
    loaded = torch.load(path, weights_only=False)  # a whole object needs pickle
    _, x = _simulate(1)
    torch.manual_seed(4)
    expected = posterior.sample((3,), x=x, show_progress_bars=False)
    torch.manual_seed(4)
    assert torch.equal(loaded.sample((3,), x=x, show_progress_bars=False), expected)
