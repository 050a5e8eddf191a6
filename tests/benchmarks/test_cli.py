"""The `sbi-allinone` command line."""

import argparse
import dataclasses
import inspect

import pytest

from sbi_allinone.benchmarks import RunSettings, run_benchmark, write_report
from sbi_allinone.benchmarks.cli import _parser, main, parse_numbers

from .helpers import FAST, register_test_methods


def test_parse_numbers():
    assert parse_numbers("1-3,7") == [1, 2, 3, 7]
    assert parse_numbers("1000,10000") == [1000, 10000]
    assert parse_numbers("2,2,1") == [2, 1]
    for bad in ("a", "3-1", "1-"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected numbers"):
            parse_numbers(bad)


def test_bench_then_report(tmp_path, capsys):
    register_test_methods()
    out = tmp_path / "results"
    args = ["bench", "--tasks", "two_moons", "--methods", FAST, "--budgets", "150"]
    args += ["--observations", "1-2", "--num-samples", "200", "--classifier", "rf"]
    assert main([*args, "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"| two_moons | 150 | {FAST} |" in printed
    assert (out / "report.md").exists() and (out / "c2st_two_moons.png").exists()


def test_errors_have_exit_code_2(tmp_path, capsys):
    assert main(["bench", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "Unknown method 'nope'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["bench", "--classifier", "svm", "--out", str(tmp_path)]) == 2
    assert "mlp, mlp_sklearn, mlp_sbibm, rf" in capsys.readouterr().err


def test_report_published(tmp_path, capsys):
    register_test_methods()
    out = tmp_path / "results"
    args = ["bench", "--tasks", "two_moons", "--methods", FAST, "--budgets", "150"]
    args += ["--observations", "1", "--num-samples", "200", "--out", str(out)]
    assert main(args) == 0
    assert main(["report", str(out), "--published"]) == 0
    assert main(["report", str(out), "--published", "NPE,SMC-ABC"]) == 0
    assert main(["report", str(out), "--published", "NPX"]) == 2
    assert "Unknown published algorithms ['NPX']" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "two_moons" in printed and "npse" in printed and "fmpe" in printed
    assert "npe_sbibm" in printed
    assert "conditionals: tree, markov_chain" in printed


def test_bench_defaults_are_the_run_settings_defaults():
    args = _parser().parse_args(["bench"])
    # Every setting but the progress bars (always off on the command line) is an
    # option, and its default is RunSettings' own.
    for field in dataclasses.fields(RunSettings):
        if field.name == "show_progress_bars":
            continue
        value = getattr(args, field.name)
        expected = field.default
        assert (tuple(value) if field.name == "observations" else value) == expected
    engine = inspect.signature(run_benchmark).parameters
    assert args.jobs == engine["jobs"].default
    assert args.scheduler == engine["scheduler"].default


def test_report_defaults_are_write_report_defaults():
    args = _parser().parse_args(["report"])
    parameters = inspect.signature(write_report).parameters
    for name in ("baseline", "observations", "target", "classifier"):
        assert getattr(args, name) == parameters[name].default, name
