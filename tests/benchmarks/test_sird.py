"""Tests of the SIRD task with a time-varying contact rate (``benchmarks.sird``):
the data conventions, the prior, the ODE against scipy, and a Simformer trained
briefly on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sbi_allinone.benchmarks.sird import (
    GRID,
    OBSERVED,
    SIRD_VARIABLES,
    gp_kernel,
    interpolate,
    observation_inputs,
    random_times,
    sample_sird_prior,
    simformer_inputs,
    simulate_sird,
    sird_states,
    train_sird_simformer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def simulate(num: int, seed: int, **kwargs) -> object:
    return simulate_sird(num, torch.Generator().manual_seed(seed), **kwargs)


def test_shapes_padding_and_times():
    sims = simulate(200, 0, points=(1, 15), beta_points=(5, 15))
    assert sims.parameters.shape == (200, 3) and sims.logit_beta.shape == (200, 101)
    for times, low in [(sims.times[n], 1) for n in OBSERVED] + [(sims.beta_times, 5)]:
        assert times.shape == (200, 15) and times.dtype == torch.float32
        finite = torch.isfinite(times)
        counts = finite.sum(1)
        assert counts.min() >= low and counts.max() == 15
        # Padding at the end of each row, finite times ascending in (0, 50].
        assert torch.equal(finite, torch.arange(15) < counts[:, None])
        assert ((times[finite] > 0) & (times[finite] <= 50)).all()
        assert (times.nan_to_num(99.0).diff(dim=1) >= 0).all()
    for name in OBSERVED:
        values = sims.values[name]
        assert values.shape == (200, 15) and values.dtype == torch.float32
        assert torch.equal(torch.isnan(values), torch.isnan(sims.times[name]))
        assert (values[torch.isfinite(values)] > 0).all()
    beta = torch.sigmoid(sims.logit_beta[:, :3])
    assert torch.allclose(sims.beta(GRID[None, :3]), beta)  # (1, K): shared times
    assert torch.allclose(sims.beta(GRID[:3]), beta)


def test_prior_ranges():
    parameters, logit_beta = sample_sird_prior(20_000, torch.Generator().manual_seed(1))
    upper = torch.tensor([0.5, 0.5, 0.2], dtype=torch.float64)
    assert ((parameters > 0) & (parameters < upper)).all()
    assert torch.allclose(parameters.mean(0), upper / 2, rtol=0.02)
    assert abs(float(logit_beta.mean())) < 0.1


def test_gp_prior_covariance_matches_the_kernel():
    _, f = sample_sird_prior(20_000, torch.Generator().manual_seed(2))
    every = slice(None, None, 10)  # t = 0, 5, ..., 50
    empirical = torch.cov(f[:, every].T)
    kernel = gp_kernel(GRID[every], GRID[every])
    # Entries up to 6.25; their standard error is about 6.25 * (2 / 20 000)^0.5.
    assert (empirical - kernel).abs().max() < 0.25
    assert abs(float(kernel[0, 1]) - 6.25 * np.exp(-25 / 98)) < 1e-12


def test_ode_conserves_the_total_and_matches_scipy():
    parameters, logit_beta = sample_sird_prior(50, torch.Generator().manual_seed(3))
    times = torch.linspace(0.0, 50.0, 333, dtype=torch.float64)
    states = sird_states(parameters, logit_beta, times)
    assert states.shape == (50, 4, 333) and (states >= 0).all()
    total = 1 + parameters[:, 2:3]  # S0 = 1 (the paper's), I0 on top
    assert (states.sum(1) - total).abs().max() < 1e-12
    assert torch.equal(states[:, :, 0], torch.stack(
        [torch.ones(50), parameters[:, 2], torch.zeros(50), torch.zeros(50)], 1
    ).double())  # fmt: skip
    for row in range(3):
        gamma, delta, i0 = parameters[row].tolist()
        f = logit_beta[row].numpy()

        def rhs(t, y, f=f, gamma=gamma, delta=delta):
            beta = 1 / (1 + np.exp(-np.interp(t, GRID.numpy(), f)))
            s, i = y[0], y[1]
            return [
                -beta * s * i,
                beta * s * i - (gamma + delta) * i,
                gamma * i,
                delta * i,
            ]

        reference = solve_ivp(
            rhs, (0, 50), [1, i0, 0, 0], t_eval=times.numpy(), method="DOP853",
            rtol=1e-11, atol=1e-14, max_step=0.05,
        ).y  # fmt: skip
        error = np.abs(states[row].numpy() - reference)
        assert error.max() < 1e-6  # measured 1e-8
        # Relative error of I, R, D: the data are their logs.
        assert (error / reference.clip(1e-300))[1:, 1:].max() < 1e-4


def test_noise_is_log_normal_and_simulations_reproducible():
    noisy, exact = simulate(500, 4), simulate(500, 4, noise=False)
    again = simulate(500, 4)
    for name in OBSERVED:
        assert torch.equal(
            noisy.values[name].nan_to_num(), again.values[name].nan_to_num()
        )
        assert torch.equal(
            noisy.times[name].nan_to_num(), exact.times[name].nan_to_num()
        )
        log_ratio = (noisy.values[name] / exact.values[name]).log()
        log_ratio = log_ratio[torch.isfinite(log_ratio)]
        assert abs(float(log_ratio.std()) - 0.05) < 0.003
        assert abs(float(log_ratio.mean())) < 0.003
    other = simulate(500, 5)
    assert not torch.equal(other.parameters, noisy.parameters)


def test_interpolation_and_simformer_inputs():
    grid = torch.tensor([0.0, 1.0, 3.0])
    values = torch.tensor([[0.0, 2.0, 6.0]])
    out = interpolate(grid, values, torch.tensor([-1.0, 0.5, 2.0, torch.nan, 9.0]))
    assert torch.allclose(out[:, [0, 1, 2, 4]], torch.tensor([[0.0, 1.0, 4.0, 6.0]]))
    assert torch.isnan(out[0, 3])
    sims = simulate(30, 6, points=(1, 4), beta_points=(2, 3))
    theta, x, metadata = simformer_inputs(sims)
    assert set(theta) == set(SIRD_VARIABLES.theta) and set(x) == set(OBSERVED)
    assert theta["gamma"].shape == (30, 1) and theta["beta"].shape == (30, 3)
    assert torch.equal(theta["beta"].isnan(), sims.beta_times.isnan())
    assert torch.allclose(
        torch.sigmoid(theta["beta"]).nan_to_num(), sims.beta(sims.beta_times).float()
        .nan_to_num(),
    )  # fmt: skip
    assert torch.allclose(x["I"].exp().nan_to_num(), sims.values["I"].nan_to_num())
    assert metadata["time"]["beta"] is not None and set(metadata["time"]) == {
        "beta", *OBSERVED
    }  # fmt: skip
    x_o, meta_o = observation_inputs(sims.rows(0), torch.linspace(0, 50, 7))
    assert x_o["R"].shape == (1, 4) and meta_o["time"]["beta"].shape == (1, 7)
    assert random_times(5, 2, 2).isfinite().all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_short_trained_simformer_tracks_the_parameters():
    # 600 steps of a 2-layer Simformer (about 35 s on one core): its posteriors are
    # still much too wide, but their centres follow the truth. log(delta / gamma) =
    # log D(t) - log R(t) at any t, so one R and one D point identify it.
    # Correlations of posterior and true values over the 30 observations, measured
    # with torch seeds 0-3: log(delta / gamma) 0.71-0.90, delta 0.69-0.80, gamma
    # 0.32-0.67; for a network that ignores the data they scatter around 0 with a
    # standard deviation of about 0.18.
    torch.manual_seed(0)
    config = {"points": (1, 4), "beta_points": (2, 4)}
    sims = simulate(1500, 7, **config)
    inference = train_sird_simformer(
        sims, 600, net_kwargs={"num_layers": 2}, training_batch_size=200
    )
    posterior = inference.build_posterior()
    test = simulate(30, 8, **config)
    estimates, truths = [], []
    for i in range(30):
        obs = test.rows(i)
        x, metadata = observation_inputs(obs, torch.tensor([25.0]))
        samples = posterior.sample((100,), x=x, metadata=metadata)
        gamma, delta = (
            samples["gamma"].clamp(min=1e-4),
            samples["delta"].clamp(min=1e-4),
        )
        estimates.append(
            [
                float(gamma.mean()),
                float(delta.mean()),
                float((delta / gamma).log().median()),
            ]
        )
        true_gamma, true_delta = obs.parameters[0, :2].tolist()
        truths.append([true_gamma, true_delta, np.log(true_delta / true_gamma)])
    correlations = np.corrcoef(np.array(estimates).T, np.array(truths).T).diagonal(3)
    assert correlations[2] > 0.55, correlations
    assert correlations[:2].mean() > 0.35, correlations
