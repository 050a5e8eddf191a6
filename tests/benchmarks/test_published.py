"""sbibm's published C2ST, as shipped with the package."""

import pytest

from sbi_allinone.benchmarks.published import (
    PUBLISHED_ALGORITHMS,
    published_c2st,
    published_summary,
)


def test_every_algorithm_task_budget_has_ten_observations():
    rows = published_c2st()
    assert len(rows) == 10 * 3 * 8 * 10  # tasks, budgets, algorithms, observations
    assert {row["algorithm"] for row in rows} == set(PUBLISHED_ALGORITHMS)
    summary = published_summary()
    assert all(entry["n"] == 10 for entry in summary.values())


def test_known_means():
    # The sbibm paper's NPE (REFERENCE.md §6) and gaussian_mixture's re-run.
    summary = published_summary(("NPE",))
    assert summary[("two_moons", 1000, "NPE")]["mean"] == pytest.approx(0.725, abs=5e-4)
    assert summary[("slcp", 10000, "NPE")]["mean"] == pytest.approx(0.901, abs=5e-4)
    rerun = summary[("gaussian_mixture", 10000, "NPE")]["mean"]
    assert rerun == pytest.approx(0.615, abs=5e-4)  # not the first run's 0.661


def test_selected_observations():
    first_two = published_summary(("NLE",), observations=(1, 2))
    assert all(entry["n"] == 2 for entry in first_two.values())
