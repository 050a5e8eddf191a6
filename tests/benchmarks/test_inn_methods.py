"""The INN's benchmark methods: registered and runnable in the runner."""

import pytest

from sbi_allinone.benchmarks import Cell, RunSettings, get_method, run_cell
from sbi_allinone.inn import INNDensityEstimator


@pytest.mark.parametrize(("name", "mode"), [("inn", "ml"), ("inn_mmd", "mmd")])
def test_inn_methods_run_in_the_runner(name, mode):
    settings = RunSettings(observations=(1,), num_samples=300, classifier="rf")
    (row,) = run_cell(Cell("two_moons", name, 200, 1), settings)
    assert 0.5 <= row["c2st"] <= 1.0 and row["epochs"] >= 1
    assert get_method(name).normalized_log_prob == (mode != "mmd")


def test_inn_methods_train_the_registered_mode():
    import torch

    theta = torch.rand(150, 2)
    prior = torch.distributions.Independent(
        torch.distributions.Uniform(torch.zeros(2), torch.ones(2)), 1
    )
    posterior = get_method("inn_hybrid").fit(theta, theta.flip(-1), prior).posterior
    estimator = posterior.posterior_estimator
    assert isinstance(estimator, INNDensityEstimator) and estimator.mode == "hybrid"
