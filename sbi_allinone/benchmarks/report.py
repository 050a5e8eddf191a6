"""Benchmark report: a markdown table and a C2ST-vs-budget plot per task.

Each method is judged against a baseline: by default the strongest NPE the runner has
(``npe_sbibm``, sbibm's settings, if the results hold it; else sbi's default ``npe``).
With ``published=...`` the plots also show sbibm's published curves, and methods that
reproduce a published algorithm (``npe_sbibm``) get a table against it, observation
by observation.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from sbi_allinone.benchmarks.plots import MLP_CLASSIFIERS, plot_c2st
from sbi_allinone.benchmarks.published import (
    REPRODUCES,
    published_summary,
)
from sbi_allinone.benchmarks.results import read_results

__all__ = [
    "BASELINES",
    "markdown_table",
    "plot_c2st",
    "plot_prefix",
    "published_table",
    "report_name",
    "summarize",
    "write_report",
]

# The default baseline: the first of these the results hold.
BASELINES = ("npe_sbibm", "npe")
# Published rows agree with ours if the means differ by at most this, or by at most
# the published standard deviation over observations.
AGREEMENT = 0.03


def summarize(rows: list[dict]) -> list[dict]:
    """Aggregate rows over observations and seeds per task, budget, classifier, method.

    Args:
        rows: Rows as returned by :func:`~sbi_allinone.benchmarks.results.read_results`.

    Returns:
        One dict per (task, budget, method), sorted, with ``c2st_mean``, ``c2st_sd``
        (over observations and seeds), ``n`` (rows), ``train_time_s`` (mean over
        seeds), ``sample_time_s`` and ``c2st_time_s`` (means per observation; NaN
        for rows from before the scoring time was recorded), ``epochs`` (mean) and
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
                "c2st_time_s": statistics.fmean(r["c2st_time_s"] for r in group),
                "epochs": statistics.fmean(r["epochs"] for r in per_seed),
                "classifier": classifier,
            }
        )
    return summary


def markdown_table(summary: list[dict], baseline: str | None = "npe") -> str:
    """Render a summary as a markdown table.

    Args:
        summary: Output of :func:`summarize`.
        baseline: Method each row is compared with, within the same task, budget
            and classifier: the difference of mean C2ST and the time ratios
            (shared machines are noisy: ratios travel, seconds do not). ``None`` or
            an absent method omits those columns.

    Returns:
        The table, one line per (task, budget, method).
    """
    base = {
        (s["task"], s["budget"], s["classifier"]): s
        for s in summary
        if s["method"] == baseline
    }
    # Without a baseline row the comparison columns would be all dashes: drop them.
    compare = baseline if base else None
    several = len({s["classifier"] for s in summary}) > 1
    header = _table_header(compare, several)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        reference = base.get((s["task"], s["budget"], s["classifier"]))
        cells = _table_row(s, reference, compare is not None, several)
        lines.append("| " + " | ".join(cells) + " |")
    classifiers = ", ".join(sorted({s["classifier"] for s in summary}))
    lines.append("")
    lines.append(
        f"C2ST classifier: {classifiers}; sd over observations and seeds; "
        "sample s and C2ST s = seconds per observation."
    )
    return "\n".join(lines)


def _table_header(baseline: str | None, several: bool) -> list[str]:
    """Column names of :func:`markdown_table`; ``baseline`` adds the comparisons,
    ``several`` (classifiers) the classifier column."""
    header = [
        "task",
        "budget",
        *(["classifier"] if several else []),
        "method",
        "C2ST (mean ± sd)",
        "n",
    ]
    if baseline is not None:
        header += [f"C2ST − {baseline}"]
    header += ["train s", "sample s", "C2ST s"]
    if baseline is not None:
        header += [f"train / {baseline}", f"sample / {baseline}"]
    return header + ["epochs"]


def _table_row(
    s: dict, reference: dict | None, compare: bool, several: bool
) -> list[str]:
    """One summary entry's cells; ``reference``: the baseline's entry of the same
    task, budget and classifier, if any (else the comparisons are dashes)."""
    failed = f" ({s['n_failed']} NaN)" if s["n_failed"] else ""
    cells = [
        s["task"],
        str(s["budget"]),
        *([s["classifier"]] if several else []),
        s["method"],
        f"{s['c2st_mean']:.3f} ± {s['c2st_sd']:.3f}{failed}",
        str(s["n"]),
    ]
    if compare:
        cells.append(
            f"{s['c2st_mean'] - reference['c2st_mean']:+.3f}" if reference else "–"
        )
    cells += [
        f"{s['train_time_s']:.1f}",
        f"{s['sample_time_s']:.2f}",
        "–" if math.isnan(s["c2st_time_s"]) else f"{s['c2st_time_s']:.1f}",
    ]
    if compare:
        cells += [
            _ratio(s["train_time_s"], reference and reference["train_time_s"]),
            _ratio(s["sample_time_s"], reference and reference["sample_time_s"]),
        ]
    return cells + [f"{s['epochs']:.0f}"]


def _ratio(value: float, reference: float | None) -> str:
    if not reference:
        return "–"
    return f"{value / reference:.2f}"


def published_table(rows: list[dict]) -> str:
    """Our methods that reproduce a published sbibm algorithm, against it.

    For each (task, budget) of a method in :data:`REPRODUCES` scored by an MLP
    C2ST: our mean, the published mean over the same observations (± the
    published standard deviation over all its observations), the paired difference
    (mean ± standard error over observations), and whether the means agree (within
    :data:`AGREEMENT`, or within the published standard deviation).

    Args:
        rows: Results rows (see :func:`~sbi_allinone.benchmarks.results.read_results`).

    Returns:
        A markdown table, or an empty string if no row reproduces a published
        algorithm.
    """
    published = published_summary(tuple(sorted(set(REPRODUCES.values()))))
    lines = []
    for key, ours in sorted(_reproductions(rows).items()):
        task, budget, method, _ = key
        theirs = published.get((task, budget, REPRODUCES[method]))
        if theirs is not None:
            lines += _published_row(key, ours, theirs)
    if not lines:
        return ""
    return "\n".join(_PUBLISHED_HEADER + lines + _published_footer())


_PUBLISHED_HEADER = [
    "| task | budget | ours | C2ST | published (mean ± sd) | ours − published "
    "(mean ± se) | observations | agrees |",
    "|---|---|---|---|---|---|---|---|",
]


def _published_footer() -> list[str]:
    return [
        "",
        f"Agrees: the means differ by at most {AGREEMENT} or by at most the published "
        "sd over observations. Published: sbibm paper (Lueckmann et al. 2021; "
        "gaussian_mixture: the sbibm authors' re-run), scored by sbibm's own C2ST, "
        "which is `mlp_sbibm` here; `mlp` (sbi's, with early stopping) can read "
        "higher, since sbibm's classifier trains without early stopping and "
        "overfits where the dimension is high.",
    ]


def _reproductions(rows: list[dict]) -> dict[tuple, dict[int, list[float]]]:
    """Finite C2ST values of the methods in :data:`REPRODUCES` scored by an MLP,
    per (task, budget, method, classifier) and observation."""
    groups: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["method"] in REPRODUCES and row["classifier"] in MLP_CLASSIFIERS:
            key = (row["task"], row["budget"], row["method"], row["classifier"])
            if not math.isnan(row["c2st"]):
                groups[key][row["observation"]].append(row["c2st"])
    return groups


def _published_row(key: tuple, ours: dict[int, list[float]], theirs: dict) -> list[str]:
    """The table line of one (task, budget, method, classifier) against the
    published summary ``theirs``, over the observations both have (none: no line).
    """
    task, budget, method, classifier = key
    common = sorted(set(ours) & set(theirs["values"]))
    if not common:
        return []
    mine = [statistics.fmean(ours[o]) for o in common]
    paper = [theirs["values"][o] for o in common]
    differences = [a - b for a, b in zip(mine, paper, strict=True)]
    difference = statistics.fmean(differences)
    error = (
        statistics.stdev(differences) / math.sqrt(len(common))
        if len(common) > 1
        else math.nan
    )
    # The published spread: over all its observations, whichever we ran.
    spread = theirs["sd"]
    agrees = abs(difference) <= max(AGREEMENT, spread)
    return [
        f"| {task} | {budget} | {method} ({classifier}) | "
        f"{statistics.fmean(mine):.3f} | {REPRODUCES[method]} "
        f"{statistics.fmean(paper):.3f} ± {spread:.3f} | "
        f"{difference:+.3f} ± {error:.3f} | {len(common)} | "
        f"{'yes' if agrees else '**no**'} |"
    ]


def write_report(
    out_dir: str | Path,
    baseline: str | None = "auto",
    observations: Sequence[int] | None = None,
    target: str = "posterior",
    classifier: str | None = None,
    published: Sequence[str] = (),
) -> str:
    """Summarize a results folder: write ``report.md`` and the plots, return the table.

    The likelihood rows (``target="likelihood"``) go to ``report_likelihood.md`` and
    ``likelihood_c2st_<task>.png``.

    Args:
        out_dir: Results folder of ``sbi-allinone bench``.
        baseline: Method the C2ST differences and time ratios refer to (see
            :func:`markdown_table`); ``"auto"``: the first of :data:`BASELINES`
            the rows hold.
        observations: Only these observation numbers (default: all rows), so that
            cells run with more observations compare on the same ones.
        target: ``"posterior"`` or ``"likelihood"``.
        classifier: Only rows scored by this C2ST classifier (default: all; the
            plots then use the first classifier of the rows).
        published: sbibm algorithms (of :data:`PUBLISHED_ALGORITHMS`) to draw on
            the plots; if any, the report also compares the methods that reproduce
            a published algorithm with it (:func:`published_table`).

    Raises:
        FileNotFoundError: If the folder holds no (selected) results.
    """
    published = tuple(published)
    published_summary(published)  # an unknown name raises before any work
    rows = read_results(out_dir, target)
    if observations is not None:
        rows = [row for row in rows if row["observation"] in set(observations)]
    if classifier is not None:
        rows = [row for row in rows if row["classifier"] == classifier]
    if not rows:
        raise FileNotFoundError(
            f"No results in {out_dir!s}: run `sbi-allinone bench` first."
        )
    if baseline == "auto":
        present = {row["method"] for row in rows}
        baseline = next((b for b in BASELINES if b in present), None)
    summary = summarize(rows)
    table = markdown_table(summary, baseline=baseline)
    if published and target == "posterior":
        comparison = published_table(rows)
        if comparison:
            table += "\n\n## Against sbibm's published numbers\n\n" + comparison
    (Path(out_dir) / report_name(target)).write_text(table + "\n")
    shown = published if target == "posterior" else ()
    plot_c2st(summary, out_dir, plot_prefix(target), shown)
    return table


def report_name(target: str = "posterior") -> str:
    """File name of a target's report in a results folder (``report.md`` for
    posteriors, ``report_<target>.md`` otherwise)."""
    return "report.md" if target == "posterior" else f"report_{target}.md"


def plot_prefix(target: str = "posterior") -> str:
    """File-name prefix of a target's plots (none for posteriors)."""
    return "" if target == "posterior" else f"{target}_"
