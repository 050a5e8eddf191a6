"""Execute the tutorials at their full budget and commit them with their outputs.

Run from the repository's root (each notebook takes minutes to tens of minutes):

    python docs/execute_tutorials.py                        # every tutorial
    python docs/execute_tutorials.py tutorials/01_simformer_quickstart.ipynb

Each notebook is executed in place, in `tutorials/`, with
`SBI_ALLINONE_TUTORIAL_BUDGET=full` and one torch thread per process, and written back
with its outputs. Its metadata records the budget, the commit, the execution time and
a hash of its code cells; the test suite checks that the hash still matches, so a
notebook whose code changed after it was executed fails until it is executed again.
Cells tagged `readme-figure` also write their first image to
`docs/figures/<notebook stem>.png` (the figures of the README and of the site).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
METADATA_KEY = "sbi_allinone"


def code_hash(notebook: nbformat.NotebookNode) -> str:
    """SHA-256 of a notebook's code cells (their sources, in order)."""
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def execute(path: Path, budget: str, timeout: int) -> float:
    """Execute one notebook in place and return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["SBI_ALLINONE_TUTORIAL_BUDGET"] = budget
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # tqdm would warn in every notebook that ipywidgets is missing; text bars are
    # what a static page can show.
    os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        coalesce_streams=True,
        record_timing=False,
    ).execute()
    seconds = time.perf_counter() - start
    notebook.metadata[METADATA_KEY] = {
        "budget": budget,
        "code_sha256": code_hash(notebook),
        "commit": _commit(),
        "executed": datetime.date.today().isoformat(),
        "seconds": round(seconds),
    }
    nbformat.write(notebook, path)
    _save_readme_figures(notebook, path.stem)
    return seconds


def _save_readme_figures(notebook: nbformat.NotebookNode, stem: str) -> None:
    tagged = [
        cell
        for cell in notebook.cells
        if "readme-figure" in cell.get("metadata", {}).get("tags", [])
    ]
    for cell in tagged[:1]:
        images = [
            output["data"]["image/png"]
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})
        ]
        if not images:
            raise RuntimeError(f"{stem}: the cell tagged readme-figure drew no image.")
        FIGURES.mkdir(parents=True, exist_ok=True)
        (FIGURES / f"{stem}.png").write_bytes(base64.b64decode(images[0]))


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument(
        "--budget",
        default="full",
        choices=["full", "small"],
        help="'small' is the test suite's budget (for trying this script quickly)",
    )
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds a cell")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    notebooks = args.notebooks or sorted((ROOT / "tutorials").glob("*.ipynb"))
    for path in notebooks:
        print(f"{path.name}: executing ({args.budget} budget)", flush=True)
        seconds = execute(path.resolve(), args.budget, args.timeout)
        print(f"{path.name}: done in {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
