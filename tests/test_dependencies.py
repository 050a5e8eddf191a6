"""Every third-party package the code imports is declared in ``pyproject.toml``."""

import ast
import re
import sys
from pathlib import Path

import pytest

import sbi_allinone

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(sbi_allinone.__file__).parent.parent
# Import names that differ from their distribution's name.
DISTRIBUTION = {"sklearn": "scikit-learn", "pyro": "pyro-ppl", "yaml": "pyyaml"}
# Installed on their own (sbibm pins an old sbi; see the README), used by the runner.
INSTALLED_APART = {"sbibm"}


def _imported_modules(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"sbi_allinone", "__future__"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_imported_package_is_declared():
    declared = _declared()
    missing = {
        name
        for name in _imported_modules(ROOT / "sbi_allinone") - INSTALLED_APART
        if DISTRIBUTION.get(name, name).lower().replace("_", "-") not in declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_core_dependency_is_imported():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {
        re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower()
        for r in project["dependencies"]
    }
    imported = {
        DISTRIBUTION.get(name, name).lower()
        for name in _imported_modules(ROOT / "sbi_allinone")
    }
    # six: sbi's plotting imports it without declaring it (see pyproject.toml).
    unused = core - imported - {"six"}
    assert not unused, f"declared but never imported: {unused}"
