"""Plots of a benchmark report: C2ST against the simulation budget, one figure per task.

:func:`plot_c2st` draws each method's mean ± sd over observations and, for the MLP
classifiers, sbibm's published curves of the chosen algorithms; used by
:func:`sbi_allinone.benchmarks.report.write_report`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from sbi_allinone.benchmarks.published import published_summary

if TYPE_CHECKING:  # matplotlib is imported only when plotting
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap

__all__ = ["plot_c2st"]

# The published numbers were scored by sbibm's MLP C2ST.
MLP_CLASSIFIERS = ("mlp", "mlp_sbibm", "mlp_sklearn")


def plot_c2st(
    summary: list[dict],
    out_dir: str | Path,
    prefix: str = "",
    published: tuple[str, ...] = (),
) -> list[Path]:
    """Save one C2ST-vs-budget plot per task (``<prefix>c2st_<task>.png``).

    Args:
        summary: Output of :func:`summarize`.
        out_dir: Folder for the PNG files.
        prefix: File-name prefix (``"likelihood_"`` for likelihood rows).
        published: sbibm algorithms whose published curves (mean ± sd over
            observations) are drawn too, dashed; only on MLP C2ST plots.

    Returns:
        Paths of the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One classifier per plot: the first, alphabetically (mlp before rf).
    shown = min(s["classifier"] for s in summary)
    curves = (
        published_summary(published) if published and shown in MLP_CLASSIFIERS else {}
    )
    by_task: dict[str, list[dict]] = defaultdict(list)
    for s in summary:
        if s["classifier"] == shown:
            by_task[s["task"]].append(s)
    paths = []
    for task, entries in by_task.items():
        fig, ax = plt.subplots(figsize=(6.5, 3.8) if curves else (4.5, 3.5))
        _plot_methods(ax, entries)
        _plot_published(ax, task, curves, published, plt.get_cmap("Dark2"))
        _label_axes(ax, task, entries[0]["classifier"], prefix, beside=bool(curves))
        fig.tight_layout()
        path = Path(out_dir) / f"{prefix}c2st_{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_methods(ax: Axes, entries: list[dict]) -> None:
    """One C2ST-vs-budget curve (mean ± sd) per method of one task's entries."""
    for method in sorted({e["method"] for e in entries}):
        points = sorted(
            (e["budget"], e["c2st_mean"], e["c2st_sd"])
            for e in entries
            if e["method"] == method
        )
        budgets, means, sds = zip(*points, strict=True)
        ax.errorbar(
            budgets, means, yerr=sds, marker="o", capsize=3, lw=2, label=method,
            zorder=3,
        )  # fmt: skip


def _plot_published(
    ax: Axes,
    task: str,
    curves: dict,
    published: tuple[str, ...],
    colors: Colormap,
) -> None:
    """sbibm's published curves of ``task`` (dashed), one color per algorithm;
    algorithms without numbers for the task keep their color but draw nothing."""
    for k, algorithm in enumerate(published):
        points = sorted(
            (budget, c["mean"], c["sd"])
            for (t, budget, a), c in curves.items()
            if t == task and a == algorithm
        )
        if not points:
            continue
        budgets, means, sds = zip(*points, strict=True)
        ax.errorbar(
            budgets, means, yerr=sds, ls="--", lw=0.8, marker="x", ms=4,
            capsize=2, alpha=0.6, color=colors(k % 8),
            label=f"sbibm {algorithm}",
        )  # fmt: skip


def _label_axes(
    ax: Axes,
    task: str,
    classifier: str,
    prefix: str,
    beside: bool,
) -> None:
    """Scales, chance line, labels, title and legend (``beside`` the plot when
    published curves make it long)."""
    ax.set_xscale("log")
    ax.set_ylim(0.45, 1.02)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("number of simulations")
    ax.set_ylabel(f"C2ST ({classifier})")
    ax.set_title(task if not prefix else f"{task} ({prefix.rstrip('_')})")
    if beside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(fontsize=8)
