r"""The Simformer on Hodgkin–Huxley with an energy constraint (issue 20, part 3).

Trains one dense Simformer on the joint of the 7 parameters and 8 data (7 summary
features and the metabolic energy) of ``sbi_allinone.benchmarks.hodgkin_huxley``,
then, for ``--observations`` simulations at parameters drawn from the prior that
spike (the first one is ``DEFAULT_THETA``):

1. the posterior given the 7 features (energy latent), by the probability-flow ODE;
2. the same conditional with the energy bounded above through guidance, twice: as an
   ``Interval(node=14, high=threshold)`` and as a differentiable
   ``FunctionConstraint(lambda v: v[:, 14] - threshold)``; the threshold is the
   ``--quantile`` quantile of the unconstrained posterior's *sampled* energy, so
   that guidance has something to do;
3. re-simulation of ``--resimulate`` samples of each: the share whose simulated
   energy is below the threshold (what the guidance promises) against the share of
   sampled energies below it, and how well the simulated features match the observed
   ones (median absolute error in units of the prior-predictive sd of each feature).

Writes ``simformer_hh.png`` (marginals, energy histograms, predictive traces) next
to this file and prints the markdown tables of ``simformer_hh.md``. Run (one
thread)::

    python docs/benchmarks/simformer_hh.py --simulations 20000 --observations 3
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib
import torch
from sbi.utils import BoxUniform
from torch import Tensor

from sbi_allinone import Simformer
from sbi_allinone.benchmarks.hodgkin_huxley import (
    DEFAULT_THETA,
    FEATURE_NAMES,
    PRIOR_HIGH,
    PRIOR_LOW,
    THETA_NAMES,
    HHProtocol,
    energy,
    simulate_hh,
    simulate_task,
    summary_features,
)
from sbi_allinone.simformer import FunctionConstraint, Interval
from sbi_allinone.simformer.checks import CONSTRAIN_BY

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

P = len(THETA_NAMES)
ENERGY = P + len(FEATURE_NAMES)  # node 14 of [theta, x]


def add_guidance_options(parser: argparse.ArgumentParser) -> None:
    """``--recurrence`` and ``--constrain-by`` of the guided conditionals. The
    default is the paper's guidance, which every record before the section
    "Guidance through the network" of ``simformer_hh.md`` used."""
    parser.add_argument("--recurrence", type=int, default=5)
    guided = [way for way in CONSTRAIN_BY if way != "rejection"]
    parser.add_argument("--constrain-by", default="guidance", choices=guided)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulations", type=int, default=20_000)
    parser.add_argument("--num-steps", type=int, default=None, help="default schedule")
    parser.add_argument("--observations", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--resimulate", type=int, default=200)
    parser.add_argument("--quantile", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=1)
    add_guidance_options(parser)
    parser.add_argument(
        "--log-energy",
        action="store_true",
        help="learn log(energy) (nC/cm², clamped at 1) instead of the energy",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="load the trained Simformer from here if it "
        "exists, else train and save it there (torch.save of the trainer)",
    )
    parser.add_argument("--figure", default=str(Path(__file__).with_suffix(".png")))
    return parser.parse_args()


LOG_ENERGY = False  # set by --log-energy: the energy variable is log(energy)


def learned(x: Tensor) -> Tensor:
    """``x`` ``(batch, 8)`` with its energy as the Simformer learns it."""
    if not LOG_ENERGY:
        return x
    return torch.cat([x[:, :-1], x[:, -1:].clamp_min(1.0).log()], dim=1)


def in_units(energy_value: float) -> float:
    """A learned energy value in nC/cm²."""
    return math.exp(energy_value) if LOG_ENERGY else energy_value


def simulate(theta: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Traces, time grid and data ``(batch, 8)`` (features, learned energy)."""
    sim = simulate_hh(theta, HHProtocol(), torch.Generator().manual_seed(seed))
    features = summary_features(sim.v, sim.t)
    x = torch.cat([features, energy(sim.i_na, sim.t)[:, None]], 1)
    return sim.v, sim.t, learned(x)


def observations(args: argparse.Namespace) -> Tensor:
    """``DEFAULT_THETA``, then prior draws that spike at least 3 times: ``(n, 7)``."""
    generator = torch.Generator().manual_seed(10_000 + args.seed)
    low, high = torch.tensor(PRIOR_LOW), torch.tensor(PRIOR_HIGH)
    theta = low + (high - low) * torch.rand(200, P, generator=generator)
    _, _, x = simulate(theta, seed=args.seed)
    spiking = theta[(x[:, 0] >= 3) & x.isfinite().all(1)]
    return torch.cat([torch.tensor(DEFAULT_THETA)[None], spiking])[: args.observations]


def train(args: argparse.Namespace) -> tuple[Simformer, Tensor, float]:
    """The Simformer on ``--simulations`` valid draws (or loaded from ``--model``),
    the prior-predictive sd of x, and the training seconds."""
    generator = torch.Generator().manual_seed(args.seed)
    theta, x = simulate_task(args.simulations, generator=generator)
    x = learned(x)
    valid = x.isfinite().all(dim=1)
    print(f"{int(valid.sum())} of {len(valid)} simulations valid")
    if args.model and Path(args.model).exists():
        saved = torch.load(args.model, weights_only=False)
        return saved["simformer"], x[valid].std(dim=0), saved["train_time"]
    prior = BoxUniform(torch.tensor(PRIOR_LOW), torch.tensor(PRIOR_HIGH))
    simformer, train_time = fit(
        prior, theta[valid], x[valid], args.num_steps, args.model
    )
    return simformer, x[valid].std(dim=0), train_time


def fit(prior, theta: Tensor, x: Tensor, num_steps, path, progress: bool = True):
    """A dense Simformer trained on ``(theta, x)`` and its training seconds, saved
    to ``path`` (if given) as ``{"simformer", "train_time"}``."""
    simformer = Simformer(prior, show_progress_bars=progress)
    simformer.append_simulations(theta, x)
    start = time.perf_counter()
    simformer.train(num_steps=num_steps)
    train_time = time.perf_counter() - start
    if path:
        torch.save({"simformer": simformer, "train_time": train_time}, path)
    return simformer, train_time


def features_mask() -> Tensor:
    """``(15,)``: the features observed; theta and energy latent."""
    mask = torch.zeros(ENERGY + 1, dtype=torch.bool)
    mask[P:ENERGY] = True
    return mask


def conditionals(
    simformer: Simformer,
    threshold: float,
    recurrence: int,
    constrain_by: str = "guidance",
) -> dict:
    """The three conditionals of the study, by label."""
    mask = features_mask()
    interval = [Interval(node=ENERGY, high=threshold)]
    function = [FunctionConstraint(lambda v: v[:, ENERGY] - threshold)]
    guided = {"recurrence": recurrence, "constrain_by": constrain_by}
    return {
        "unconstrained": simformer.build_conditional(mask),
        "interval": simformer.build_conditional(mask, guidance=interval, **guided),
        "function": simformer.build_conditional(mask, guidance=function, **guided),
    }


def score(samples: Tensor, x_o: Tensor, sd: Tensor, threshold: float, seed: int):
    """Sampled and simulated constraint rates, feature error, re-simulated traces."""
    v, t, x_s = simulate(samples[:, :P], seed)
    ok = x_s.isfinite().all(dim=1)
    error = ((x_s[ok, :-1] - x_o[:-1]) / sd[:-1]).abs().median(dim=0).values
    return {
        "sampled_below": float((samples[:, -1] <= threshold).float().mean()),
        "simulated_below": float((x_s[ok, -1] <= threshold).float().mean()),
        "valid": int(ok.sum()),
        "feature_error": float(error.mean()),
        "simulated_energy": x_s[ok, -1],
        "traces": (v[ok][:3], t),
    }


def run_observation(simformer, theta_o, sd, args, index) -> dict:
    """All conditionals of one observation: samples, scores and times."""
    v_o, t, x_o = simulate(theta_o[None], seed=args.seed + 100 + index)
    x_o = x_o[0]
    features = x_o[None, : len(FEATURE_NAMES)]
    free = simformer.build_conditional(features_mask())
    start = time.perf_counter()
    free_samples = free.sample((args.samples,), x=features, show_progress_bars=False)
    times = {"unconstrained": time.perf_counter() - start}
    threshold = float(free_samples[:, -1].quantile(args.quantile))
    samples = {"unconstrained": free_samples}
    built = conditionals(simformer, threshold, args.recurrence, args.constrain_by)
    for label in ("interval", "function"):
        start = time.perf_counter()
        samples[label] = built[label].sample(
            (args.samples,), x=features, show_progress_bars=False
        )
        times[label] = time.perf_counter() - start
    scores = {
        label: score(s[: args.resimulate], x_o, sd, threshold, args.seed + 7)
        for label, s in samples.items()
    }
    return {
        "theta": theta_o,
        "x": x_o,
        "trace": (v_o[0], t),
        "threshold": threshold,
        "samples": samples,
        "scores": scores,
        "times": times,
    }


def report(runs: list, train_time: float, args: argparse.Namespace) -> None:
    """Markdown tables of the record."""
    print(f"\ntraining: {train_time:.0f} s\n")
    print(
        "| obs | conditional | sampled energy <= thr | simulated energy <= thr "
        "| valid re-sims | feature error (sd) | sample s |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, run in enumerate(runs):
        for label, s in run["scores"].items():
            print(
                f"| {i + 1} (thr {in_units(run['threshold']):.0f}) | {label} "
                f"| {s['sampled_below']:.2f} | {s['simulated_below']:.2f} "
                f"| {s['valid']} | {s['feature_error']:.2f} "
                f"| {run['times'][label]:.1f} |"
            )
    print(f"\nexpected without guidance: {args.quantile:.2f} below the threshold")


def figure(runs: list, path: str) -> None:
    """Per observation: two marginals, energy histograms, predictive traces."""
    fig, axes = plt.subplots(len(runs), 4, figsize=(16, 3.2 * len(runs)), squeeze=False)
    colours = {"unconstrained": "C0", "interval": "C1", "function": "C2"}
    for row, run in zip(axes, runs, strict=True):
        for label, samples in run["samples"].items():
            kw = {"bins": 40, "density": True, "alpha": 0.45, "color": colours[label]}
            row[0].hist(samples[:, 1], label=label, **kw)
            row[1].hist(samples[:, 2], **kw)
            simulated = run["scores"][label]["simulated_energy"]
            if not LOG_ENERGY:
                simulated = simulated.clamp_min(1.0).log()
            row[2].hist(simulated / math.log(10), **kw)
        row[0].axvline(run["theta"][1], color="k")
        row[1].axvline(run["theta"][2], color="k")
        threshold = math.log10(in_units(run["threshold"]))
        row[2].axvline(threshold, color="k", ls="--", label="threshold")
        row[0].set_xlabel("g_Na")
        row[1].set_xlabel("g_K")
        row[2].set_xlabel("log10 re-simulated energy (nC/cm²)")
        row[0].legend(fontsize=7)
        row[2].legend(fontsize=7)
        v_o, t = run["trace"]
        for label in ("unconstrained", "interval"):
            v, _ = run["scores"][label]["traces"]
            for trace in v[:2]:
                row[3].plot(t, trace, color=colours[label], lw=0.6, alpha=0.8)
        row[3].plot(t, v_o, "k", lw=0.7)
        row[3].set_xlabel("time (ms); black: observed")
    plt.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    global LOG_ENERGY
    args = arguments()
    LOG_ENERGY = args.log_energy
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    simformer, sd, train_time = train(args)
    runs = [
        run_observation(simformer, theta_o, sd, args, i)
        for i, theta_o in enumerate(observations(args))
    ]
    report(runs, train_time, args)
    figure(runs, args.figure)


if __name__ == "__main__":
    main()
