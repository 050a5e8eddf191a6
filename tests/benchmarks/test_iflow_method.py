"""The inflationary flow's benchmark method runs in the runner."""

import pytest

from sbi_allinone.benchmarks import Cell, RunSettings, get_method, run_cell
from sbi_allinone.inflationary import InflationaryFlowEstimator, trainer


@pytest.fixture(autouse=True)
def short_training(monkeypatch):
    """These tests check plumbing, not accuracy: at 100-150 simulations (one step an
    epoch) the default 3 000 steps take a minute."""
    monkeypatch.setattr(trainer, "DEFAULT_NUM_STEPS", 100)


def test_iflow_runs_in_the_runner():
    settings = RunSettings(observations=(1,), num_samples=300, classifier="rf")
    (row,) = run_cell(Cell("two_moons", "iflow", 150, 1), settings)
    assert 0.5 <= row["c2st"] <= 1.0 and row["epochs"] >= 1
    assert get_method("iflow").normalized_log_prob


def test_iflow_trains_the_preserving_schedule():
    import torch

    theta = torch.rand(100, 2)
    prior = torch.distributions.Independent(
        torch.distributions.Uniform(torch.zeros(2), torch.ones(2)), 1
    )
    posterior = get_method("iflow").fit(theta, theta.flip(-1), prior).posterior
    estimator = posterior.posterior_estimator
    assert isinstance(estimator, InflationaryFlowEstimator)
    assert (estimator.schedule.g == 0).all()


def test_iflow_prr_reduces_parameters_near_a_line():
    import torch

    s = torch.rand(100, 1)
    theta = torch.cat([s, 1 - s, 0.5 * s], dim=1) + 0.01 * torch.rand(100, 3)
    prior = torch.distributions.Independent(
        torch.distributions.Uniform(-torch.ones(3), 2 * torch.ones(3)), 1
    )
    posterior = get_method("iflow_prr").fit(theta, theta[:, :2], prior).posterior
    g = posterior.posterior_estimator.schedule.g
    assert g[0] == 1.0 and (g[1:] < 0).all()
