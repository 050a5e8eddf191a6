"""Every tutorial runs top to bottom at a small budget, and is committed executed at
its full budget with outputs that match its code."""

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).parents[2] / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    assert TUTORIALS


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch):
    monkeypatch.setenv("SBI_ALLINONE_TUTORIAL_BUDGET", "small")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors


def _execution_script():
    path = Path(__file__).parents[2] / "docs" / "execute_tutorials.py"
    spec = importlib.util.spec_from_file_location("execute_tutorials", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_committed_notebook_is_executed_at_full_budget_and_current(path):
    script = _execution_script()
    notebook = nbformat.read(path, as_version=4)
    record = notebook.metadata.get(script.METADATA_KEY)
    rerun = f"run `python docs/execute_tutorials.py tutorials/{path.name}`"
    assert record, f"{path.name} is committed without its outputs: {rerun}"
    assert record["budget"] == "full", f"{path.name} ran at a small budget: {rerun}"
    assert record["code_sha256"] == script.code_hash(notebook), (
        f"{path.name}: its code changed after it was executed: {rerun}"
    )
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code if cell.source.strip()]
    assert counts == list(range(1, len(counts) + 1)), "not executed top to bottom"
    outputs = [output for cell in code for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    draws = any("plt." in cell.source or "pairplot(" in cell.source for cell in code)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images or not draws, f"{path.name} draws figures but shows none"
