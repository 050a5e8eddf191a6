"""Inflationary flows next to NPE: calibration, latent check, round trips, times.

For gaussian_linear and two_moons with 10 000 simulations (the runner's data seed):

- calibration of ``npe`` and ``iflow`` on fresh prior-predictive pairs: SBC ranks
  (``check_sbc``), TARP (``check_tarp``) and expected coverage through ``log_prob``
  (``run_sbc(..., reduce_fns=posterior.log_prob)``);
- the latent chi-squared check of the flow;
- round trip theta -> z -> theta on held-out pairs for the PR-preserving and a
  PR-reducing schedule (half the dimensions kept), Heun and adaptive solvers, with
  the time to sample 10 000 parameters and to evaluate 1 000 log-probabilities.

    cd docs/benchmarks
    python iflow_study.py        # writes iflow_study.md
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp
from sbi.diagnostics.sbc import check_uniformity_frequentist

from sbi_allinone import InflationaryFlow
from sbi_allinone.benchmarks import Cell, get_method, get_task
from sbi_allinone.benchmarks.runner import data_seed
from sbi_allinone.inflationary.calibration import latent_chi2_check
from sbi_allinone.tracking import NullTracker

TASKS = ("gaussian_linear", "two_moons")
BUDGET, NUM_TESTS, NUM_POSTERIOR_SAMPLES = 10_000, 200, 300
HERE = Path(__file__).parent


def _log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def calibration_rows(task_name: str, theta, x, test_theta, test_x) -> list[str]:
    rows = []
    for method in ("npe", "iflow"):
        torch.manual_seed(1)
        posterior = (
            get_method(method).fit(theta, x, get_task(task_name).prior).posterior
        )
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
            test_theta[:100], test_x[:100], posterior, num_posterior_samples=100,
            # Ranks compare log-probabilities at one x: the prior-leakage
            # normalization (10 000 samples per x) cannot change them.
            reduce_fns=partial(posterior.log_prob, norm_posterior=False),
            show_progress_bar=False,
            use_batched_sampling=False,
        )  # fmt: skip
        coverage_p = check_uniformity_frequentist(coverage_ranks, 100)
        rows.append(
            f"| {task_name} | {method} | {sbc['ks_pvals'].min():.3f} "
            f"| {sbc['c2st_ranks'].max():.3f} | {atc:.3f} | {tarp_p:.3f} "
            f"| {coverage_p.min():.3f} |"
        )
        _log(rows[-1])
    return rows


def round_trip_rows(task_name: str, theta, x, test_theta, test_x) -> list[str]:
    dim = theta.shape[1]
    rows = []
    schedules = [("prp", {}), ("prr", {"latent_dim": max(1, dim // 2)})]
    for schedule, kwargs in schedules:
        torch.manual_seed(1)
        inference = InflationaryFlow(
            get_task(task_name).prior, schedule=schedule, tracker=NullTracker(),
            show_progress_bars=False, **kwargs,
        )  # fmt: skip
        estimator = inference.append_simulations(theta, x).train()
        if schedule == "prp":
            check = latent_chi2_check(estimator, test_theta, test_x)
            rows.append(f"<!-- chi2 {task_name}: KS p = {check.p_value:.3f} -->")
        for solver in ("heun", "adaptive"):
            estimator.solver = solver
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
            rows.append(
                f"| {task_name} | {schedule} {kwargs or ''} | {solver} "
                f"| {error.max():.1e} | {error.mean():.1e} | {round_trip_time:.1f} "
                f"| {sample_time:.1f} | {log_prob_time:.1f} |"
            )
            _log(rows[-1])
    return rows


def main() -> None:
    calibration, round_trips = [], []
    for task_name in TASKS:
        task = get_task(task_name)
        torch.manual_seed(data_seed(Cell(task_name, "npe", BUDGET, 1)))
        theta = task.prior.sample((BUDGET,))
        x = task.simulate(theta)
        torch.manual_seed(12345)
        test_theta = task.prior.sample((NUM_TESTS,))
        test_x = task.simulate(test_theta)
        calibration += calibration_rows(task_name, theta, x, test_theta, test_x)
        round_trips += round_trip_rows(task_name, theta, x, test_theta, test_x)
    lines = [
        f"{BUDGET} simulations; {NUM_TESTS} prior-predictive test pairs.\n",
        "| task | method | SBC min KS p | SBC max rank-C2ST | TARP ATC | TARP KS p "
        "| expected coverage (log_prob) min KS p |",
        "|---|---|---|---|---|---|---|",
        *calibration,
        "",
        "| task | schedule | solver | round trip max abs error | mean | round trip s "
        f"({NUM_TESTS} pairs) | sample 10 000 s | log_prob 1 000 s |",
        "|---|---|---|---|---|---|---|---|",
        *round_trips,
    ]
    (HERE / "iflow_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
