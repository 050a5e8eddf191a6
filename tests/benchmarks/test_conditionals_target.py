"""`sbi-allinone bench --target conditionals` end to end on the tree task."""

import argparse

import pytest
import torch

from sbi_allinone.benchmarks.cli import main
from sbi_allinone.benchmarks.conditional_results import (
    CONDITIONAL_COLUMNS,
    conditional_table,
    read_conditional_results,
)
from sbi_allinone.benchmarks.conditional_setup import (
    evaluation_conditions,
    method_mask_kinds,
    parameter_prior,
)
from sbi_allinone.benchmarks.conditional_tasks import conditional_task
from sbi_allinone.benchmarks.conditionals import _warn_ignored

from .helpers import FAST, register_test_methods

# A Simformer trained for a few steps and sampled with few ODE steps: plumbing only.
SIMFORMER = "simformer_directed[num_steps=30,steps=8,training_batch_size=100]"


@pytest.fixture(autouse=True)
def _methods():
    register_test_methods()


def _bench(out, cache) -> int:
    args = ["bench", "--target", "conditionals", "--tasks", "tree"]
    args += ["--methods", f"{SIMFORMER},{FAST},nle", "--budgets", "300"]
    args += ["--masks-per-kind", "1", "--num-samples", "200", "--classifier", "mlp"]
    args += ["--threads", "1", "--reference-cache", str(cache), "--out", str(out)]
    return main(args)


@pytest.mark.filterwarnings("ignore")
def test_conditionals_target_rows_resume_and_report(tmp_path, capsys):
    out, cache = tmp_path / "results", tmp_path / "references"
    assert _bench(out, cache) == 0
    rows = read_conditional_results(out)
    assert list(rows[0]) == list(CONDITIONAL_COLUMNS)
    kinds = {(row["method"], row["mask_kind"]) for row in rows}
    # The Simformer has every conditional, NPE the posterior, NLE the likelihood.
    assert kinds == {
        (SIMFORMER, "posterior"),
        (SIMFORMER, "likelihood"),
        (SIMFORMER, "mixed"),
        (FAST, "posterior"),
        ("nle", "likelihood"),
    }
    masks = {row["mask_kind"]: row["mask"] for row in rows}
    assert masks["posterior"] == "0001111" and masks["likelihood"] == "1110000"
    assert all(0.5 <= row["c2st"] <= 1.0 for row in rows)
    assert all(row["num_samples"] == 200 for row in rows)
    assert len(list(cache.iterdir())) == 3  # one cached reference per mask

    # Resumed: nothing to do, no row added.
    assert _bench(out, cache) == 0
    assert len(read_conditional_results(out)) == len(rows)

    assert main(["report", str(out), "--target", "conditionals"]) == 0
    printed = capsys.readouterr().out
    # mlp: the torch test, which stacks the pairs of the same width.
    assert (
        "C2ST (mlp)" in printed
        and "| tree | 300 | likelihood |" in printed
        and "–" in printed
    )
    assert (out / "report_conditionals.md").exists()


def test_masks_and_observations_do_not_depend_on_how_many():
    task = conditional_task("tree")
    few = evaluation_conditions(task, ["mixed"], 1)
    more = evaluation_conditions(task, ["mixed"], 3)
    assert torch.equal(few[0].mask, more[0].mask)
    assert few[0].observation_seed == more[0].observation_seed
    assert len({c.bits for c in more}) > 1


def test_method_kinds_and_priors():
    assert method_mask_kinds("simformer[num_steps=5]")[:3] == (
        "posterior",
        "likelihood",
        "mixed",
    )
    assert method_mask_kinds("nle") == ("likelihood",)
    assert method_mask_kinds("npe_nsf") == ("posterior",)
    task = conditional_task("tree")
    joint = task.sample_joint(20_000, torch.Generator().manual_seed(0))
    empirical = torch.cov(joint[:, :3].T)
    prior = parameter_prior(task)
    assert torch.allclose(empirical, prior.covariance_matrix, atol=0.1)
    chain = conditional_task("markov_chain")
    theta = chain.sample_joint(20_000, torch.Generator().manual_seed(0))[:, :10]
    covariance = parameter_prior(chain).covariance_matrix
    assert torch.allclose(torch.cov(theta.T), covariance, atol=0.1)


def test_table_marks_missing_conditionals():
    row = {"task": "tree", "budget": 10, "classifier": "rf", "c2st": 0.7}
    rows = [
        {**row, "method": "a", "mask_kind": "posterior"},
        {**row, "method": "b", "mask_kind": "likelihood", "c2st": 0.9},
    ]
    table = conditional_table(rows)
    assert "| tree | 10 | likelihood | – | 0.900 (1) |" in table
    assert "| tree | 10 | posterior | 0.700 (1) | – |" in table


def test_options_that_do_not_apply_are_named(capsys):
    args = argparse.Namespace(jobs=2, scheduler=None, observations=[1, 2])
    _warn_ignored(args)
    assert "--jobs, --observations do not apply" in capsys.readouterr().err
