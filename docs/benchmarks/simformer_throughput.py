"""Training throughput of the Simformer: examples per second at 4, 13 and 20 tokens.

Times ``Simformer(prior).append_simulations(theta, x).train(...)`` through the
public API only (so the same script measures any commit), batch 1 000, on a
Gaussian joint with 2+2, 5+8 and 10+10 variables (the token counts of two_moons,
slcp and gaussian_linear). The first ``--warmup`` steps are run and discarded;
throughput is ``steps * batch / seconds`` of the timed run, best of ``--repeats``.
``--profile TOKENS`` prints torch.profiler's table of one timed run instead;
``--matmul-dtype bfloat16`` trains with bfloat16 matrix products
(``net_kwargs={"matmul_dtype": "bfloat16"}``).

    cd docs/benchmarks
    python simformer_throughput.py --threads 1 --label before > before.txt
    python simformer_throughput.py --threads 1 --label after
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.distributions import MultivariateNormal

from sbi_allinone import Simformer
from sbi_allinone.tracking import NullTracker

SPLITS = {4: (2, 2), 13: (5, 8), 20: (10, 10)}
BATCH = 1_000


def _trainer(tokens: int, matmul_dtype: str) -> Simformer:
    num_parameters, num_data = SPLITS[tokens]
    generator = torch.Generator().manual_seed(tokens)
    prior = MultivariateNormal(torch.zeros(num_parameters), torch.eye(num_parameters))
    theta = torch.randn(4_000, num_parameters, generator=generator)
    mixing = torch.randn(num_parameters, num_data, generator=generator)
    x = theta @ mixing + 0.1 * torch.randn(4_000, num_data, generator=generator)
    trainer = Simformer(
        prior,
        net_kwargs={"matmul_dtype": matmul_dtype},
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    return trainer.append_simulations(theta, x)


def _train_seconds(tokens: int, steps: int, matmul_dtype: str) -> float:
    torch.manual_seed(0)
    trainer = _trainer(tokens, matmul_dtype)
    start = time.perf_counter()
    trainer.train(
        training_batch_size=BATCH,
        num_steps=steps,
        steps_per_epoch=steps // 2,
        stop_after_epochs=10**6,
    )
    return time.perf_counter() - start


def throughput(
    tokens: int, steps: int, warmup: int, repeats: int, matmul_dtype: str = "float32"
) -> float:
    """Examples per second of training at ``tokens`` tokens."""
    _train_seconds(tokens, warmup, matmul_dtype)
    best = min(_train_seconds(tokens, steps, matmul_dtype) for _ in range(repeats))
    return steps * BATCH / best


def profile(tokens: int, steps: int, matmul_dtype: str = "float32") -> None:
    """Print the profiler's table (self CPU time) of one training run."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    _train_seconds(tokens, 4, matmul_dtype)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        _train_seconds(tokens, steps, matmul_dtype)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", default="4,13,20")
    parser.add_argument("--label", default="")
    parser.add_argument("--profile", type=int, default=None, metavar="TOKENS")
    parser.add_argument(
        "--matmul-dtype", default="float32", choices=("float32", "bfloat16")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile is not None:
        profile(args.profile, args.steps, args.matmul_dtype)
        return
    print(
        f"# {args.label} threads={args.threads} batch={BATCH} steps={args.steps} "
        f"matmul_dtype={args.matmul_dtype}"
    )
    print("tokens,examples_per_s,ms_per_step")
    for tokens in (int(t) for t in args.tokens.split(",")):
        rate = throughput(
            tokens, args.steps, args.warmup, args.repeats, args.matmul_dtype
        )
        print(f"{tokens},{rate:.0f},{1000 * BATCH / rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
