"""The torch C2ST (``sbi_allinone.benchmarks.c2st``) against sbi's sklearn MLP C2ST.

Both score the same pairs of 10 000 against 10 000 samples, each with seeds 1 and 2
(the seed draws the folds, the classifiers' initial weights and their batches).
Comparing sklearn's two seeds gives the test's own seed-to-seed spread: the floor
for any comparison of two single runs. The pairs span C2ST 0.5 to
1.0 on six tasks of dimension 2 to 10: sbibm's reference posterior samples of
observation 1 against

- posteriors of sbi's NPE (MAF), NPE (NSF) and FMPE, trained on the runner's
  simulations of that task (``cell_simulations``) at 1 000 simulations, and of NPE
  (MAF) at 100 simulations;
- the reference blurred by Gaussian noise of half its per-dimension standard
  deviation, and the prior (scores near 1);

plus pairs drawn from one distribution: two independent sets of NPE (MAF) samples.
Times are in ``c2st_speed.py``, measured on a quiet machine.

    cd docs/benchmarks
    python c2st_validation.py            # resumes; writes c2st_validation.md/.png

Samples and scores are cached in ``results/c2st_validation/`` (from the project
root), so an interrupted run resumes where it stopped; each scorer's rows are in a
file of their own (``sklearn.csv``, ``torch.csv``), so that the torch C2ST can be
re-scored after a change of its code without repeating the slow sklearn runs.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from sbi.utils.metrics import c2st as sklearn_c2st

from sbi_allinone.benchmarks import Cell, cell_simulations, get_method, get_task
from sbi_allinone.benchmarks.c2st import C2ST_SEED, SBIBM_SETTINGS, c2st

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
SEEDS = (1, 2)
SCORERS = ("sklearn", "torch")


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


def _scores_file(scorer: str) -> Path:
    return CACHE / f"{scorer}.csv"


def _read(scorer: str) -> dict[tuple[str, str], dict]:
    path = _scores_file(scorer)
    if not path.exists():
        return {}
    with path.open() as f:
        return {(row["task"], row["kind"]): row for row in csv.DictReader(f)}


def score_all() -> None:
    """Score every pair with both implementations and both seeds; each scorer's
    rows are cached in its own file (delete ``torch.csv`` to re-score with changed
    code: the sklearn rows, the slow part, stay)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    columns = ["task", "dim", "kind"]
    columns += [f"seed_{seed}{suffix}" for seed in SEEDS for suffix in ("", "_s")]
    for task_name in TASKS:
        for kind, (X, Y) in pairs_of(task_name).items():
            for scorer in SCORERS:
                if (task_name, kind) in _read(scorer):
                    continue
                row = {"task": task_name, "dim": X.shape[1], "kind": kind}
                for seed in SEEDS:
                    start = time.perf_counter()
                    if scorer == "sklearn":
                        value = float(sklearn_c2st(X, Y, seed=seed, classifier="mlp"))
                    else:
                        value = c2st(X, Y, seed=seed)
                    row[f"seed_{seed}"] = round(value, 5)
                    row[f"seed_{seed}_s"] = round(time.perf_counter() - start, 2)
                _log(scorer, row)
                path = _scores_file(scorer)
                new = not path.exists()
                with path.open("a", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=columns)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)


# sbibm.metrics.c2st's classifier: scikit-learn's defaults with max_iter=10000.
SBIBM_KWARGS = {"activation": "relu", "max_iter": 10_000, "solver": "adam"}
SBIBM_PAIRS = (
    ("two_moons", "npe_1000"),
    ("slcp", "npe_1000"),
    ("gaussian_linear", "npe_1000"),
)
SBIBM_SAMPLES = 3000  # sklearn runs up to 10 000 epochs here


def sbibm_variant() -> list[dict]:
    """sbibm's own C2ST (no early stopping) by sklearn and by torch
    (``SBIBM_SETTINGS``), and sbi's early-stopped one by torch, on three pairs of
    3 000 against 3 000 samples; cached in ``sbibm_variant.csv``."""
    path = CACHE / "sbibm_variant.csv"
    rows = []
    if path.exists():
        with path.open() as f:
            rows = list(csv.DictReader(f))
    for task_name, kind in SBIBM_PAIRS[len(rows) :]:
        X, Y = pairs_of(task_name)[kind]
        X, Y = X[:SBIBM_SAMPLES], Y[:SBIBM_SAMPLES]
        width = 10 * X.shape[1]
        kwargs = {**SBIBM_KWARGS, "hidden_layer_sizes": (width, width)}
        row = {"task": task_name, "dim": X.shape[1], "kind": kind}
        scorers = {
            "sklearn_sbibm": partial(
                sklearn_c2st, classifier="mlp", classifier_kwargs=kwargs
            ),
            "torch_sbibm": partial(c2st, settings=SBIBM_SETTINGS),
            "torch_sbi": c2st,
        }
        for name, score in scorers.items():
            start = time.perf_counter()
            row[name] = round(float(score(X, Y, seed=C2ST_SEED)), 5)
            row[f"{name}_s"] = round(time.perf_counter() - start, 1)
        _log("sbibm variant", row)
        rows.append(row)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)
    return rows


def _mad(a: list[float], b: list[float]) -> float:
    return statistics.fmean(abs(x - y) for x, y in zip(a, b, strict=True))


def merged_rows() -> list[dict]:
    """One row per pair scored by both: ``sklearn_1``, ``torch_2``, ... ."""
    theirs, ours = _read("sklearn"), _read("torch")
    rows = []
    for key in theirs.keys() & ours.keys():
        row = {"task": key[0], "kind": key[1], "dim": int(theirs[key]["dim"])}
        for scorer, scores in (("sklearn", theirs[key]), ("torch", ours[key])):
            for seed in SEEDS:
                row[f"{scorer}_{seed}"] = float(scores[f"seed_{seed}"])
        rows.append(row)
    order = {task: i for i, task in enumerate(TASKS)}
    return sorted(rows, key=lambda r: (order[r["task"]], r["kind"]))


def write_report(variant: list[dict]) -> None:
    rows = merged_rows()
    column = {
        f"{s}_{seed}": [r[f"{s}_{seed}"] for r in rows]
        for s in SCORERS
        for seed in SEEDS
    }
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
    seed_noise = [b - a for a, b in zip(theirs, column["sklearn_2"], strict=True)]
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
        "| sklearn seed 2 − sklearn seed 1 (the test's own seed noise) | "
        f"{_mad(column['sklearn_2'], theirs):.4f} | "
        f"{statistics.fmean(seed_noise):+.4f} |",
        f"| torch seed 2 − torch seed 1 | {_mad(column['torch_2'], ours):.4f} | "
        f"{statistics.fmean(column['torch_2']) - statistics.fmean(ours):+.4f} |",
        "| torch − sklearn, each averaged over both seeds | "
        f"{statistics.fmean(abs(d) for d in averaged):.4f} | "
        f"{statistics.fmean(averaged):+.4f} ± {sem:.4f} (standard error) |",
        "",
        f"Largest |torch − sklearn| at seed 1: {max(abs(d) for d in diffs):.4f}; "
        f"largest |sklearn seed 2 − seed 1|: {max(abs(d) for d in seed_noise):.4f}.",
        "",
        "| task | dim | pair | sklearn 1 | sklearn 2 | torch 1 | torch 2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['dim']} | {r['kind']} | {r['sklearn_1']:.4f} | "
            f"{r['sklearn_2']:.4f} | {r['torch_1']:.4f} | {r['torch_2']:.4f} |"
        )
    lines += [
        "",
        "## sbibm's own C2ST (`SBIBM_SETTINGS`, runner classifier `mlp_sbibm`)",
        "",
        "sbibm scored its published numbers without early stopping (scikit-learn's "
        "defaults, `max_iter=10000`: training stops when the training loss has not "
        f"improved by 1e-4 for 10 epochs). {SBIBM_SAMPLES} against {SBIBM_SAMPLES} "
        "samples of the first pairs above, seed 1, seconds in brackets (measured "
        "beside other benchmark processes: see `c2st_speed.md` for times). In ten "
        "dimensions sbibm's classifier, trained until its training loss stalls, "
        "overfits and reads lower than sbi's early-stopped one:",
        "",
        "| task | dim | pair | sklearn, sbibm's | torch, sbibm's | torch, sbi's |",
        "|---|---|---|---|---|---|",
    ]
    for v in variant:
        lines.append(
            f"| {v['task']} | {v['dim']} | {v['kind']} | "
            + " | ".join(
                f"{float(v[k]):.4f} ({float(v[k + '_s']):.0f} s)"
                for k in ("sklearn_sbibm", "torch_sbibm", "torch_sbi")
            )
            + " |"
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
    write_report(sbibm_variant())
