"""The task layer: all ten sbibm tasks load and behave on current sbi and torch."""

import pytest
import torch
from sbi.utils.user_input_checks import process_prior

from sbi_allinone.benchmarks import TASK_NAMES, get_task

DIMS = {  # (dim_parameters, dim_data) as in the sbibm paper
    "gaussian_linear": (10, 10),
    "gaussian_linear_uniform": (10, 10),
    "slcp": (5, 8),
    "slcp_distractors": (5, 100),
    "bernoulli_glm": (10, 10),
    "bernoulli_glm_raw": (10, 100),
    "gaussian_mixture": (2, 2),
    "two_moons": (2, 2),
    "sir": (2, 10),
    "lotka_volterra": (4, 20),
}


def test_all_ten_tasks_are_listed():
    assert set(TASK_NAMES) == set(DIMS)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_shapes_support_and_reference_files(name):
    task = get_task(name)
    dim_theta, dim_x = DIMS[name]
    assert (task.dim_parameters, task.dim_data) == (dim_theta, dim_x)

    theta = task.prior.sample((7,))
    assert theta.shape == (7, dim_theta)
    x = task.simulate(theta)
    assert x.shape == (7, dim_x) and x.dtype == torch.float32
    assert torch.isfinite(x).all()

    # sbi accepts the prior as it is.
    prior, _, _ = process_prior(task.prior)
    assert prior.sample((3,)).shape == (3, dim_theta)

    for num_observation in (1, 10):
        observation = task.get_observation(num_observation)
        assert observation.shape == (1, dim_x)
        true_theta = task.get_true_parameters(num_observation)
        assert true_theta.shape == (1, dim_theta)
        assert torch.isfinite(task.prior.log_prob(true_theta)).all()
        reference = task.get_reference_posterior_samples(num_observation)
        assert reference.shape == (10_000, dim_theta)
        assert torch.isfinite(task.prior.log_prob(reference)).all()


@pytest.mark.parametrize("name", ["two_moons", "sir"])
def test_sbibm_accessors(name):
    task = get_task(name)
    theta = task.get_prior()(num_samples=4)
    assert task.get_simulator()(theta).shape == (4, task.dim_data)
    assert task.get_prior_dist() is task.prior


def test_simulator_is_reproducible():
    task = get_task("slcp_distractors")
    theta = task.prior.sample((5,))
    torch.manual_seed(3)
    first = task.simulate(theta)
    torch.manual_seed(3)
    assert torch.equal(first, task.simulate(theta))


def test_slcp_distractors_embeds_slcp_observations():
    # sbibm generated the distractor observations from the same draws as slcp's:
    # undoing the permutation must give back slcp's observation in the first 8 slots.
    distractors, slcp = get_task("slcp_distractors"), get_task("slcp")
    permutation = torch.load(
        slcp.files_dir / "permutation_idx.torch", weights_only=False
    )
    slots = torch.argsort(permutation)[:8]
    for num_observation in range(1, 11):
        observation = distractors.get_observation(num_observation)
        assert torch.allclose(
            observation[:, slots], slcp.get_observation(num_observation), atol=1e-5
        )


def test_bad_input_errors():
    with pytest.raises(ValueError, match="Unknown task 'moons'.*two_moons"):
        get_task("moons")
    task = get_task("two_moons")
    with pytest.raises(ValueError, match=r"`theta` must have shape \(batch, 2\)"):
        task.simulate(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="`num_observation` must be in 1..10"):
        task.get_observation(11)
