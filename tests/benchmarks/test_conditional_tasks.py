"""Tests of the all-conditional benchmark tasks (``benchmarks.conditional_tasks``)
and their MCMC references (``benchmarks.conditional_references``): densities against
the model definitions, graphs, evaluation masks, and references against conditionals
known in closed form or by quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from sbi_allinone.benchmarks import conditional_references as refs
from sbi_allinone.benchmarks.conditional_references import (
    ConvergenceError,
    ConvergenceWarning,
    conditional_reference,
    convergence_diagnostics,
    mcmc_conditional_samples,
    mcmc_entries,
    observation_from_seed,
)
from sbi_allinone.benchmarks.conditional_tasks import (
    CONDITIONAL_TASKS,
    MASK_KINDS,
    conditional_task,
    evaluation_masks,
    two_moons_log_likelihood,
)
from sbi_allinone.simformer.masks import check_dag

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = {"tree": (3, 4), "markov_chain": (10, 10), "two_moons": (2, 2), "slcp": (5, 8)}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mask_of(bits: str) -> torch.Tensor:
    return torch.tensor([b == "1" for b in bits])


@pytest.mark.parametrize("name", list(CONDITIONAL_TASKS))
def test_shapes_and_finite_density_on_joint_samples(name):
    task = conditional_task(name)
    assert (task.num_parameters, task.num_data) == SIZES[name]
    v = task.sample_joint(500, generator())
    assert v.shape == (500, sum(SIZES[name]))
    log_joint = task.log_joint(v)
    assert log_joint.shape == (500,) and log_joint.isfinite().all()
    assert task.log_factors(v).shape == (500, len(task.blocks))
    with pytest.raises(ValueError, match="shape"):
        task.log_joint(v[:, 1:])


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown conditional task 'sir'.*tree"):
        conditional_task("sir")


def normal(mean, std, value):
    return Normal(mean, std).log_prob(value)


def test_tree_log_joint_matches_the_model_definition():
    v = conditional_task("tree").sample_joint(200, generator()).double()
    t1, t2, t3, x1, x2, x3, x4 = v.T
    expected = (
        normal(0.0, 1.0, t1)
        + normal(t1, 1.0, t2)
        + normal(t1, 1.0, t3)
        + normal(torch.sin(t2) ** 2, 0.2, x1)
        + normal(0.1 * t2**2, 0.2, x2)
        + normal(0.1 * t3**2, 0.6, x3)
        + normal(torch.cos(t3) ** 2, 0.1, x4)
    )
    torch.testing.assert_close(conditional_task("tree").log_joint(v), expected)


def test_markov_chain_log_joint_matches_the_model_definition():
    task = conditional_task("markov_chain")
    v = task.sample_joint(200, generator()).double()
    theta, x = v[:, :10], v[:, 10:]
    expected = normal(0.0, 0.5, theta[:, 0])
    for i in range(1, 10):
        expected = expected + normal(theta[:, i - 1], 0.5, theta[:, i])
    for i in range(10):
        expected = expected + normal(theta[:, i] ** 2, 0.5, x[:, i])
    torch.testing.assert_close(task.log_joint(v), expected)
    # The simulator: increments and data noise have standard deviation 0.5.
    v = task.sample_joint(20_000, generator(1))
    steps = torch.diff(v[:, :10], dim=1, prepend=torch.zeros(len(v), 1))
    assert steps.std(dim=0).sub(0.5).abs().max() < 0.02
    assert (v[:, 10:] - v[:, :10] ** 2).std(dim=0).sub(0.5).abs().max() < 0.02


def slcp_covariance(theta: torch.Tensor) -> torch.Tensor:
    s1, s2, rho = theta[2] ** 2, theta[3] ** 2, math.tanh(theta[4])
    return torch.tensor(
        [[s1**2 + 1e-6, rho * s1 * s2], [rho * s1 * s2, s2**2 + 1e-6]],
        dtype=torch.float64,
    )


def test_slcp_log_joint_and_simulator_match_the_model_definition():
    task = conditional_task("slcp")
    theta = torch.tensor([0.3, -0.5, 1.2, -0.8, 0.7], dtype=torch.float64)
    v = task.sample_joint(20_000, generator()).double()
    v[:, :5] = theta
    v = task.resimulate(v, torch.arange(13) >= 5, generator(1))
    assert (v[:, :5] == theta).all()
    points = v[:, 5:].reshape(-1, 4, 2)
    covariance = slcp_covariance(theta)
    torch.testing.assert_close(
        torch.cov(points.reshape(-1, 2).T), covariance, rtol=0.05, atol=0.01
    )
    expected = MultivariateNormal(theta[:2], covariance).log_prob(points).sum(1)
    expected -= 5 * math.log(6.0)  # U(-3, 3)^5 prior
    torch.testing.assert_close(task.log_joint(v[:100]), expected[:100])
    outside = v[:3].clone()
    outside[:, 2] = 3.5
    assert (task.log_joint(outside) == -math.inf).all()


def test_two_moons_likelihood_integrates_to_one_and_matches_simulations():
    task = conditional_task("two_moons")
    theta = torch.tensor([[0.3, -0.5]], dtype=torch.float64)
    v = task.sample_joint(100_000, generator()).double()
    v[:, :2] = theta
    x = task.resimulate(v, torch.tensor([False, False, True, True]), generator(1))
    x = x[:, 2:]
    centre = x.mean(dim=0)
    step = 5e-4
    grid = torch.arange(-0.2, 0.2, step, dtype=torch.float64)
    x1, x2 = torch.meshgrid(centre[0] + grid, centre[1] + grid, indexing="ij")
    points = torch.stack([x1.flatten(), x2.flatten()], dim=1)
    density = two_moons_log_likelihood(theta.expand(len(points), 2), points).exp()
    mass = density.sum() * step**2
    assert abs(mass - 1) < 5e-3
    # Moments of the density on the grid against the simulations.
    grid_mean = (points * density[:, None]).sum(0) * step**2
    grid_sd = ((points - grid_mean) ** 2 * density[:, None]).sum(0).sqrt() * step
    torch.testing.assert_close(grid_mean, x.mean(0), atol=5e-4, rtol=0)
    torch.testing.assert_close(grid_sd, x.std(0), atol=5e-4, rtol=0)
    outside = torch.tensor([[1.2, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert task.log_joint(outside) == -math.inf


@pytest.mark.parametrize("name", list(CONDITIONAL_TASKS))
def test_graphs_are_dags_whose_missing_edges_the_factors_respect(name):
    task = conditional_task(name)
    graph = check_dag(task.graph(), task.dim)
    assert not graph[: task.num_parameters, task.num_parameters :].any()
    v = task.sample_joint(50, generator()).double()
    factors = task.log_factors(v)
    for index, block in enumerate(task.blocks):
        block = list(block)
        parents = graph[block].any(dim=0)
        parents[block] = True
        for j in torch.nonzero(~parents).flatten().tolist():
            moved = v.clone()
            moved[:, j] += 0.01  # stays inside the priors' supports
            unchanged = task.log_factors(moved)[:, index]
            assert torch.equal(unchanged, factors[:, index]), (name, index, j)


def test_tree_and_markov_chain_graphs_are_the_papers():
    tree = conditional_task("tree").graph()
    edges = {(int(c), int(p)) for c, p in torch.nonzero(tree)}
    assert edges == {(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2)}
    chain = conditional_task("markov_chain").graph()
    edges = {(int(c), int(p)) for c, p in torch.nonzero(chain)}
    expected = {(i, i - 1) for i in range(1, 10)} | {(10 + i, i) for i in range(10)}
    assert edges == expected


@pytest.mark.parametrize("name", list(CONDITIONAL_TASKS))
def test_evaluation_masks_have_the_right_pattern(name):
    task = conditional_task(name)
    p = task.num_parameters
    posterior = evaluation_masks(task, 4, "posterior")
    assert posterior.shape == (4, task.dim)
    assert not posterior[:, :p].any() and posterior[:, p:].all()
    likelihood = evaluation_masks(task, 4, "likelihood")
    assert likelihood[:, :p].all() and not likelihood[:, p:].any()
    random = evaluation_masks(task, 200, "random", generator())
    assert random.any(dim=1).all() and not random.all(dim=1).any()
    assert len(set(map(tuple, random.tolist()))) > 1
    mixed = evaluation_masks(task, 200, "mixed", generator())
    for block in (mixed[:, :p], mixed[:, p:]):
        assert block.any(dim=1).all() and not block.all(dim=1).any()
    with pytest.raises(ValueError, match="Unknown mask kind"):
        evaluation_masks(task, 1, "joint")
    assert set(MASK_KINDS) == {"posterior", "likelihood", "mixed", "random"}


def test_mcmc_entries_are_the_conditioned_blocks_and_their_ancestors():
    tree = conditional_task("tree")
    assert mcmc_entries(tree, mask_of("0001000")).tolist() == [
        True, True, False, True, False, False, False,
    ]  # fmt: skip
    assert not mcmc_entries(tree, mask_of("0000000")).any()
    moons = conditional_task("two_moons")  # x_1 and x_2 share one block
    assert mcmc_entries(moons, mask_of("0001")).all()


def test_diagnostics_flag_chains_that_disagree():
    chains = torch.randn(4, 200, 2, generator=generator())
    good = convergence_diagnostics(chains)
    assert good.converged and good.max_rhat < 1.03 and good.min_bulk_ess > 400
    chains[0] += 3.0
    bad = convergence_diagnostics(chains)
    assert not bad.converged and bad.max_rhat > 1.2


def check_normal(samples, mean, sd, ess):
    # Mean within 4.5 Monte Carlo standard errors, sd within 10 %.
    assert abs(samples.mean() - mean) < 4.5 * sd / math.sqrt(ess)
    assert abs(samples.std() / sd - 1) < 0.1


def test_reference_matches_exact_conditionals_of_the_tree():
    # theta_2, theta_3 conditioned: theta_1 ~ N((theta_2 + theta_3) / 3, 1/3) by
    # MCMC; the data are barren and simulated, x_1 ~ N(sin² theta_2, 0.2²).
    task = conditional_task("tree")
    observation = observation_from_seed(task, 3)
    mask = mask_of("0110000")
    samples, chains = mcmc_conditional_samples(task, mask, observation, 2000)
    diagnostics = convergence_diagnostics(chains)
    assert diagnostics.converged
    assert (samples[:, 1:3] == observation[1:3]).all()
    t2, t3 = observation[1:3].tolist()
    check_normal(samples[:, 0], (t2 + t3) / 3, 3**-0.5, diagnostics.min_bulk_ess)
    check_normal(samples[:, 3], math.sin(t2) ** 2, 0.2, 2000)


def test_reference_matches_a_gaussian_conditional_of_the_markov_chain():
    task = conditional_task("markov_chain")
    observation = observation_from_seed(task, 1)
    mask = torch.zeros(20, dtype=torch.bool)
    mask[[0, 2]] = True
    samples, chains = mcmc_conditional_samples(task, mask, observation, 2000, seed=1)
    diagnostics = convergence_diagnostics(chains)
    assert chains.shape[-1] == 1 and diagnostics.converged
    mean = (observation[0] + observation[2]).item() / 2
    check_normal(samples[:, 1], mean, 0.5 / math.sqrt(2), diagnostics.min_bulk_ess)


def test_reference_matches_quadrature_on_a_nonlinear_tree_conditional():
    # x_1, x_2 conditioned: p(theta_2 | x_1, x_2) ∝ N(theta_2; 0, 2) N(x_1;
    # sin² theta_2, .2²) N(x_2; .1 theta_2², .2²) on a grid; theta_1 | theta_2 ~
    # N(theta_2 / 2, 1/2), so E[theta_1 | x] = E[theta_2 | x] / 2.
    task = conditional_task("tree")
    observation = observation_from_seed(task, 5)
    samples, chains = mcmc_conditional_samples(
        task, mask_of("0001100"), observation, 2000, seed=2
    )
    diagnostics = convergence_diagnostics(chains)
    assert diagnostics.converged, diagnostics
    grid = torch.linspace(-8, 8, 20_001, dtype=torch.float64)
    x1, x2 = observation[3].item(), observation[4].item()
    log_density = normal(0.0, math.sqrt(2), grid)
    log_density += normal(torch.sin(grid) ** 2, 0.2, torch.tensor(x1).double())
    log_density += normal(0.1 * grid**2, 0.2, torch.tensor(x2).double())
    weights = torch.softmax(log_density, dim=0)
    mean = (weights * grid).sum().item()
    sd = (weights * (grid - mean) ** 2).sum().sqrt().item()
    check_normal(samples[:, 1].double(), mean, sd, diagnostics.min_bulk_ess)
    error = 4.5 * math.sqrt(sd**2 / 4 + 0.5) / math.sqrt(diagnostics.min_bulk_ess)
    assert abs(samples[:, 0].mean() - mean / 2) < error


def test_reference_covers_both_modes_of_the_two_moons_posterior():
    # The likelihood depends on theta only through |theta_1 + theta_2| and
    # theta_2 - theta_1, so the posterior puts mass 1/2 on each side of
    # theta_1 + theta_2 = 0; both moons must be sampled, in equal proportion.
    task = conditional_task("two_moons")
    observation = observation_from_seed(task, 0)
    samples, chains = mcmc_conditional_samples(
        task, mask_of("0011"), observation, 4000, seed=3
    )
    diagnostics = convergence_diagnostics(chains)
    assert diagnostics.converged, diagnostics
    upper = (samples[:, 0] + samples[:, 1] > 0).double().mean()
    assert abs(upper - 0.5) < 4.5 * 0.5 / math.sqrt(diagnostics.min_bulk_ess)
    likelihood = two_moons_log_likelihood(samples[:, :2], samples[:, 2:])
    assert likelihood.isfinite().all()


def test_references_are_cached_and_checked(tmp_path, monkeypatch):
    mask = mask_of("0110000")
    observation, samples, diagnostics = conditional_reference(
        "tree", mask, 3, num_samples=500, cache_dir=tmp_path
    )
    assert diagnostics is not None and diagnostics.converged
    assert len(list(tmp_path.glob("tree_mask0110000_obs3_n500.pt"))) == 1
    torch.testing.assert_close(
        observation, observation_from_seed(CONDITIONAL_TASKS["tree"], 3)
    )

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(refs, "mcmc_conditional_samples", must_not_run)
    again = conditional_reference("tree", mask, 3, num_samples=500, cache_dir=tmp_path)
    assert torch.equal(again[1], samples) and again[2] == diagnostics
    monkeypatch.undo()
    with pytest.raises(ConvergenceError, match="did not converge"):
        conditional_reference(
            "tree", mask, 4, 200, cache_dir=None, on_failure="raise", min_ess=1e9
        )
    with pytest.warns(ConvergenceWarning, match="R-hat"):
        conditional_reference("tree", mask, 4, 200, cache_dir=None, min_ess=1e9)


def test_joint_and_likelihood_references_are_exact_simulation():
    task = conditional_task("tree")
    _, samples, diagnostics = conditional_reference(
        task, mask_of("0000000"), 0, num_samples=20_000, cache_dir=None
    )
    assert diagnostics is None
    assert abs(samples[:, 1].std() - math.sqrt(2)) < 0.05  # theta_2 ~ N(0, 2)
    observation, samples, diagnostics = conditional_reference(
        task, mask_of("1110000"), 0, num_samples=200, cache_dir=None
    )
    assert diagnostics is None and (samples[:, :3] == observation[:3]).all()
