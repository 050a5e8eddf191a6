"""Inflationary flows next to NPE: calibration, latent check, round trips, times.

For gaussian_linear and two_moons with 10 000 simulations (the runner's data seed):

- calibration of ``npe`` and ``iflow`` (the benchmark registry's methods) on fresh
  prior-predictive pairs: SBC ranks (``check_sbc``), TARP (``check_tarp``) and
  expected coverage through ``log_prob`` (``run_sbc(..., reduce_fns=log_prob)``);
- the latent chi-squared check of the flow on the same pairs;
- round trip theta -> z -> theta on those pairs for the PR-preserving flow and a
  PR-reducing one (half the dimensions kept), Heun (64 steps; the PR-reducing flow
  also at its default of 256) and adaptive solvers, with the time to sample 10 000
  parameters and to evaluate 1 000 log-probabilities.

    cd docs/benchmarks
    python iflow_study.py        # writes iflow_study.md and iflow_study.png

Each task can also run in its own process (``python iflow_study.py two_moons``
saves ``iflow_study_two_moons.pt``); ``python iflow_study.py --merge`` then writes
the table and the figure from the saved parts. Trained models are saved next to
them (``iflow_study_<task>_<method>.pt``), so a rerun skips finished trainings;
delete those files to retrain. ``python iflow_study.py --round-trips TASK ...``
recomputes only the round-trip rows of saved parts, from the saved models.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp
from sbi.diagnostics.sbc import check_uniformity_frequentist

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks import Cell, cell_simulations, get_method, get_task
from sbi_allinone.inflationary.calibration import (
    latent_chi2_check,
    plot_latent_chi2_check,
)
from sbi_allinone.tracking import NullTracker

TASKS = ("gaussian_linear", "two_moons")
METHODS = ("npe", "iflow")
BUDGET, NUM_TESTS, NUM_POSTERIOR_SAMPLES = 10_000, 300, 300
# Expected coverage needs log_prob of every posterior sample (an ODE solve each).
NUM_COVERAGE_TESTS, NUM_COVERAGE_SAMPLES = 150, 150
HERE = Path(__file__).parent


def _log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def diagnose(posterior, test_theta, test_x) -> dict:
    """SBC, TARP and expected coverage (HPD regions through ``log_prob``)."""
    ranks, dap = run_sbc(
        test_theta, test_x, posterior,
        num_posterior_samples=NUM_POSTERIOR_SAMPLES, show_progress_bar=False,
    )  # fmt: skip
    sbc = check_sbc(ranks, test_theta, dap, NUM_POSTERIOR_SAMPLES)
    ecp, alpha = run_tarp(
        test_theta, test_x, posterior,
        num_posterior_samples=NUM_POSTERIOR_SAMPLES, show_progress_bar=False,
    )  # fmt: skip
    atc, tarp_p = check_tarp(ecp, alpha)
    coverage_ranks, _ = run_sbc(
        test_theta[:NUM_COVERAGE_TESTS], test_x[:NUM_COVERAGE_TESTS], posterior,
        num_posterior_samples=NUM_COVERAGE_SAMPLES,
        # Ranks compare log-probabilities at one x: the prior-leakage
        # normalization (10 000 samples per x) cannot change them.
        reduce_fns=partial(posterior.log_prob, norm_posterior=False),
        show_progress_bar=False,
        use_batched_sampling=False,
    )  # fmt: skip
    coverage_p = check_uniformity_frequentist(coverage_ranks, NUM_COVERAGE_SAMPLES)
    return {
        "sbc_ks_min": sbc["ks_pvals"].min().item(),
        "sbc_c2st_max": sbc["c2st_ranks"].max().item(),
        "tarp_atc": float(atc),
        "tarp_p": float(tarp_p),
        "tarp_curve": (alpha, ecp),
        "coverage_p": coverage_p.min().item(),
        "coverage_ranks": coverage_ranks[:, 0] / NUM_COVERAGE_SAMPLES,
    }


def round_trip_rows(
    task_name, estimator, schedule, test_theta, test_x, heun_steps
) -> list[str]:
    """Round-trip error and times of one trained flow: Heun at each of
    ``heun_steps``, and the adaptive solver."""
    rows = []
    solvers = [("heun", steps) for steps in heun_steps] + [("adaptive", None)]
    default_steps = estimator.steps
    for solver, steps in solvers:
        estimator.solver, estimator.steps = solver, steps or default_steps
        start = time.perf_counter()
        z = estimator.inverse_transform(test_theta, test_x)
        back = estimator.transform(z, test_x)
        round_trip_time = time.perf_counter() - start
        error = (back - test_theta).abs()
        start = time.perf_counter()
        estimator.sample((10_000,), test_x[:1])
        sample_time = time.perf_counter() - start
        start = time.perf_counter()
        estimator.log_prob(test_theta[:1000].unsqueeze(1), test_x[:1])
        log_prob_time = time.perf_counter() - start
        label = f"heun, {steps} steps" if steps else solver
        rows.append(
            f"| {task_name} | {schedule} | {label} | {error.max():.1e} "
            f"| {error.mean():.1e} | {round_trip_time:.1f} | {sample_time:.1f} "
            f"| {log_prob_time:.1f} |"
        )
        _log(rows[-1])
    estimator.solver, estimator.steps = "heun", default_steps
    return rows


def _cached(path: Path, train):
    """Load a trained object from ``path``, or train it and save it there.

    A killed study resumes past its finished trainings (each takes up to an hour).
    """
    if path.exists():
        _log("loading", path.name)
        return torch.load(path, weights_only=False)
    trained = train()
    torch.save(trained, path)
    return trained


def _fit(method, theta, x, prior):
    torch.manual_seed(1)
    start = time.perf_counter()
    posterior = get_method(method).fit(theta, x, prior).posterior
    return posterior, time.perf_counter() - start


def train_reducing(task_name, theta, x):
    torch.manual_seed(1)
    inference = InflationaryFlow(
        get_task(task_name).prior, schedule="prr",
        latent_dim=max(1, theta.shape[1] // 2), tracker=NullTracker(),
        show_progress_bars=False,
    )  # fmt: skip
    return inference.append_simulations(theta, x).train()


def _task_data(task_name: str):
    """The runner's training simulations and the fixed prior-predictive test pairs."""
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, "npe", BUDGET, 1), task)
    torch.manual_seed(12345)
    test_theta = task.prior.sample((NUM_TESTS,))
    return task, theta, x, test_theta, task.simulate(test_theta)


def calibrate_task(task_name: str) -> tuple[list[str], dict]:
    """Calibration rows of npe and iflow, and the flow's latent check."""
    task, theta, x, test_theta, test_x = _task_data(task_name)
    calibration, results = [], {}
    for method in METHODS:
        posterior, train_time = _cached(
            _part_path(task_name, method),
            partial(_fit, method, theta, x, task.prior),
        )
        result = diagnose(posterior, test_theta, test_x)
        results[method] = result
        calibration.append(
            f"| {task_name} | {method} | {result['sbc_ks_min']:.3f} "
            f"| {result['sbc_c2st_max']:.3f} | {result['tarp_atc']:.3f} "
            f"| {result['tarp_p']:.3f} | {result['coverage_p']:.3f} "
            f"| {train_time:.0f} |"
        )
        _log(calibration[-1])
        if method == "iflow":
            estimator = posterior.posterior_estimator
            results["chi2"] = latent_chi2_check(estimator, test_theta, test_x)
            _log(task_name, "chi2 KS p", results["chi2"].p_value)
    return calibration, results


def round_trips_of_task(task_name: str) -> list[str]:
    """Round trips of the PR-preserving flow (``iflow``) and a PR-reducing one.

    Heun runs at 64 steps (the PR-preserving default) and, for the PR-reducing
    flow, also at its default of 256.
    """
    task, theta, x, test_theta, test_x = _task_data(task_name)
    posterior, _ = _cached(
        _part_path(task_name, "iflow"), partial(_fit, "iflow", theta, x, task.prior)
    )
    rows = round_trip_rows(
        task_name, posterior.posterior_estimator, "prp", test_theta, test_x, (64,)
    )
    reducing = _cached(
        _part_path(task_name, "prr"), partial(train_reducing, task_name, theta, x)
    )
    latent_dim = max(1, theta.shape[1] // 2)
    return rows + round_trip_rows(
        task_name, reducing, f"prr (latent_dim={latent_dim})", test_theta, test_x,
        (64, 256),
    )  # fmt: skip


def study_task(task_name: str) -> tuple[list[str], list[str], dict]:
    calibration, results = calibrate_task(task_name)
    return calibration, round_trips_of_task(task_name), results


def write_table(calibration, round_trips, results) -> None:
    chi2 = [
        f"| {task_name} | {results[task_name]['chi2'].dim} "
        f"| {results[task_name]['chi2'].ks_statistic:.3f} "
        f"| {results[task_name]['chi2'].p_value:.3f} |"
        for task_name in TASKS
    ]
    lines = [
        f"{BUDGET} simulations; {NUM_TESTS} prior-predictive test pairs with "
        f"{NUM_POSTERIOR_SAMPLES} posterior samples each (SBC, TARP); expected "
        f"coverage on the first {NUM_COVERAGE_TESTS} pairs with "
        f"{NUM_COVERAGE_SAMPLES} samples each.\n",
        "| task | method | SBC min KS p | SBC max rank-C2ST | TARP ATC | TARP KS p "
        "| expected coverage (log_prob) min KS p | train s |",
        "|---|---|---|---|---|---|---|---|",
        *calibration,
        "",
        "Latent check of the flow on the same pairs (`latent_chi2_check`: "
        "zᵀΣ_T⁻¹z against χ²_D, Kolmogorov–Smirnov):\n",
        "| task | D | KS statistic | p-value |",
        "|---|---|---|---|",
        *chi2,
        "",
        "| task | schedule | solver | round trip max abs error | mean | round trip s "
        f"({NUM_TESTS} pairs) | sample 10 000 s | log_prob 1 000 s |",
        "|---|---|---|---|---|---|---|---|",
        *round_trips,
    ]
    (HERE / "iflow_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(results) -> None:
    fig, axes = plt.subplots(3, len(TASKS), figsize=(5 * len(TASKS), 11))
    levels = torch.linspace(0, 1, 101)
    for column, task_name in enumerate(TASKS):
        for method in METHODS:
            result = results[task_name][method]
            alpha, ecp = result["tarp_curve"]
            axes[0, column].plot(alpha, ecp, label=method)
            # theta_o lies in the level-a highest-density region when at least a
            # fraction 1 - a of the posterior samples has a lower density.
            inside = result["coverage_ranks"].unsqueeze(0) >= 1 - levels.unsqueeze(1)
            axes[1, column].plot(levels, inside.float().mean(1), label=method)
        for row, title in ((0, "TARP"), (1, "expected coverage (log_prob)")):
            axes[row, column].plot([0, 1], [0, 1], "k--", lw=0.8)
            axes[row, column].set(
                title=f"{task_name}: {title}",
                xlabel="credibility level",
                ylabel="empirical coverage",
            )
            axes[row, column].legend()
        plot_latent_chi2_check(results[task_name]["chi2"], ax=axes[2, column])
        axes[2, column].set_title(f"{task_name}: iflow latent χ² check")
    fig.tight_layout()
    fig.savefig(HERE / "iflow_study.png", dpi=100)


def _part_path(task_name: str, trained: str = "") -> Path:
    """Where a task's results (or, with ``trained``, a trained model) are saved."""
    suffix = f"_{trained}" if trained else ""
    return HERE / f"iflow_study_{task_name}{suffix}.pt"


def main(arguments: list[str]) -> None:
    if arguments[:1] == ["--round-trips"]:
        # Recompute only the round trips of saved parts, from the saved models.
        for task_name in arguments[1:]:
            calibration, _, results = torch.load(
                _part_path(task_name), weights_only=False
            )
            round_trips = round_trips_of_task(task_name)
            torch.save((calibration, round_trips, results), _part_path(task_name))
        return
    if arguments and arguments != ["--merge"]:
        for task_name in arguments:
            torch.save(study_task(task_name), _part_path(task_name))
        return
    parts = {
        task_name: torch.load(_part_path(task_name), weights_only=False)
        if arguments
        else study_task(task_name)
        for task_name in TASKS
    }
    calibration = [row for part in parts.values() for row in part[0]]
    round_trips = [row for part in parts.values() for row in part[1]]
    results = {task_name: part[2] for task_name, part in parts.items()}
    write_table(calibration, round_trips, results)
    plot(results)


if __name__ == "__main__":
    main(sys.argv[1:])
