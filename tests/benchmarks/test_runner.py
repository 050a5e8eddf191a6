"""The benchmark runner end to end on tiny budgets, resume, parallel jobs, errors."""

import csv
import math

import pytest
import torch

from sbi_allinone.benchmarks import (
    Cell,
    RunSettings,
    get_task,
    make_cells,
    read_results,
    run_benchmark,
    run_cell,
)
from sbi_allinone.benchmarks.cells import data_seed
from sbi_allinone.benchmarks.results import COLUMNS, RESULTS_FILE, completed_cells

from .helpers import FAST, register_test_methods

SETTINGS = RunSettings(observations=(1, 2), num_samples=300, classifier="rf")


@pytest.fixture(autouse=True)
def _methods():
    register_test_methods()


def test_run_cell_rows():
    rows = run_cell(Cell("two_moons", FAST, 200, 1), SETTINGS)
    assert [row["observation"] for row in rows] == [1, 2]
    for row in rows:
        assert 0.5 <= row["c2st"] <= 1.0
        assert row["num_samples"] == 300 and row["classifier"] == "rf"
        assert row["epochs"] == 5 and row["num_valid_simulations"] == 200
        assert row["train_time_s"] > 0 and row["sample_time_s"] > 0


@pytest.mark.parametrize("classifier", ["rf", "mlp"])
def test_c2st_separates_good_from_bad_posteriors(classifier):
    # The score must be able to fail: reference samples score ~0.5, prior samples ~1.
    from sbi_allinone.benchmarks.runner import _c2st

    task = get_task("two_moons")
    reference = task.get_reference_posterior_samples(1)
    pairs = [
        (reference[:1000], reference[5000:6000]),
        (reference[:1000], task.prior.sample((1000,))),
    ]
    (same, _), (prior, _) = _c2st(pairs, classifier, "cpu")
    assert same < 0.56 and prior > 0.9


def test_data_are_shared_across_methods_and_seeded():
    a, b = Cell("slcp", "npe", 100, 1), Cell("slcp", "npse", 100, 1)
    assert data_seed(a) == data_seed(b)
    assert data_seed(a) != data_seed(Cell("slcp", "npe", 100, 2))
    assert data_seed(a) != data_seed(Cell("slcp", "npe", 1000, 1))


def test_cell_simulations_are_the_runners_data():
    from sbi_allinone.benchmarks import cell_simulations

    theta, x = cell_simulations(Cell("two_moons", "npe", 50, 1))
    same_theta, same_x = cell_simulations(Cell("two_moons", "npse", 50, 1))
    assert torch.equal(theta, same_theta) and torch.equal(x, same_x)
    assert theta.shape == (50, 2) and x.shape == (50, 2)
    other_seed, _ = cell_simulations(Cell("two_moons", "npe", 50, 2))
    assert not torch.equal(theta, other_seed)


def test_run_cell_is_reproducible():
    cell = Cell("gaussian_linear", FAST, 200, 3)
    first, second = run_cell(cell, SETTINGS), run_cell(cell, SETTINGS)
    assert [r["c2st"] for r in first] == [r["c2st"] for r in second]


def test_sweep_resumes_after_interruption(tmp_path):
    cells = make_cells(["two_moons"], [FAST, "test_interrupted"], [150], [1])
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cells, SETTINGS, tmp_path, show_progress_bars=False)
    saved = read_results(tmp_path)
    assert {(r["method"], r["observation"]) for r in saved} == {(FAST, 1), (FAST, 2)}

    # Resuming skips the finished cell: its rows stay exactly as they were.
    cells = make_cells(["two_moons"], [FAST, "npe"], [150], [1])
    sweep = [cells[0], Cell("two_moons", FAST, 150, 2)]
    failures = run_benchmark(sweep, SETTINGS, tmp_path, show_progress_bars=False)
    assert failures == []
    rows = read_results(tmp_path)
    assert rows[:2] == saved
    assert [(r["seed"], r["observation"]) for r in rows[2:]] == [(2, 1), (2, 2)]

    # Asking for more observations re-runs a cell; asking for fewer does not.
    fewer = RunSettings(observations=(2,), num_samples=300, classifier="rf")
    run_benchmark(sweep, fewer, tmp_path, show_progress_bars=False)
    assert len(read_results(tmp_path)) == 4


def test_failed_cell_is_reported_and_sweep_goes_on(tmp_path):
    cells = make_cells(["two_moons"], ["test_broken", FAST], [150], [1])
    failures = run_benchmark(cells, SETTINGS, tmp_path, show_progress_bars=False)
    assert [(cell.method, str(error)) for cell, error in failures] == [
        ("test_broken", "this method always fails")
    ]
    assert {r["method"] for r in read_results(tmp_path)} == {FAST}


def test_parallel_jobs_write_a_tidy_file(tmp_path):
    cells = make_cells(["two_moons", "gaussian_mixture"], [FAST], [150], [1])
    settings = RunSettings(observations=(1,), num_samples=200, classifier="rf")
    failures = run_benchmark(
        cells, settings, tmp_path, jobs=2, show_progress_bars=False
    )
    assert failures == []
    with (tmp_path / RESULTS_FILE).open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["task"] for r in rows) == ["gaussian_mixture", "two_moons"]


def test_bad_settings_and_names():
    with pytest.raises(ValueError, match="Unknown method 'nope'; registered: npe"):
        make_cells(["two_moons"], ["nope"], [100], [1])
    with pytest.raises(ValueError, match="Unknown task 'moons'"):
        make_cells(["moons"], ["npe"], [100], [1])
    with pytest.raises(ValueError, match="`budgets` must be at least 2"):
        make_cells(["two_moons"], ["npe"], [0], [1])
    with pytest.raises(
        ValueError,
        match="`classifier` must be one or several of mlp, mlp_sklearn, mlp_sbibm",
    ):
        RunSettings(classifier="svm")
    with pytest.raises(ValueError, match="`observations` must be numbers in 1..10"):
        RunSettings(observations=(0, 11))
    with pytest.raises(ValueError, match="`max_sampling_time` must be positive"):
        RunSettings(max_sampling_time=0)
    with pytest.raises(ValueError, match="`jobs` must be at least 1"):
        run_benchmark([], SETTINGS, "unused", jobs=0)


def test_nan_simulations_are_counted(monkeypatch):
    task = get_task("two_moons")
    simulate = task.simulate

    def with_failures(theta):
        x = simulate(theta)
        x[::10] = float("nan")
        return x

    monkeypatch.setattr(task, "simulate", with_failures)
    monkeypatch.setattr("sbi_allinone.benchmarks.runner.get_task", lambda name: task)
    rows = run_cell(Cell("two_moons", FAST, 200, 1), SETTINGS)
    assert rows[0]["num_valid_simulations"] == 180
    assert torch.isfinite(torch.tensor([r["c2st"] for r in rows])).all()


def test_two_classifiers_score_the_same_samples(tmp_path):
    from sbi_allinone.benchmarks import write_report

    both = RunSettings(observations=(1,), num_samples=300, classifier="mlp,rf")
    cells = [Cell("two_moons", FAST, 150, 1)]
    run_benchmark(cells, both, tmp_path, show_progress_bars=False)
    rows = read_results(tmp_path)
    assert [r["classifier"] for r in rows] == ["mlp", "rf"]
    assert rows[0]["sample_time_s"] == rows[1]["sample_time_s"]  # one draw
    assert rows[0]["c2st_time_s"] > 0 and rows[1]["c2st_time_s"] > 0
    # Done for both classifiers, and for each alone: nothing is re-run.
    for settings in (both, SETTINGS.__class__(observations=(1,), num_samples=300)):
        run_benchmark(cells, settings, tmp_path, show_progress_bars=False)
    assert len(read_results(tmp_path)) == 2
    table = write_report(tmp_path, baseline=None)
    assert "| classifier |" in table and "| rf |" in table
    assert "| rf |" not in write_report(tmp_path, baseline=None, classifier="mlp")


class _LeakyPosterior:
    """Rejection sampling that times out with a fraction of the samples (sbi
    raises instead of returning none)."""

    prior = torch.distributions.Independent(
        torch.distributions.Uniform(torch.zeros(2), torch.ones(2)), 1
    )

    def __init__(self, accepted: float) -> None:
        self.accepted = accepted

    def sample(
        self, sample_shape, x=None, show_progress_bars=True,
        reject_outside_prior=True, max_sampling_time=None,
        return_partial_on_timeout=False,
    ):  # fmt: skip
        if reject_outside_prior:
            assert max_sampling_time == SETTINGS.max_sampling_time
            assert return_partial_on_timeout
            if self.accepted == 0:
                raise RuntimeError("... exceeded max_sampling_time ...")
            return torch.zeros(int(sample_shape[0] * self.accepted), 2)
        return torch.full((sample_shape[0], 2), 5.0)


@pytest.mark.parametrize("accepted, inside", [(0.25, 75), (0.0, 0)])
def test_rejection_that_times_out_is_filled_and_reported(accepted, inside):
    from sbi_allinone.benchmarks.runner import _sample

    leaky = _LeakyPosterior(accepted)
    with pytest.warns(UserWarning, match=f"only {inside} of 300 samples fell inside"):
        samples = _sample(leaky, torch.zeros(1, 2), SETTINGS, "cell")
    assert samples.shape == (300, 2)
    assert (samples[:inside] == 0).all() and (samples[inside:] == 5).all()


def test_torch_mlp_scores_a_cells_observations_together():
    from sbi_allinone.benchmarks.c2st import c2st
    from sbi_allinone.benchmarks.runner import _c2st

    reference = get_task("two_moons").get_reference_posterior_samples(1)[:400]
    pairs = [
        (reference, reference + 0.05 * torch.randn(400, 2)),
        (reference, torch.full((400, 2), math.nan)),  # a broken posterior
        (reference, reference[:, [1, 0]]),
    ]
    scores = _c2st(pairs, "mlp", "cpu")
    assert math.isnan(scores[1][0])
    # Each as if scored alone; the time is an equal share of one stack.
    for i in (0, 2):
        assert scores[i][0] == round(c2st(*pairs[i], seed=1), 4)
    assert scores[0][1] == scores[2][1] > 0


def test_sklearn_mlp_stays_available():
    settings = RunSettings(observations=(1,), num_samples=300, classifier="mlp_sklearn")
    (row,) = run_cell(Cell("two_moons", FAST, 150, 1), settings)
    assert row["classifier"] == "mlp_sklearn" and 0.5 <= row["c2st"] <= 1.0


def _legacy_file(folder):
    """A results.csv as written before the torch C2ST: no c2st_time_s column, and
    its "mlp" rows scored by sklearn."""
    header = [c for c in COLUMNS if c != "c2st_time_s"]
    values = {
        "task": "two_moons", "method": "npe", "budget": 100, "seed": 1,
        "observation": 1, "c2st": 0.8, "classifier": "mlp", "num_samples": 300,
        "train_time_s": 1.0, "sample_time_s": 0.5, "epochs": 10,
        "num_valid_simulations": 100, "sbi_version": "0.27.0",
        "finished_at": "2026-11-30T10:00:00",
    }  # fmt: skip
    with (folder / RESULTS_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerow(values)


def test_legacy_results_are_read_as_sklearn_and_migrated(tmp_path):
    from sbi_allinone.benchmarks.results import append_results

    _legacy_file(tmp_path)
    (old,) = read_results(tmp_path)
    assert old["classifier"] == "mlp_sklearn" and math.isnan(old["c2st_time_s"])
    # A legacy sklearn row does not count as done for the torch "mlp".
    cell = Cell("two_moons", "npe", 100, 1)
    mlp = RunSettings(observations=(1,), num_samples=300)
    assert cell.key() not in completed_cells(tmp_path, mlp)
    sklearn = RunSettings(observations=(1,), num_samples=300, classifier="mlp_sklearn")
    assert cell.key() in completed_cells(tmp_path, sklearn)

    new = {**old, "classifier": "mlp", "c2st": 0.7, "c2st_time_s": 2.0}
    append_results(tmp_path, [new])
    with (tmp_path / RESULTS_FILE).open() as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    rows = read_results(tmp_path)
    assert [(r["classifier"], r["c2st"]) for r in rows] == [
        ("mlp_sklearn", 0.8),
        ("mlp", 0.7),
    ]
