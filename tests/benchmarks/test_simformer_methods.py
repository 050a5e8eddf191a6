"""The Simformer's benchmark methods: registered, graph-aware, runnable."""

import pytest
import torch

from sbi_allinone.benchmarks import Cell, RunSettings, get_method, run_cell
from sbi_allinone.benchmarks import methods as methods_module
from sbi_allinone.simformer.posterior import SimformerPosterior


@pytest.fixture
def tiny_schedule(monkeypatch):
    monkeypatch.setattr(methods_module, "SIMFORMER_MIN_STEPS", 4)
    monkeypatch.setattr(methods_module, "SIMFORMER_MAX_STEPS", 4)
    monkeypatch.setattr(methods_module, "SIMFORMER_SAMPLING_STEPS", 5)


@pytest.mark.parametrize(
    "name", ["simformer", "simformer_undirected", "simformer_directed"]
)
def test_simformer_methods_run_in_the_runner(name, tiny_schedule):
    settings = RunSettings(observations=(1,), num_samples=200, classifier="rf")
    (row,) = run_cell(Cell("gaussian_linear", name, 150, 1), settings)
    assert 0.5 <= row["c2st"] <= 1.0 and row["epochs"] >= 1


def test_graph_variants_use_the_task_graph(tiny_schedule):
    method = get_method("simformer_undirected")
    assert method.needs_task and not get_method("simformer").needs_task
    theta, x = torch.randn(100, 10), torch.randn(100, 10)
    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(10), torch.ones(10)), 1
    )
    trained = method.fit(theta, x, prior, task="gaussian_linear")
    posterior = trained.posterior
    assert isinstance(posterior, SimformerPosterior)
    assert posterior.estimator.attention == "undirected"
    # x_i <- theta_i: theta_1 and x_2 never attend to each other.
    mask = posterior.estimator.attention_mask(
        torch.zeros(1, 20, dtype=torch.bool), torch.zeros(1, 20, dtype=torch.bool)
    )
    assert not mask[0, 0, 11] and mask[0, 0, 10]
    with pytest.raises(ValueError, match="needs the `task` name"):
        method.fit(theta, x, prior)
    with pytest.raises(ValueError, match="No dependency graph"):
        method.fit(theta, x, prior, task="sir")
