"""MkDocs hook: the API reference must cover every public name, with a docstring.

The public names are the ``__all__`` of the package and of its subpackages, and every
name the tutorials import from ``sbi_allinone`` (what users are shown how to use).
After the build, each of them must be rendered on an API page (mkdocstrings gives
every rendered object an HTML id of its full path) and have a docstring. A miss is
logged as a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.api_coverage")

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("simformer", "inflationary", "inn", "diffusion", "benchmarks")


def public_names() -> dict[str, object]:
    """Map each public dotted name to its object."""
    names = {}
    for module_name in ("sbi_allinone", *(f"sbi_allinone.{s}" for s in SUBPACKAGES)):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if not name.startswith("__"):
                names[f"{module_name}.{name}"] = getattr(module, name)
    for module_name, name in tutorial_imports():
        module = importlib.import_module(module_name)
        names[f"{module_name}.{name}"] = getattr(module, name)
    return names


def tutorial_imports() -> set[tuple[str, str]]:
    """``(module, name)`` of each ``from sbi_allinone... import name`` in a tutorial."""
    import nbformat

    found = set()
    for path in sorted((ROOT / "tutorials").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "sbi_allinone"
                ):
                    found.update((node.module, alias.name) for alias in node.names)
    return found


def rendered_objects(site_dir: Path) -> set[int]:
    """``id()`` of every object with an HTML anchor on an API page."""
    objects = set()
    for page in (site_dir / "api").rglob("*.html"):
        for anchor in re.findall(r'id="(sbi_allinone[\w.]*)"', page.read_text()):
            objects.update(id(obj) for obj in resolve(anchor))
    return objects


def resolve(dotted: str) -> list[object]:
    """The objects a dotted path can name: a submodule and a function of the same
    name (``diffusion.multistep``) are both candidates."""
    parts = dotted.split(".")
    found = []
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute, None)
        if obj is not None:
            found.append(obj)
    return found


def on_post_build(config, **kwargs) -> None:
    rendered = rendered_objects(Path(config["site_dir"]))
    for name, obj in sorted(public_names().items()):
        if id(obj) not in rendered:
            log.warning("API reference: public name %s is not rendered", name)
        elif (inspect.isclass(obj) or callable(obj)) and not inspect.getdoc(obj):
            log.warning("API reference: public name %s has no docstring", name)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Append the list of benchmark records (every page under ``benchmarks/``)."""
    if page.file.src_uri != "records.md":
        return markdown
    runs, studies = [], []
    for file in sorted(files.documentation_pages(), key=lambda f: f.src_uri):
        uri = file.src_uri
        if not uri.startswith("benchmarks/"):
            continue
        title = _first_heading(Path(file.abs_src_path)) or uri
        link = f"- [{title}]({uri})"
        if uri.endswith("/README.md"):
            runs.append(link)
        elif uri.count("/") == 1:  # a record's other pages are linked from it
            studies.append(link)
    return "\n".join(
        [markdown, "", "## Runner records", "", *reversed(runs), "",
         "## Studies", "", *studies, ""]
    )  # fmt: skip


def _first_heading(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None
