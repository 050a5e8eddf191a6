"""The documentation site builds strictly and documents every public name."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs/hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        warnings or result.stderr.splitlines()[-30:]
    )
    return site_dir


def test_site_builds_strictly(site):
    assert (site / "index.html").exists()
    assert (site / "api" / "simformer" / "index.html").exists()


def test_every_public_name_is_rendered_in_the_api_reference(site):
    hooks = _load_hooks()
    rendered = hooks.rendered_objects(site)
    names = hooks.public_names()
    assert "sbi_allinone.Simformer" in names
    missing = [name for name, obj in names.items() if id(obj) not in rendered]
    assert not missing


def test_tutorials_are_pages_with_their_figures(site):
    pages = sorted((site / "tutorials").glob("*/index.html"))
    assert len(pages) == len(list((ROOT / "tutorials").glob("*.ipynb")))
    for page in pages:
        # Output images, not the theme's inline icons.
        images = re.findall(r'<img[^>]*src="data:image/png', page.read_text())
        assert images, f"{page.parent.name} shows no figure"


def test_the_coverage_check_notices_a_missing_name(site, tmp_path):
    hooks = _load_hooks()
    api_copy = tmp_path / "api"
    api_copy.mkdir()
    # Only the INN page: the Simformer's names are then missing.
    (api_copy / "inn.html").write_text((site / "api/inn/index.html").read_text())
    rendered = hooks.rendered_objects(tmp_path)
    names = hooks.public_names()
    assert id(names["sbi_allinone.inn.INN"]) in rendered
    assert id(names["sbi_allinone.simformer.Interval"]) not in rendered
