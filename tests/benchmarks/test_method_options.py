"""Method names with options: ``simformer[num_steps=10000]``."""

import pytest

from sbi_allinone.benchmarks import make_cells
from sbi_allinone.benchmarks.cli import _names
from sbi_allinone.benchmarks.methods import get_method, parse_method_spec


def test_parse_method_spec_reads_literals_and_strings():
    assert parse_method_spec("npe") == ("npe", {})
    name, options = parse_method_spec(
        " simformer[num_steps=100, ode_solver=heun,x=None]"
    )
    assert name == "simformer"
    assert options == {"num_steps": 100, "ode_solver": "heun", "x": None}
    for bad in ("simformer[num_steps]", "sim former", "simformer[1=2]"):
        with pytest.raises(ValueError):
            parse_method_spec(bad)


def test_options_reach_the_training_function_and_name_the_cell():
    method = get_method("simformer[ num_steps = 100 , ode_solver=heun]")
    assert method.name == "simformer[num_steps=100,ode_solver=heun]"
    assert method.train.keywords == {"num_steps": 100, "ode_solver": "heun"}
    cells = make_cells(["two_moons"], ["simformer[ num_steps = 100 ]"], [100], [1])
    assert cells[0].method == "simformer[num_steps=100]"


def test_unknown_options_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="takes the options.*num_steps"):
        get_method("simformer[bogus=1]")
    with pytest.raises(ValueError, match="takes the options none"):
        get_method("npe[steps=3]")
    with pytest.raises(ValueError, match="Unknown method"):
        get_method("nope[steps=3]")


def test_cli_splits_methods_outside_brackets():
    assert _names("npe, simformer[num_steps=10,steps=8],iflow") == [
        "npe",
        "simformer[num_steps=10,steps=8]",
        "iflow",
    ]


def test_iflow_training_options_reach_its_training():
    import torch
    from sbi.utils import BoxUniform

    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    theta = prior.sample((60,))
    method = get_method("iflow[max_num_epochs=2,hidden_features=8,num_layers=1]")
    assert method.train.keywords == {
        "max_num_epochs": 2,
        "hidden_features": 8,
        "num_layers": 1,
    }
    trained = method.fit(theta, theta.flip(-1), prior)
    # sbi counts from 0 and runs max_num_epochs + 1 epochs.
    assert trained.epochs <= 3
