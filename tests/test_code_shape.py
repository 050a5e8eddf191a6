"""The codebase's size limits: no module over 400 lines, no function over 60 lines
besides its docstring.

The docstring does not count towards a function's length: the API reference
(`mkdocs build --strict`) needs every parameter documented on its own line, and a
builder with 25 options (``inn_nn``) must not have to choose between its docs and
this limit. Modules count every line.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sbi_allinone"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    is_docstring = isinstance(first, ast.Expr) and isinstance(
        getattr(first, "value", None), ast.Constant
    )
    if not is_docstring or not isinstance(first.value.value, str):
        return 0
    return first.end_lineno - first.lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_lengths(path):
    source = path.read_text()
    assert source.count("\n") <= 400, f"{path.name} has over 400 lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            assert length <= 60, (
                f"{path.name}:{node.name} has {length} lines besides its docstring"
            )
