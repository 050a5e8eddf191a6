"""sbibm-style `run(task, num_samples, num_simulations, ...)` functions."""

import pytest
import sbibm

from sbi_allinone.benchmarks import algorithms, get_task
from sbi_allinone.benchmarks.algorithms import sbibm_algorithm

from .helpers import FAST, register_test_methods


@pytest.mark.parametrize("task", [sbibm.get_task("two_moons"), get_task("two_moons")])
def test_sbibm_signature_on_sbibm_and_our_tasks(task):
    register_test_methods()
    run = sbibm_algorithm(FAST)
    samples, used, log_prob = run(
        task, num_samples=50, num_simulations=200, num_observation=1
    )
    assert samples.shape == (50, 2) and used == 200
    assert log_prob.shape == (1,)
    samples, _, log_prob = run(
        task,
        num_samples=20,
        num_simulations=200,
        observation=task.get_observation(2),
    )
    assert samples.shape == (20, 2) and log_prob is None


def test_one_function_per_registered_method():
    assert algorithms.npe.keywords == {"method": "npe"}
    assert algorithms.fmpe.keywords == {"method": "fmpe"}
    with pytest.raises(AttributeError):
        algorithms.not_a_method  # noqa: B018
    with pytest.raises(ValueError, match="Unknown method"):
        sbibm_algorithm("nope")
    with pytest.raises(ValueError, match="exactly one of"):
        algorithms.npe(get_task("two_moons"), 10, 10)
