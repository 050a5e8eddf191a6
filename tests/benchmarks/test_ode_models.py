"""Tests of the torch SIR and Lotka-Volterra simulators.

Besides accuracy against scipy and the API contract, they check that the simulators
are faithful to sbibm's (Julia-based) ones, so that sbibm's shipped observations and
reference posteriors remain valid: the observations must be typical draws at the
true parameters, the reference posteriors must predict the observations, and the
reference posteriors must equal the posteriors under our exact likelihoods (C2ST).
The first and the last check are also shown to fail for slightly wrong models.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from sbi.utils.metrics import c2st
from scipy.integrate import solve_ivp
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal

from sbi_allinone.benchmarks.ode_models import (
    lotka_volterra_log_likelihood,
    lotka_volterra_prior,
    lotka_volterra_solution,
    simulate_lotka_volterra,
    simulate_sir,
    sir_log_likelihood,
    sir_prior,
    sir_solution,
)

# sbibm ships the observations and reference posteriors these tests check against;
# it is part of the test set-up (README), so a missing sbibm fails here loudly.
SBIBM_TASKS = (
    Path(importlib.util.find_spec("sbibm").submodule_search_locations[0]) / "tasks"
)
OBSERVATIONS = range(1, 11)


class Model(NamedTuple):
    simulate: Callable[[Tensor], Tensor]
    log_likelihood: Callable[[Tensor, Tensor], Tensor]


class Task(NamedTuple):
    prior: Distribution
    solution: Callable[[Tensor], Tensor]
    model: Model
    dim_theta: int
    dim_x: int


TASKS = {
    "sir": Task(
        sir_prior(), sir_solution, Model(simulate_sir, sir_log_likelihood), 2, 10
    ),
    "lotka_volterra": Task(
        lotka_volterra_prior(),
        lotka_volterra_solution,
        Model(simulate_lotka_volterra, lotka_volterra_log_likelihood),
        4,
        20,
    ),
}


def time_stretched(model: Model, factor: float) -> Model:
    """The model with its data saved at `factor` times the true times.

    Both ODEs are autonomous and all their rates are parameters, so scaling the
    parameters by `factor` runs the same trajectory `factor` times faster.
    """
    return Model(
        lambda theta: model.simulate(theta * factor),
        lambda theta, x: model.log_likelihood(theta * factor, x),
    )


def lotka_volterra_with_noise(scale: float) -> Model:
    """Lotka-Volterra with a wrong log-normal noise scale (the true one is 0.1)."""

    def log_mean(theta: Tensor) -> Tensor:
        return lotka_volterra_solution(theta).clamp(1e-10, 1e4).log()

    def simulate(theta: Tensor) -> Tensor:
        loc = log_mean(theta)
        return torch.exp(loc + scale * torch.randn_like(loc)).float()

    def log_likelihood(theta: Tensor, x: Tensor) -> Tensor:
        log_x = x.double().log()
        normal = torch.distributions.Normal(log_mean(theta), scale)
        return (normal.log_prob(log_x) - log_x).sum(dim=1)

    return Model(simulate, log_likelihood)


@functools.cache
def load(task: str, num_observation: int) -> tuple[Tensor, Tensor, Tensor]:
    """sbibm's observation, true parameters and reference posterior samples."""
    from sbibm.utils.io import get_tensor_from_csv

    folder = SBIBM_TASKS / task / "files" / f"num_observation_{num_observation}"
    files = ("observation.csv", "true_parameters.csv")
    x_o, theta_o = (get_tensor_from_csv(folder / name) for name in files)
    reference = get_tensor_from_csv(folder / "reference_posterior_samples.csv.bz2")
    return x_o, theta_o, reference


def mid_rank(values: Tensor, value: Tensor) -> Tensor:
    """Fraction of `values` (..., n) below `value` (..., 1), ties counting half."""
    below = (values < value).double().mean(dim=-1)
    return below + 0.5 * (values == value).double().mean(dim=-1)


# --------------------------------------------------------------------- accuracy


def reference_solution(rhs, u0: list[float], times: np.ndarray) -> np.ndarray:
    """Tight-tolerance scipy solution, integrated in log coordinates.

    In the prior's tails states fall to ~1e-24, where even rtol=1e-10 in linear
    coordinates returns values of the wrong sign; the log transform is generic
    (d log u / dt = f(u) / u), so it shares nothing with the RK4 code.
    """
    sol = solve_ivp(
        lambda t, z: np.asarray(rhs(np.exp(z))) / np.exp(z),
        (0.0, times[-1]),
        np.log(u0),
        method="DOP853",
        rtol=1e-10,
        atol=1e-12,
        t_eval=times,
    )
    assert sol.success
    return np.exp(sol.y)


def sir_reference(theta: Tensor) -> np.ndarray:
    beta, gamma = theta.tolist()
    n = 1e6

    def rhs(u):
        infections = beta * u[0] * u[1] / n
        return [-infections, infections - gamma * u[1]]

    days = np.arange(0.0, 154.0, 17.0)
    return reference_solution(rhs, [n - 1.0, 1.0], days)[1]


def lotka_volterra_reference(theta: Tensor) -> np.ndarray:
    alpha, beta, gamma, delta = theta.tolist()

    def rhs(u):
        return [alpha * u[0] - beta * u[0] * u[1], -gamma * u[1] + delta * u[0] * u[1]]

    times = np.arange(10) * 2.1
    return reference_solution(rhs, [30.0, 1.0], times).reshape(-1)


def prior_quantiles(task: str, z_scores: list[tuple[float, ...]]) -> Tensor:
    """Parameters at the given per-dimension z-scores of the log-normal prior."""
    base = TASKS[task].prior.base_dist
    loc, scale = base.loc.double(), base.scale.double()
    return torch.exp(loc + scale * torch.tensor(z_scores, dtype=torch.float64))


@pytest.mark.parametrize(
    ("task", "reference"),
    [("sir", sir_reference), ("lotka_volterra", lotka_volterra_reference)],
)
def test_rk4_matches_scipy(task, reference):
    torch.manual_seed(0)
    dim = TASKS[task].dim_theta
    # The prior median, all +-2 sigma corners (measured errors <= 1.4e-6) and the two
    # hardest +-3 sigma corners (up to 6e-6 for SIR, 4e-5 for Lotka-Volterra).
    z_scores = [(0.0,) * dim, *itertools.product((-2.0, 2.0), repeat=dim)]
    z_scores += (
        [(3.0, 3.0), (3.0, -3.0)]
        if dim == 2
        else [(3.0, -3.0, 3.0, 3.0), (3.0, -3.0, 3.0, -3.0)]
    )
    theta = prior_quantiles(task, z_scores)
    ours = TASKS[task].solution(theta).numpy()
    expected = np.stack([reference(t) for t in theta])
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=0)


# --------------------------------------------------------------------- API


@pytest.mark.parametrize("task", TASKS)
def test_shapes_dtypes_and_reproducibility(task):
    t = TASKS[task]
    torch.manual_seed(0)
    theta = t.prior.sample((5,))
    x = t.model.simulate(theta)
    assert x.shape == (5, t.dim_x) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert t.solution(theta).shape == (5, t.dim_x)
    assert t.solution(theta).dtype == torch.float64

    torch.manual_seed(1)
    first = t.model.simulate(theta)
    torch.manual_seed(1)
    assert torch.equal(first, t.model.simulate(theta))
    assert not torch.equal(first, t.model.simulate(theta))

    log_lik = t.model.log_likelihood
    assert log_lik(theta, x).shape == (5,)
    assert log_lik(theta, x[:1]).shape == (5,)
    assert log_lik(theta[:1], x).shape == (5,)
    torch.testing.assert_close(log_lik(theta, x[:1])[2], log_lik(theta[2:3], x[:1])[0])


def test_log_likelihoods_match_torch_distributions():
    torch.manual_seed(0)
    theta = sir_prior().sample((4,))
    x = simulate_sir(theta)
    probs = sir_solution(theta) / 1e6
    binomial = torch.distributions.Binomial(1000, probs=probs)
    expected = binomial.log_prob(x.double()).sum(1)
    torch.testing.assert_close(sir_log_likelihood(theta, x), expected)

    theta = lotka_volterra_prior().sample((4,))
    x = simulate_lotka_volterra(theta)
    loc = lotka_volterra_solution(theta).log()
    expected = torch.distributions.LogNormal(loc, 0.1).log_prob(x.double()).sum(1)
    torch.testing.assert_close(lotka_volterra_log_likelihood(theta, x), expected)


@pytest.mark.parametrize("task", TASKS)
def test_nan_parameters_give_nan_rows(task):
    t = TASKS[task]
    torch.manual_seed(0)
    theta = t.prior.sample((3,))
    theta[1, 0] = math.nan
    x = t.model.simulate(theta)
    assert x[1].isnan().all()
    assert torch.isfinite(x[[0, 2]]).all()
    assert t.solution(theta)[1].isnan().all()
    log_lik = t.model.log_likelihood(theta, x[:1])
    assert log_lik[1] == -math.inf and torch.isfinite(log_lik[[0, 2]]).all()


@pytest.mark.parametrize("task", TASKS)
def test_bad_shapes_raise(task):
    t = TASKS[task]
    torch.manual_seed(0)
    theta = t.prior.sample((3,))
    expected = rf"`theta` must have shape \(batch, {t.dim_theta}\)"
    for bad in (theta[0], theta[:, :1], theta[None]):
        with pytest.raises(ValueError, match=expected):
            t.model.simulate(bad)
        with pytest.raises(ValueError, match=expected):
            t.solution(bad)
    x = t.model.simulate(theta)
    with pytest.raises(ValueError, match=rf"`x` must have shape \(batch, {t.dim_x}\)"):
        t.model.log_likelihood(theta, x[0])
    with pytest.raises(ValueError, match="batch sizes must match"):
        t.model.log_likelihood(theta, x[:2])


# --------------------------------------------------------------------- faithfulness

# Simulations per observation at the true parameters. SIR needs more: its
# observation 10 has rank ~7e-4 (2 infected on day 119 where 0.07 are expected).
NUM_SIMULATIONS = {"sir": 10_000, "lotka_volterra": 2000}
RANK_LIMIT = 1e-4


def observation_ranks(task: str, model: Model) -> Tensor:
    """Rank of log p(x_o | theta_o) among log p(x | theta_o), x ~ model(theta_o).

    Returns:
        One mid-rank per observation, `(10,)`; uniform if x_o came from `model`.
    """
    x_o, theta_o = (torch.cat([load(task, i)[j] for i in OBSERVATIONS]) for j in (0, 1))
    num = NUM_SIMULATIONS[task]
    x = model.simulate(theta_o.repeat_interleave(num, dim=0)).view(len(x_o), num, -1)
    # One theta per observation: a single ODE solve scores all its simulations.
    log_lik = torch.stack(
        [model.log_likelihood(t[None], xs) for t, xs in zip(theta_o, x, strict=True)]
    )
    return mid_rank(log_lik, model.log_likelihood(theta_o, x_o)[:, None])


def rank_failures(ranks: Tensor) -> list[str]:
    """Observations with extreme ranks, plus a uniformity check of their mean."""
    failures = [
        f"observation {i}: rank {r:.5f}"
        for i, r in zip(OBSERVATIONS, ranks.tolist(), strict=True)
        if not RANK_LIMIT < r < 1 - RANK_LIMIT
    ]
    # The mean of 10 uniform ranks has standard deviation 0.091; this catches a
    # too-wide noise model, under which every x_o looks too typical.
    if abs(ranks.mean() - 0.5) > 3.5 * math.sqrt(1 / 12 / len(ranks)):
        failures.append(f"mean rank {ranks.mean():.3f}")
    return failures


@pytest.mark.parametrize("task", TASKS)
def test_observations_are_typical_draws_at_true_parameters(task):
    # Measured ranks, observations 1-10:
    #   sir:            0.34 0.42 0.52 0.81 0.33 0.41 0.73 0.45 0.29 0.0008
    #   lotka_volterra: 0.99 0.38 0.10 0.77 0.27 0.60 0.08 0.004 0.30 0.90
    torch.manual_seed(0)
    ranks = observation_ranks(task, TASKS[task].model)
    assert rank_failures(ranks) == [], ranks


def test_typical_draw_check_fails_for_off_by_one_subsampling():
    # Every 22nd saved point instead of every 21st: all ranks are 0. (Measured, not
    # run: for SIR, every 18th day instead of every 17th fails 8 observations and
    # the mean; Lotka-Volterra noise scale 0.05 fails 9 and the mean, 0.2 fails 4
    # and the mean at 0.99.)
    torch.manual_seed(0)
    model = time_stretched(TASKS["lotka_volterra"].model, 22 / 21)
    failures = rank_failures(observation_ranks("lotka_volterra", model))
    assert len(failures) == 11, failures


@pytest.mark.parametrize("task", TASKS)
def test_reference_posterior_predicts_observations(task):
    # Posterior predictive p-value of each observation with log p(x | theta) as the
    # discrepancy, from 2000 (SIR) or 1000 reference samples. Measured, obs. 1-10:
    #   sir:            0.77 0.72 0.65 0.76 0.40 0.31 0.65 0.43 0.24 0.005
    #   lotka_volterra: 0.85 0.46 0.21 0.83 0.31 0.65 0.07 0.04 0.26 0.90
    # Per-coordinate predictive quantiles of x_o all lie in [0.005, 0.97], except
    # SIR observation 10 on day 119 (0.999), the outlier seen above.
    torch.manual_seed(0)
    model, num = TASKS[task].model, {"sir": 2000, "lotka_volterra": 1000}[task]
    data = [load(task, i) for i in OBSERVATIONS]
    theta = torch.cat([ref[torch.randperm(len(ref))[:num]] for _, _, ref in data])
    x_o = torch.cat([x for x, _, _ in data]).repeat_interleave(num, dim=0)
    x = model.simulate(theta)
    log_lik_sim = model.log_likelihood(theta, x).view(-1, num)
    log_lik_obs = model.log_likelihood(theta, x_o).view(-1, num)
    p_values = (log_lik_sim < log_lik_obs).double().mean(dim=1)
    p_values += 0.5 * (log_lik_sim == log_lik_obs).double().mean(dim=1)
    assert ((p_values > 1e-3) & (p_values < 1 - 1e-3)).all(), p_values


def importance_posterior(
    task: str, model: Model, num_observation: int, num_proposals: int = 10_000
) -> tuple[Tensor, float]:
    """Exact posterior samples under `model`, by importance and rejection sampling.

    The proposal is a Gaussian in log-parameter space fitted to sbibm's reference
    samples with twice their covariance (four times gave ~4x fewer accepted
    samples for Lotka-Volterra).

    Returns:
        Independent posterior samples `(num_accepted, dim_theta)` and the effective
        sample size of the importance weights.
    """
    x_o, _, reference = load(task, num_observation)
    z = reference.double().log()
    proposal = MultivariateNormal(z.mean(0), 2.0 * torch.cov(z.T))
    z = proposal.sample((num_proposals,))
    theta = z.exp()
    log_prior = TASKS[task].prior.log_prob(theta.float()).double()
    log_proposal = proposal.log_prob(z) - z.sum(dim=1)  # density of theta, not z
    log_w = log_prior + model.log_likelihood(theta, x_o) - log_proposal
    w = torch.softmax(log_w, dim=0)
    # Rejection instead of multinomial resampling: the classifier would recognise
    # duplicated samples.
    accepted = torch.rand(num_proposals, dtype=w.dtype) < w / w.max()
    return theta[accepted].float(), 1.0 / (w**2).sum().item()


def posterior_c2st(task: str, model: Model, num_observation: int) -> float:
    """C2ST between the posterior under `model` and sbibm's reference posterior."""
    samples, ess = importance_posterior(task, model, num_observation)
    assert ess > 2000 and len(samples) >= 2000, (ess, len(samples))
    _, _, reference = load(task, num_observation)
    reference = reference[torch.randperm(len(reference))[:2000]]
    return c2st(samples[:2000], reference, classifier="mlp").item()


# Measured C2ST for observations 1-10 (two disjoint sets of 2000 reference samples
# score 0.48-0.52):
#   sir:            0.51 0.50 0.50 0.51 0.49 0.51 0.49 0.51 0.49 0.53
#   lotka_volterra: 0.49 0.50 0.49 0.50 0.50 0.51 0.53 0.50 0.50 0.47
# Importance sampling: ESS 6700-7600 (SIR) and 5500-5800 (Lotka-Volterra) of
# 10 000 proposals, 3900-5100 and 2400-2600 accepted samples.
C2ST_LIMIT = 0.56
C2ST_CASES = [pytest.param(task, i) for task in TASKS for i in OBSERVATIONS]


@pytest.mark.parametrize(("task", "num_observation"), C2ST_CASES)
def test_reference_posterior_is_posterior_of_our_likelihood(task, num_observation):
    torch.manual_seed(num_observation)
    assert posterior_c2st(task, TASKS[task].model, num_observation) < C2ST_LIMIT


@pytest.mark.parametrize(
    ("task", "model"),
    [
        # Data saved at 1.01 times the true days: C2ST 0.65, 0.69, 0.71 (obs 1-3).
        ("sir", time_stretched(TASKS["sir"].model, 1.01)),
        # Noise scale 0.125 instead of 0.1: C2ST 0.61, 0.59, 0.58 (obs 1-3).
        ("lotka_volterra", lotka_volterra_with_noise(0.125)),
    ],
)
def test_posterior_check_fails_for_slightly_wrong_model(task, model):
    torch.manual_seed(1)
    assert posterior_c2st(task, model, 1) > C2ST_LIMIT
