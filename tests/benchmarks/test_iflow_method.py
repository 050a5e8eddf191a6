"""The inflationary flow's benchmark method runs in the runner."""

from sbi_allinone.benchmarks import Cell, RunSettings, get_method, run_cell
from sbi_allinone.inflationary import InflationaryFlowEstimator


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
