"""A Simformer on series: values at per-simulation times, any number of them
(the task: ``sbi_allinone.benchmarks.series_toy``, with an exact posterior)."""

import time

import pytest
import torch
from sbi.utils import BoxUniform
from torch.distributions import Independent, Normal

from sbi_allinone import Simformer
from sbi_allinone.benchmarks.series_toy import (
    LINEAR_SERIES,
    linear_series_posterior,
    simulate_linear_series,
    train_linear_series,
)
from sbi_allinone.simformer import Variables

NAN = float("nan")
SPEC = LINEAR_SERIES


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return train_linear_series(2000, num_steps=1000)


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_posterior_from_any_number_of_points_at_any_times(trained):
    posterior = trained.build_posterior()
    stds = []
    # 1, 6 (the most in training) and 10 points (more), at times never seen
    # together in training.
    for num in (1, 6, 10):
        times = torch.linspace(0.3, 1.9, num)[None]
        y = 1.5 * times
        samples = posterior.sample((1000,), x={"y": y}, metadata={"time": {"y": times}})
        assert samples.shape == (1000, 1)
        mean, _ = linear_series_posterior(times, y)
        # At this budget the posterior is too wide and, from one point, shrunk
        # towards the prior mean (docs/benchmarks/simformer_series.md): 500 steps
        # miss the one-point mean by 0.34, 1500 by 0.16.
        assert abs(float(samples.mean()) - mean) < (0.3 if num == 1 else 0.06)
        stds.append(float(samples.std()))
    assert stds[1] < 0.5 * stds[0]  # more points, narrower posterior


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_padding_and_predictive_at_new_times(trained):
    posterior = trained.build_posterior()
    times, y = torch.tensor([[0.5, 1.0]]), torch.tensor([[1.0, 2.0]])
    plain = posterior.sample((2000,), x={"y": y}, metadata={"time": {"y": times}})
    padded = posterior.sample(
        (2000,),
        x={"y": torch.tensor([[1.0, 2.0, NAN, NAN]])},
        metadata={"time": {"y": torch.tensor([[0.5, 1.0, NAN, NAN]])}},
    )
    # The same distribution (padding is never attended to; exact per network
    # call in test_tokens.py), sampled with other noise draws.
    assert abs(float(plain.mean() - padded.mean())) < 0.02
    # A NaN value at a finite time is a point to predict: y(1.8) ~ a * 1.8.
    predictive = posterior.sample(
        (1000,),
        x={"y": torch.tensor([[1.0, 2.0, NAN]])},
        metadata={"time": {"y": torch.tensor([[0.5, 1.0, 1.8]])}},
    )
    assert set(predictive) == {"a", "y"}
    assert torch.equal(predictive["y"][:, :2], y.expand(1000, 2))
    mean, _ = linear_series_posterior(times, y)
    assert abs(float(predictive["y"][:, 2].mean()) - 1.8 * mean) < 0.4


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_log_prob_is_a_density_near_the_exact_posterior(trained):
    posterior = trained.build_posterior()
    times = torch.linspace(0.3, 1.9, 6)[None]
    y = 1.5 * times
    grid = torch.linspace(1.0, 2.0, 201)[:, None]
    log_prob = posterior.log_prob(grid, x={"y": y}, metadata={"time": {"y": times}})
    assert log_prob.shape == (201,) and torch.isfinite(log_prob).all()
    density = log_prob.exp()
    step = float(grid[1] - grid[0])
    assert abs(float(density.sum()) * step - 1.0) < 0.05
    mean, std = linear_series_posterior(times, y)
    grid_mean = float((density * grid[:, 0]).sum() / density.sum())
    assert abs(grid_mean - mean) < 0.06
    # Padding changes nothing: it is never attended to.
    padded = posterior.log_prob(
        grid[::20],
        x={"y": torch.cat([y, torch.full((1, 3), NAN)], 1)},
        metadata={"time": {"y": torch.cat([times, torch.full((1, 3), NAN)], 1)}},
    )
    assert torch.allclose(padded, log_prob[::20], atol=1e-4)
    with pytest.raises(ValueError, match=r"`theta` must have shape \(batch, 1\)"):
        posterior.log_prob(grid.T, x={"y": y}, metadata={"time": {"y": times}})


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_sample_batched_over_observations_of_different_lengths(trained):
    posterior = trained.build_posterior()
    times = torch.tensor([[0.4, 1.2, 1.9], [0.5, 1.5, NAN]])
    y = torch.tensor([[0.4, 1.2, 1.9], [-1.0, -3.0, NAN]])
    samples = posterior.sample_batched(
        (1000,), x={"y": y}, metadata={"time": {"y": times}}
    )
    assert samples.shape == (1000, 2, 1)
    for row in range(2):
        given = torch.isfinite(times[row])
        mean, _ = linear_series_posterior(times[row, given][None], y[row, given][None])
        assert abs(float(samples[:, row].mean()) - mean) < 0.1


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_samples_stay_in_the_prior_support(trained):
    # The posterior for y = 1.5 t sits at a = 1.5 with sd ~0.04: cut it at 1.5.
    box = BoxUniform(torch.tensor([-2.0]), torch.tensor([1.5]))
    posterior = trained.build_posterior(prior=box)
    times = torch.linspace(0.3, 1.9, 6)[None]
    samples = posterior.sample(
        (500,), x={"y": 1.5 * times}, metadata={"time": {"y": times}}
    )
    assert samples.shape == (500, 1) and float(samples.max()) <= 1.5
    unbounded = trained.build_posterior(prior=None).sample(
        (500,), x={"y": 1.5 * times}, metadata={"time": {"y": times}}
    )
    assert float(unbounded.max()) > 1.5
    kept = posterior.sample(
        (500,),
        x={"y": 1.5 * times},
        metadata={"time": {"y": times}},
        reject_outside_prior=False,
    )
    assert float(kept.max()) > 1.5


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_sampling_outside_the_prior_stops_instead_of_hanging(trained):
    """The posterior sits at a = 1.5; a prior on [-2, 0] has no mass there: the
    rejection stops with a clear error instead of drawing forever."""
    box = BoxUniform(torch.tensor([-2.0]), torch.tensor([0.0]))
    posterior = trained.build_posterior(prior=box)
    times = torch.linspace(0.3, 1.9, 6)[None]
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="reject_outside_prior"):
        posterior.sample((100,), x={"y": 1.5 * times}, metadata={"time": {"y": times}})
    assert time.perf_counter() - start < 60


def test_clear_errors():
    prior = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    a, y, times = simulate_linear_series(20)
    with pytest.raises(ValueError, match="variables=Variables"):
        Simformer(prior).append_simulations(a, y, metadata={"time": {"y": times}})
    with pytest.raises(ValueError, match="attention='dense'"):
        Simformer(
            prior, variables=SPEC, attention="undirected", graph=torch.zeros(2, 2)
        )
    inference = Simformer(prior, variables=SPEC)
    with pytest.raises(ValueError, match="pass a dict"):
        inference.append_simulations(a, y)
    timeless = times.clone()
    timeless[:, 0] = NAN
    with pytest.raises(ValueError, match="no `metadata`"):
        inference.append_simulations(
            {"a": a}, {"y": y.nan_to_num(1.0)}, metadata={"time": {"y": timeless}}
        )
    inference.append_simulations({"a": a}, {"y": y}, metadata={"time": {"y": times}})
    with pytest.raises(ValueError, match="same number of points"):
        inference.append_simulations(
            {"a": a}, {"y": y[:, :3]}, metadata={"time": {"y": times[:, :3]}}
        )


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_function_valued_parameter_queried_at_new_times():
    # beta(t) = c0 + c1 t with c ~ N(0, I), known at 2-10 random times per
    # simulation; x = c + 0.1 eps.
    # Exact: beta(t) | x ~ N(100/101 (x0 + x1 t), (1 + t^2) / 101).
    torch.manual_seed(0)
    num = 2000
    c = torch.randn(num, 2)
    times = torch.rand(num, 10)
    times[torch.arange(10) >= torch.randint(2, 11, (num, 1))] = NAN
    beta = c[:, :1] + c[:, 1:] * times
    x = c + 0.1 * torch.randn(num, 2)
    spec = Variables(theta={"beta": "series"}, x={"x": 2})
    inference = Simformer(
        variables=spec, show_progress_bars=False, net_kwargs={"num_layers": 2}
    )
    inference.append_simulations(
        {"beta": beta}, {"x": x}, metadata={"time": {"beta": times}}
    )
    inference.train(num_steps=600, training_batch_size=200)
    query = torch.linspace(0.0, 1.0, 11)[None]  # times not in training
    x_o = torch.tensor([[0.5, -1.0]])
    samples = inference.build_posterior().sample(
        (2000,), x={"x": x_o}, metadata={"time": {"beta": query}}
    )
    assert set(samples) == {"beta"} and samples["beta"].shape == (2000, 11)
    exact = 100 / 101 * (x_o[0, 0] + x_o[0, 1] * query[0])
    # Measured 0.05; trained on 3 points only and queried at 11, 0.24.
    assert (samples["beta"].mean(0) - exact).abs().max() < 0.15
    # The posterior's straight line: beta(1) - beta(0) = c1, with sd 0.1.
    slope = samples["beta"][:, -1] - samples["beta"][:, 0]
    assert abs(float(slope.mean()) - 100 / 101 * -1.0) < 0.15
    with pytest.raises(ValueError, match="`log_prob` needs fixed-size parameters"):
        inference.build_posterior().log_prob(
            torch.zeros(1, 11), x={"x": x_o}, metadata={"time": {"beta": query}}
        )
