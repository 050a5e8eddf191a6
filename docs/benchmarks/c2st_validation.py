"""The torch C2ST (``sbi_allinone.benchmarks.c2st``) against sbi's sklearn MLP C2ST.

Both score the same pairs of 10 000 against 10 000 samples, each with seeds 1 and 2
(the seed draws the folds, the classifiers' initial weights and their batches), one
after the other in one process (so both see the same machine load), and the time of
each is recorded. Comparing sklearn's two seeds gives the test's own seed-to-seed
spread: the floor for any comparison of two single runs. The pairs span C2ST 0.5 to
1.0 on six tasks of dimension 2 to 10: sbibm's reference posterior samples of
observation 1 against

- posteriors of sbi's NPE (MAF), NPE (NSF) and FMPE, trained on the runner's
  simulations of that task (``cell_simulations``) at 1 000 simulations, and of NPE
  (MAF) at 100 simulations;
- the reference blurred by Gaussian noise of half its per-dimension standard
  deviation, and the prior (scores near 1);

plus pairs drawn from one distribution: two independent sets of NPE (MAF) samples.
Each task's pairs are then scored again all at once with ``c2st_batch``, as the
runner scores a cell's observations, to time that mode.

    cd docs/benchmarks
    python c2st_validation.py            # resumes; writes c2st_validation.md/.png

Samples and scores are cached in ``results/c2st_validation/`` (from the project
root), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from pathlib import Path

import torch
from sbi.utils.metrics import c2st as sklearn_c2st

from sbi_allinone.benchmarks import Cell, cell_simulations, get_method, get_task
from sbi_allinone.benchmarks.c2st import c2st, c2st_batch

TASKS = (
    "two_moons",
    "gaussian_mixture",
    "sir",
    "slcp",
    "gaussian_linear",
    "bernoulli_glm",
)
# (kind, method, budget): posteriors of trained methods against the reference.
TRAINED = (
    ("npe_1000", "npe", 1000),
    ("npe_nsf_1000", "npe_nsf", 1000),
    ("fmpe_1000", "fmpe", 1000),
    ("npe_100", "npe", 100),
)
NUM_SAMPLES = 10_000
HERE = Path(__file__).parent
CACHE = HERE.parent.parent / "results" / "c2st_validation"
SCORES = CACHE / "scores.csv"
SEEDS = (1, 2)
SCORERS = ("sklearn", "torch")
COLUMNS = (
    "task", "dim", "kind",
    *(f"{scorer}_{seed}" for seed in SEEDS for scorer in SCORERS),
    *(f"{scorer}_{seed}_s" for seed in SEEDS for scorer in SCORERS),
)  # fmt: skip


def _log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def posterior_samples(task_name: str, method: str, budget: int) -> torch.Tensor:
    """``2 * NUM_SAMPLES`` posterior samples at observation 1, cached."""
    path = CACHE / f"{task_name}_{method}_{budget}.pt"
    if path.exists():
        return torch.load(path)
    task = get_task(task_name)
    theta, x = cell_simulations(Cell(task_name, method, budget, 1), task)
    torch.manual_seed(1)
    _log(f"training {method} on {task_name} at {budget}")
    posterior = get_method(method).fit(theta, x, task.prior).posterior
    samples = posterior.sample(
        (2 * NUM_SAMPLES,), x=task.get_observation(1), show_progress_bars=False
    ).detach()
    torch.save(samples, path)
    return samples


def pairs_of(task_name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The task's pairs by kind: (reference or first set, second set)."""
    task = get_task(task_name)
    reference = task.get_reference_posterior_samples(1)[:NUM_SAMPLES]
    pairs = {}
    for kind, method, budget in TRAINED:
        pairs[kind] = (reference, posterior_samples(task_name, method, budget)[::2])
    npe = posterior_samples(task_name, "npe", 1000)
    pairs["same_npe_1000"] = (npe[::2], npe[1::2])
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(reference.shape, generator=generator)
    pairs["blur_0.5"] = (reference, reference + 0.5 * reference.std(0) * noise)
    torch.manual_seed(3)
    pairs["prior"] = (reference, task.prior.sample((NUM_SAMPLES,)))
    return pairs


def done() -> set[tuple[str, str]]:
    if not SCORES.exists():
        return set()
    with SCORES.open() as f:
        return {(row["task"], row["kind"]) for row in csv.DictReader(f)}


def score_all() -> None:
    """Score every pair with both implementations; append rows as they finish."""
    CACHE.mkdir(parents=True, exist_ok=True)
    finished = done()
    for task_name in TASKS:
        for kind, (X, Y) in pairs_of(task_name).items():
            if (task_name, kind) in finished:
                continue
            row = {"task": task_name, "dim": X.shape[1], "kind": kind}
            for seed in SEEDS:
                for scorer in SCORERS:
                    start = time.perf_counter()
                    if scorer == "sklearn":
                        value = float(sklearn_c2st(X, Y, seed=seed, classifier="mlp"))
                    else:
                        value = c2st(X, Y, seed=seed)
                    row[f"{scorer}_{seed}"] = round(value, 5)
                    row[f"{scorer}_{seed}_s"] = round(time.perf_counter() - start, 2)
            _log(row)
            new = not SCORES.exists()
            with SCORES.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow(row)


def batched_times() -> dict[str, tuple[int, float]]:
    """Per task: number of pairs and seconds to score them all with ``c2st_batch``."""
    path = CACHE / "batched.csv"
    times = {}
    if path.exists():
        with path.open() as f:
            times = {
                r["task"]: (int(r["pairs"]), float(r["s"])) for r in csv.DictReader(f)
            }
    for task_name in TASKS:
        if task_name in times:
            continue
        pairs = list(pairs_of(task_name).values())
        start = time.perf_counter()
        c2st_batch(pairs, seed=1)
        times[task_name] = (len(pairs), time.perf_counter() - start)
        _log(task_name, "batched", times[task_name])
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("task", "pairs", "s"))
            writer.writerows((t, n, round(s, 2)) for t, (n, s) in times.items())
    return times


def _mad(a: list[float], b: list[float]) -> float:
    return statistics.fmean(abs(x - y) for x, y in zip(a, b, strict=True))


def write_report(batched: dict[str, tuple[int, float]]) -> None:
    with SCORES.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in COLUMNS[3:]:
            row[key] = float(row[key])
    column = {key: [r[key] for r in rows] for key in COLUMNS[3:]}
    ours, theirs = column["torch_1"], column["sklearn_1"]
    diffs = [a - b for a, b in zip(ours, theirs, strict=True)]
    mean_of = {
        s: [
            (a + b) / 2 for a, b in zip(column[f"{s}_1"], column[f"{s}_2"], strict=True)
        ]
        for s in SCORERS
    }
    averaged = [
        a - b for a, b in zip(mean_of["torch"], mean_of["sklearn"], strict=True)
    ]
    sem = statistics.stdev(averaged) / len(averaged) ** 0.5
    lines = [
        "# Torch C2ST against sbi's sklearn MLP C2ST",
        "",
        "```",
        "cd docs/benchmarks && python c2st_validation.py",
        "```",
        "",
        f"{len(rows)} pairs of 10 000 against 10 000 samples (six tasks, dimensions "
        f"2 to 10), each scored by both with seeds 1 and 2; sklearn's C2ST from "
        f"{min(theirs):.3f} to {max(theirs):.3f}.",
        "",
        "| comparison | mean absolute difference | mean difference |",
        "|---|---|---|",
        "| torch seed 1 − sklearn seed 1 (as the runner scores) | "
        f"{_mad(ours, theirs):.4f} | {statistics.fmean(diffs):+.4f} |",
        f"| sklearn seed 2 − sklearn seed 1 (the test's own seed noise) | "
        f"{_mad(column['sklearn_2'], theirs):.4f} | "
        f"{statistics.fmean(column['sklearn_2']) - statistics.fmean(theirs):+.4f} |",
        f"| torch seed 2 − torch seed 1 | {_mad(column['torch_2'], ours):.4f} | "
        f"{statistics.fmean(column['torch_2']) - statistics.fmean(ours):+.4f} |",
        f"| torch − sklearn, each averaged over both seeds | "
        f"{statistics.fmean(abs(d) for d in averaged):.4f} | "
        f"{statistics.fmean(averaged):+.4f} ± {sem:.4f} (standard error) |",
        "",
        f"Largest |torch − sklearn| at seed 1: {max(abs(d) for d in diffs):.4f}.",
        "",
        "Time, one pair at a time (both in the same process, one after the other; "
        "sums over both seeds):",
        "",
        "| dim | pairs | sklearn s | torch s | sklearn / torch |",
        "|---|---|---|---|---|",
    ]

    def seconds(group, scorer):
        return sum(r[f"{scorer}_{seed}_s"] for r in group for seed in SEEDS)

    for dim in sorted({int(r["dim"]) for r in rows}):
        group = [r for r in rows if int(r["dim"]) == dim]
        slow, fast = seconds(group, "sklearn"), seconds(group, "torch")
        lines.append(
            f"| {dim} | {len(group)} | {slow:.0f} | {fast:.0f} | {slow / fast:.1f} |"
        )
    lines += [
        "",
        "Time with each task's pairs scored together, seed 1 (`c2st_batch`, as the "
        "runner scores a cell's observations), against sklearn's seed-1 time:",
        "",
        "| task | dim | pairs | sklearn s | torch batched s | sklearn / torch |",
        "|---|---|---|---|---|---|",
    ]
    for task_name, (count, batch_seconds) in batched.items():
        group = [r for r in rows if r["task"] == task_name]
        slow = sum(r["sklearn_1_s"] for r in group)
        lines.append(
            f"| {task_name} | {int(group[0]['dim'])} | {count} | {slow:.0f} | "
            f"{batch_seconds:.0f} | {slow / batch_seconds:.1f} |"
        )
    lines += [
        "",
        "| task | dim | pair | sklearn 1 | sklearn 2 | torch 1 | torch 2 | "
        "sklearn s | torch s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {int(r['dim'])} | {r['kind']} | {r['sklearn_1']:.4f} | "
            f"{r['sklearn_2']:.4f} | {r['torch_1']:.4f} | {r['torch_2']:.4f} | "
            f"{r['sklearn_1_s'] + r['sklearn_2_s']:.0f} | "
            f"{r['torch_1_s'] + r['torch_2_s']:.0f} |"
        )
    (HERE / "c2st_validation.md").write_text("\n".join(lines) + "\n")
    plot(rows, mean_of, averaged)


def plot(rows: list[dict], mean_of: dict, averaged: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    for dim in sorted({int(r["dim"]) for r in rows}):
        group = [r for r in rows if int(r["dim"]) == dim]
        left.scatter(
            [r["sklearn_1"] for r in group], [r["torch_1"] for r in group],
            s=14, label=f"dim {dim}",
        )  # fmt: skip
    left.plot([0.5, 1], [0.5, 1], color="grey", lw=0.8)
    left.set_xlabel("sklearn MLP C2ST (sbi), seed 1")
    left.set_ylabel("torch MLP C2ST (ours), seed 1")
    left.legend(fontsize=8)
    right.scatter(
        mean_of["sklearn"], averaged, s=14, color="k", label="torch − sklearn"
    )
    noise = [r["sklearn_2"] - r["sklearn_1"] for r in rows]
    right.scatter(
        mean_of["sklearn"], noise, s=14, marker="x", color="tab:red",
        label="sklearn seed 2 − seed 1",
    )  # fmt: skip
    right.axhline(0, color="grey", lw=0.8)
    for bound in (-0.01, 0.01):
        right.axhline(bound, color="grey", lw=0.8, ls="--")
    right.set_xlabel("sklearn MLP C2ST, mean of seeds 1 and 2")
    right.set_ylabel("difference (black: seed means)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "c2st_validation.png", dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(2)
    score_all()
    write_report(batched_times())
