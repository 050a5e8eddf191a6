"""The examples in the package's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import sbi_allinone


def _modules_with_examples() -> list[str]:
    names = []
    for module in pkgutil.walk_packages(sbi_allinone.__path__, "sbi_allinone."):
        spec = importlib.util.find_spec(module.name)
        if spec and spec.origin and ">>> " in Path(spec.origin).read_text():
            names.append(module.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_examples_are_found():
    assert len(MODULES) >= 4, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
