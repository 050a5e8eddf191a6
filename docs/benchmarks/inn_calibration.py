"""INN calibration next to NPE: SBC, TARP and the INN paper's calibration error.

Trains npe, inn (ml), inn_hybrid and inn_mmd (the benchmark registry's methods, at
their defaults) on gaussian_linear and two_moons with 10 000 simulations (the
runner's data seed), then on fresh (theta, x) pairs from the prior predictive:

- SBC: ``run_sbc`` + ``check_sbc`` (KS p-values of the ranks, per parameter; C2ST
  of the ranks against uniform),
- TARP: ``run_tarp`` + ``check_tarp`` (ATC, KS p-value),
- calibration error: mean |coverage - level| of central credible intervals
  (``sbi_allinone.inn.calibration_error``).

    cd docs/benchmarks
    python inn_calibration.py          # writes inn_calibration.md and .png
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

from sbi_allinone.benchmarks import Cell, cell_simulations, get_method, get_task
from sbi_allinone.inn import calibration_error

TASKS = ("gaussian_linear", "two_moons")
METHODS = ("npe", "inn", "inn_hybrid", "inn_mmd")
BUDGET = 10_000
NUM_TESTS, NUM_POSTERIOR_SAMPLES = 500, 500
HERE = Path(__file__).parent


def _diagnose(posterior, thetas: torch.Tensor, xs: torch.Tensor) -> dict:
    ranks, dap = run_sbc(
        thetas, xs, posterior, num_posterior_samples=NUM_POSTERIOR_SAMPLES,
        show_progress_bar=False,
    )  # fmt: skip
    sbc = check_sbc(ranks, thetas, dap, num_posterior_samples=NUM_POSTERIOR_SAMPLES)
    ecp, alpha = run_tarp(
        thetas, xs, posterior, num_posterior_samples=NUM_POSTERIOR_SAMPLES,
        show_progress_bar=False,
    )  # fmt: skip
    atc, tarp_p = check_tarp(ecp, alpha)
    samples = posterior.sample_batched(
        (NUM_POSTERIOR_SAMPLES,), x=xs, show_progress_bars=False
    )
    calibration = calibration_error(samples, thetas)
    return {
        "sbc_ks_min": sbc["ks_pvals"].min().item(),
        "sbc_c2st_max": sbc["c2st_ranks"].max().item(),
        "tarp_atc": float(atc),
        "tarp_p": float(tarp_p),
        "calibration_error": calibration.error,
        "coverage": calibration,
        "ecp": (alpha, ecp),
    }


def main() -> None:
    rows, curves = [], {}
    for task_name in TASKS:
        task = get_task(task_name)
        theta, x = cell_simulations(Cell(task_name, "npe", BUDGET, 1), task)
        torch.manual_seed(12345)
        test_theta = task.prior.sample((NUM_TESTS,))
        test_x = task.simulate(test_theta)
        for method in METHODS:
            torch.manual_seed(1)
            start = time.perf_counter()
            posterior = get_method(method).fit(theta, x, task.prior).posterior
            train_time = time.perf_counter() - start
            result = _diagnose(posterior, test_theta, test_x)
            curves[task_name, method] = result
            rows.append((task_name, method, train_time, result))
            print(
                task_name, method, f"{result['calibration_error']:.4f}", file=sys.stderr
            )
    _write_table(rows)
    _plot(curves)


def _write_table(rows) -> None:
    lines = [
        f"{BUDGET} simulations; {NUM_TESTS} test pairs from the prior predictive, "
        f"{NUM_POSTERIOR_SAMPLES} posterior samples each.\n",
        "| task | method | calibration error (%) | SBC min KS p | SBC max rank-C2ST "
        "| TARP ATC | TARP KS p | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task_name, method, train_time, r in rows:
        lines.append(
            f"| {task_name} | {method} | {100 * r['calibration_error']:.2f} "
            f"| {r['sbc_ks_min']:.3f} | {r['sbc_c2st_max']:.3f} | {r['tarp_atc']:.3f} "
            f"| {r['tarp_p']:.3f} | {train_time:.0f} |"
        )
    (HERE / "inn_calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _plot(curves) -> None:
    fig, axes = plt.subplots(2, len(TASKS), figsize=(5 * len(TASKS), 8), squeeze=False)
    for column, task_name in enumerate(TASKS):
        for method in METHODS:
            result = curves[task_name, method]
            alpha, ecp = result["ecp"]
            axes[0, column].plot(alpha, ecp, label=method)
            calibration = result["coverage"]
            gap = (calibration.coverage - calibration.levels.unsqueeze(-1)).mean(-1)
            axes[1, column].plot(calibration.levels, gap, label=method)
        axes[0, column].plot([0, 1], [0, 1], "k--", lw=0.8)
        axes[0, column].set(title=f"{task_name}: TARP", xlabel="credibility level",
                            ylabel="expected coverage")  # fmt: skip
        axes[1, column].axhline(0, color="k", lw=0.8, ls="--")
        axes[1, column].set(
            title=f"{task_name}: central intervals",
            xlabel="nominal level",
            ylabel="coverage - nominal",
        )
        axes[0, column].legend()
    fig.tight_layout()
    fig.savefig(HERE / "inn_calibration.png", dpi=100)


if __name__ == "__main__":
    main()
