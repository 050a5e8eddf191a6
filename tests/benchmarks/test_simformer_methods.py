"""The Simformer's benchmark methods: registered, graph-aware, runnable."""

import pytest
import torch

from sbi_allinone import Simformer
from sbi_allinone.benchmarks import Cell, RunSettings, get_method, run_cell
from sbi_allinone.simformer import loop
from sbi_allinone.simformer.posterior import DEFAULT_STEPS, SimformerPosterior


@pytest.fixture
def tiny_schedule(monkeypatch):
    monkeypatch.setattr(loop, "default_num_steps", lambda n: 4)
    monkeypatch.setitem(DEFAULT_STEPS, "ode", 5)


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
    # x_i <- theta_i: theta_1 and x_2 never attend to each other. One (n, n) mask
    # serves the whole batch.
    mask = posterior.estimator.attention_mask(
        torch.zeros(3, 20, dtype=torch.bool), torch.zeros(3, 20, dtype=torch.bool)
    )
    assert mask.shape == (20, 20) and not mask[0, 11] and mask[0, 10]
    with pytest.raises(ValueError, match="needs the `task` name"):
        method.fit(theta, x, prior)
    with pytest.raises(ValueError, match="No dependency graph"):
        method.fit(theta, x, prior, task="sir")


def test_likelihood_target_scores_simformer_likelihoods(tiny_schedule, tmp_path):
    from sbi_allinone.benchmarks import read_results, run_benchmark, write_report

    settings = RunSettings(
        observations=(1, 2), num_samples=150, classifier="rf", target="likelihood"
    )
    failures = run_benchmark(
        [
            Cell("two_moons", "simformer", 120, 1),
            Cell("two_moons", "npe", 120, 1),
            Cell("two_moons", "nle", 120, 1),
        ],
        settings,
        tmp_path,
        show_progress_bars=False,
    )
    # NPE has no likelihood: a clear failure; the Simformer's rows are written.
    assert [str(error) for _, error in failures] == [
        "Method 'npe' provides no likelihood."
    ]
    rows = read_results(tmp_path, "likelihood")
    assert [(r["method"], r["observation"]) for r in rows] == [
        ("simformer", 1),
        ("simformer", 2),
        ("nle", 1),
        ("nle", 2),
    ]
    assert not read_results(tmp_path)  # the posterior file stays untouched
    assert "simformer" in write_report(tmp_path, None, target="likelihood")
    assert (tmp_path / "report_likelihood.md").exists()
    assert (tmp_path / "likelihood_c2st_two_moons.png").exists()


def test_likelihood_reference_is_the_simulator_at_the_true_parameters():
    from sbi_allinone.benchmarks import get_task
    from sbi_allinone.benchmarks.runner import _condition_and_reference

    task = get_task("gaussian_linear")
    settings = RunSettings(observations=(3,), num_samples=4000, target="likelihood")
    theta, reference = _condition_and_reference(
        task, 3, settings, Cell("gaussian_linear", "simformer", 100, 1)
    )
    assert torch.equal(theta, task.get_true_parameters(3))
    # gaussian_linear: x ~ N(theta, 0.1 I).
    assert torch.allclose(reference.mean(0), theta[0], atol=0.02)
    assert torch.allclose(reference.var(0), torch.full((10,), 0.1), atol=0.01)


def test_schedule_options_reach_the_simformer_training(monkeypatch):
    seen = {}
    train = Simformer.train

    def spy(self, **kwargs):
        seen.update(kwargs)
        return train(self, **kwargs)

    monkeypatch.setattr(Simformer, "train", spy)
    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1
    )
    theta = prior.sample((60,))
    method = get_method("simformer[num_steps=3,stop_after_epochs=7]")
    method.fit(theta, theta + 0.1 * torch.randn_like(theta), prior)
    # Options left out keep the Simformer's own defaults (not passed as None).
    assert seen == {"num_steps": 3, "stop_after_epochs": 7}
