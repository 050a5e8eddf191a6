"""Report: markdown table and plots from a results file."""

import math

import pytest

from sbi_allinone.benchmarks import read_results
from sbi_allinone.benchmarks.report import (
    markdown_table,
    plot_prefix,
    report_name,
    summarize,
    write_report,
)
from sbi_allinone.benchmarks.results import COLUMNS, append_results


def _row(method, budget, observation, c2st, train=10.0, sample=1.0, seed=1):
    values = dict.fromkeys(COLUMNS, "")
    values.update(
        task="two_moons",
        method=method,
        budget=budget,
        seed=seed,
        observation=observation,
        c2st=c2st,
        classifier="mlp",
        num_samples=100,
        train_time_s=train,
        sample_time_s=sample,
        c2st_time_s=2.0,
        epochs=50,
        num_valid_simulations=budget,
    )
    return values


@pytest.fixture
def results(tmp_path):
    rows = [
        _row("npe", 1000, 1, 0.70),
        _row("npe", 1000, 2, 0.80),
        _row("npse", 1000, 1, 0.60, train=30.0, sample=4.0),
        _row("npse", 1000, 2, math.nan, train=30.0, sample=4.0),
        _row("npe", 10000, 1, 0.55, train=40.0),
    ]
    append_results(tmp_path, rows)
    return tmp_path


def test_summary_statistics(results):
    summary = {(s["method"], s["budget"]): s for s in summarize(read_results(results))}
    npe = summary[("npe", 1000)]
    assert npe["c2st_mean"] == pytest.approx(0.75)
    assert npe["c2st_sd"] == pytest.approx(math.sqrt(0.005))
    assert npe["n"] == 2 and npe["n_failed"] == 0
    assert summary[("npse", 1000)]["n_failed"] == 1
    assert summary[("npse", 1000)]["c2st_mean"] == pytest.approx(0.60)


def test_markdown_table_with_time_ratios(results):
    summary = summarize(read_results(results))
    table = markdown_table(summary, baseline="npe")
    lines = table.splitlines()
    assert lines[0].startswith("| task | budget | method | C2ST (mean ± sd)")
    assert "train / npe" in lines[0]
    npse = next(line for line in lines if "| npse |" in line)
    assert "0.600 ± 0.000 (1 NaN)" in npse
    assert "| 3.00 | 4.00 |" in npse  # 30 s / 10 s and 4 s / 1 s
    assert "C2ST classifier: mlp" in table
    assert "train /" not in markdown_table(summary, baseline=None)


def test_write_report_files(results):
    table = write_report(results)
    assert (results / "report.md").read_text().strip() == table.strip()
    png = results / "c2st_two_moons.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_likelihood_report_files(tmp_path):
    append_results(tmp_path, [_row("npe", 1000, 1, 0.7)], "likelihood")
    assert report_name("posterior") == "report.md" and plot_prefix("posterior") == ""
    write_report(tmp_path, target="likelihood")
    assert report_name("likelihood") == "report_likelihood.md"
    assert (tmp_path / "report_likelihood.md").exists()
    assert (tmp_path / f"{plot_prefix('likelihood')}c2st_two_moons.png").exists()
    assert not (tmp_path / "report.md").exists()


def test_report_on_selected_observations(results):
    table = write_report(results, observations=[1])
    assert "| two_moons | 1000 | npe | 0.700 ± 0.000 | 1 |" in table
    with pytest.raises(FileNotFoundError):
        write_report(results, observations=[7])


def test_empty_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No results in"):
        write_report(tmp_path)


def test_baseline_defaults_to_the_strongest_npe(results):
    append_results(results, [_row("npe_sbibm", 1000, 1, 0.65, train=5.0)])
    table = write_report(results)
    assert "C2ST − npe_sbibm" in table and "train / npe_sbibm" in table
    npe = next(line for line in table.splitlines() if "| npe |" in line)
    assert "| +0.100 |" in npe  # 0.75 against 0.65
    assert "| 2.00 |" in npe  # 10 s / 5 s
    # Without npe_sbibm rows, sbi's default npe is the baseline.
    assert "C2ST − npe |" in write_report(results, observations=[2])


def _published_rows(task, budget, shift):
    """Rows of npe_sbibm at the published NPE's observations, shifted by `shift`."""
    from sbi_allinone.benchmarks.published import published_summary

    values = published_summary(("NPE",))[(task, budget, "NPE")]["values"]
    rows = []
    for observation, c2st in values.items():
        row = _row("npe_sbibm", budget, observation, round(c2st + shift, 4))
        rows.append({**row, "task": task})
    return rows


def test_published_comparison_and_curves(tmp_path):
    append_results(tmp_path, _published_rows("two_moons", 10000, 0.01))
    append_results(tmp_path, _published_rows("slcp", 1000, -0.08))
    table = write_report(tmp_path, published=("NPE", "NLE"))
    assert "## Against sbibm's published numbers" in table
    moons = next(line for line in table.splitlines() if "| two_moons | 10000 |" in line
                 and "NPE 0.606" in line)  # fmt: skip
    assert "| +0.010 ± 0.000 | 10 | yes |" in moons
    slcp = next(line for line in table.splitlines() if "NPE 0.975" in line)
    assert "| -0.080 ± 0.000 | 10 | **no** |" in slcp
    assert (tmp_path / "c2st_two_moons.png").exists()
    # On one observation: the published mean there, its spread over all ten.
    one = write_report(tmp_path, observations=[1], published=("NPE",))
    slcp = next(
        line for line in one.splitlines() if "| slcp | 1000 | npe_sbibm (" in line
    )
    assert "NPE 0.988 ± 0.013 |" in slcp and "| 1 |" in slcp
    with pytest.raises(ValueError, match="Unknown published algorithms"):
        write_report(tmp_path, published=("NPX",))
