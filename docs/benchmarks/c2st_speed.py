"""Time of the torch C2ST against sbi's sklearn MLP C2ST. Run it on a quiet machine.

For two_moons (2 dimensions), slcp (5), gaussian_linear and bernoulli_glm (10): the
method posteriors of ``c2st_validation.py`` (NPE with MAF and NSF, FMPE at 1 000
simulations, NPE at 100) against sbibm's reference, 10 000 against 10 000 samples,
the runner's C2ST seed (``C2ST_SEED``), each pair scored by sklearn and then by torch
(so both see the same load), and then the task's pairs all at once by
``c2st_batch``, as the runner scores a cell's observations. sklearn uses the BLAS's
default threads (here, 2); torch is timed with the caller's threads at 2, and at 1.
The torch C2ST itself drops to one thread up to 10 dimensions (100 hidden units), so
there the two torch columns time the same thing; ``c2st_speed.md`` was measured
before that choice, which it informed.

    cd docs/benchmarks
    python c2st_validation.py   # first: it draws and caches the samples
    python c2st_speed.py        # writes c2st_speed.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from c2st_validation import pairs_of
from sbi.utils.metrics import c2st as sklearn_c2st

from sbi_allinone.benchmarks.c2st import C2ST_SEED, c2st, c2st_batch

TASKS = ("two_moons", "slcp", "gaussian_linear", "bernoulli_glm")
KINDS = ("npe_1000", "npe_nsf_1000", "fmpe_1000", "npe_100")
HERE = Path(__file__).parent


def _timed(function, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated posteriors to time per task (default: all four)",
    )
    kinds = tuple(parser.parse_args().kinds.split(","))
    lines = [
        "# Time of the torch C2ST against sbi's sklearn MLP C2ST",
        "",
        "```",
        f"cd docs/benchmarks && python c2st_speed.py --kinds {','.join(kinds)}",
        "```",
        "",
        f"Started {time.strftime('%Y-%m-%d %H:%M')}, torch threads: "
        f"{torch.get_num_threads()}. Seconds per pair of 10 000 against 10 000 "
        f"samples, seed {C2ST_SEED}.",
        "",
        "| task | dim | pair | sklearn C2ST | torch C2ST | sklearn s | torch s | "
        "torch s, 1 thread | sklearn / torch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for task_name in TASKS:
        pairs = pairs_of(task_name)
        slow_total = fast_total = 0.0
        for kind in kinds:
            X, Y = pairs[kind]
            theirs, slow = _timed(sklearn_c2st, X, Y, seed=C2ST_SEED, classifier="mlp")
            ours, fast = _timed(c2st, X, Y, seed=C2ST_SEED)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            _, single = _timed(c2st, X, Y, seed=C2ST_SEED)
            torch.set_num_threads(threads)
            slow_total, fast_total = slow_total + slow, fast_total + fast
            lines.append(
                f"| {task_name} | {X.shape[1]} | {kind} | {float(theirs):.4f} | "
                f"{ours:.4f} | {slow:.1f} | {fast:.1f} | {single:.1f} | "
                f"{slow / fast:.1f} |"
            )
            print(lines[-1], flush=True)
        _, batched = _timed(c2st_batch, [pairs[k] for k in kinds], seed=C2ST_SEED)
        summary.append(
            (task_name, pairs[kinds[0]][0].shape[1], slow_total, fast_total, batched)
        )
    lines += [
        "",
        f"Per task, the {len(kinds)} pairs: one at a time, and all at once "
        "(`c2st_batch`, as the runner scores a cell's observations).",
        "",
        "| task | dim | sklearn s | torch s | torch together s | sklearn / torch | "
        "sklearn / torch together |",
        "|---|---|---|---|---|---|---|",
    ]
    for task_name, dim, slow, fast, batched in summary:
        lines.append(
            f"| {task_name} | {dim} | {slow:.0f} | {fast:.0f} | {batched:.0f} | "
            f"{slow / fast:.1f} | {slow / batched:.1f} |"
        )
    ratios = [slow / fast for _, dim, slow, fast, _ in summary if dim == 10]
    lines += [
        "",
        f"10 dimensions, one pair at a time: sklearn / torch = "
        f"{statistics.fmean(ratios):.1f} (mean over the two tasks).",
    ]
    (HERE / "c2st_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
