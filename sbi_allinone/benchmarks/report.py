"""Benchmark report: a markdown table and a C2ST-vs-budget plot per task."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from sbi_allinone.benchmarks.runner import read_results

__all__ = ["plot_c2st", "summarize", "markdown_table", "write_report"]


def summarize(rows: list[dict]) -> list[dict]:
    """Aggregate rows over observations and seeds per task, budget, classifier, method.

    Args:
        rows: Rows as returned by :func:`~sbi_allinone.benchmarks.runner.read_results`.

    Returns:
        One dict per (task, budget, method), sorted, with ``c2st_mean``, ``c2st_sd``
        (over observations and seeds), ``n`` (rows), ``train_time_s`` (mean over
        seeds), ``sample_time_s`` (mean per observation), ``epochs`` (mean) and
        ``classifier``.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        key = (row["task"], row["budget"], row["classifier"], row["method"])
        groups[key].append(row)
    summary = []
    for (task, budget, classifier, method), group in sorted(groups.items()):
        c2sts = [r["c2st"] for r in group if not math.isnan(r["c2st"])]
        per_seed = {r["seed"]: r for r in group}.values()
        summary.append(
            {
                "task": task,
                "budget": budget,
                "method": method,
                "c2st_mean": statistics.fmean(c2sts) if c2sts else math.nan,
                "c2st_sd": statistics.stdev(c2sts) if len(c2sts) > 1 else 0.0,
                "n": len(group),
                "n_failed": len(group) - len(c2sts),
                "train_time_s": statistics.fmean(r["train_time_s"] for r in per_seed),
                "sample_time_s": statistics.fmean(r["sample_time_s"] for r in group),
                "epochs": statistics.fmean(r["epochs"] for r in per_seed),
                "classifier": classifier,
            }
        )
    return summary


def markdown_table(summary: list[dict], baseline: str | None = "npe") -> str:
    """Render a summary as a markdown table.

    Args:
        summary: Output of :func:`summarize`.
        baseline: Method whose times the ratio columns divide by, within the same
            task and budget (shared machines are noisy: ratios travel, seconds do
            not). ``None`` or an absent method omits the ratio columns.

    Returns:
        The table, one line per (task, budget, method).
    """
    base = {
        (s["task"], s["budget"], s["classifier"]): s
        for s in summary
        if s["method"] == baseline
    }
    with_ratio = bool(base)
    several = len({s["classifier"] for s in summary}) > 1
    header = [
        "task",
        "budget",
        *(["classifier"] if several else []),
        "method",
        "C2ST (mean ± sd)",
        "n",
        "train s",
        "sample s",
    ]
    if with_ratio:
        header += [f"train / {baseline}", f"sample / {baseline}"]
    header += ["epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        failed = f" ({s['n_failed']} NaN)" if s["n_failed"] else ""
        cells = [
            s["task"],
            str(s["budget"]),
            *([s["classifier"]] if several else []),
            s["method"],
            f"{s['c2st_mean']:.3f} ± {s['c2st_sd']:.3f}{failed}",
            str(s["n"]),
            f"{s['train_time_s']:.1f}",
            f"{s['sample_time_s']:.2f}",
        ]
        if with_ratio:
            ref = base.get((s["task"], s["budget"], s["classifier"]))
            cells += [
                _ratio(s["train_time_s"], ref and ref["train_time_s"]),
                _ratio(s["sample_time_s"], ref and ref["sample_time_s"]),
            ]
        cells.append(f"{s['epochs']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    classifiers = ", ".join(sorted({s["classifier"] for s in summary}))
    lines.append("")
    lines.append(
        f"C2ST classifier: {classifiers}; sd over observations and seeds; "
        "sample s = seconds per observation."
    )
    return "\n".join(lines)


def _ratio(value: float, reference: float | None) -> str:
    if not reference:
        return "–"
    return f"{value / reference:.2f}"


def plot_c2st(summary: list[dict], out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Save one C2ST-vs-budget plot per task (``<prefix>c2st_<task>.png``).

    Args:
        summary: Output of :func:`summarize`.
        out_dir: Folder for the PNG files.
        prefix: File-name prefix (``"likelihood_"`` for likelihood rows).

    Returns:
        Paths of the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One classifier per plot: the first, alphabetically (mlp before rf).
    shown = min(s["classifier"] for s in summary)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for s in summary:
        if s["classifier"] == shown:
            by_task[s["task"]].append(s)
    paths = []
    for task, entries in by_task.items():
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for method in sorted({e["method"] for e in entries}):
            points = sorted(
                (e["budget"], e["c2st_mean"], e["c2st_sd"])
                for e in entries
                if e["method"] == method
            )
            budgets, means, sds = zip(*points, strict=True)
            ax.errorbar(budgets, means, yerr=sds, marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_ylim(0.45, 1.02)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("number of simulations")
        ax.set_ylabel(f"C2ST ({entries[0]['classifier']})")
        ax.set_title(task if not prefix else f"{task} ({prefix.rstrip('_')})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / f"{prefix}c2st_{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(
    out_dir: str | Path,
    baseline: str | None = "npe",
    observations: Sequence[int] | None = None,
    target: str = "posterior",
    classifier: str | None = None,
) -> str:
    """Summarize a results folder: write ``report.md`` and the plots, return the table.

    The likelihood rows (``target="likelihood"``) go to ``report_likelihood.md`` and
    ``likelihood_c2st_<task>.png``.

    Args:
        out_dir: Results folder of ``sbi-allinone bench``.
        baseline: Method the time ratios divide by (see :func:`markdown_table`).
        observations: Only these observation numbers (default: all rows), so that
            cells run with more observations compare on the same ones.
        target: ``"posterior"`` or ``"likelihood"``.
        classifier: Only rows scored by this C2ST classifier (default: all; the
            plots then use the first classifier of the rows).

    Raises:
        FileNotFoundError: If the folder holds no (selected) results.
    """
    rows = read_results(out_dir, target)
    if observations is not None:
        rows = [row for row in rows if row["observation"] in set(observations)]
    if classifier is not None:
        rows = [row for row in rows if row["classifier"] == classifier]
    if not rows:
        raise FileNotFoundError(
            f"No results in {out_dir!s}: run `sbi-allinone bench` first."
        )
    summary = summarize(rows)
    table = markdown_table(summary, baseline=baseline)
    prefix = "" if target == "posterior" else f"{target}_"
    name = "report.md" if target == "posterior" else f"report_{target}.md"
    (Path(out_dir) / name).write_text(table + "\n")
    plot_c2st(summary, out_dir, prefix)
    return table
