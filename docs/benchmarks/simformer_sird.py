r"""The Simformer on SIRD with a time-varying contact rate beta(t) (issue 19, task 2).

Trains one Simformer on ``sbi_allinone.benchmarks.sird`` simulations (beta given at
a few random times per simulation; I, R, D at 1 to ``--points`` random times each),
then, on held-out simulations:

1. the posterior of beta(t) queried at ``--query`` evenly spaced times (more than any
   training simulation had), jointly in one call and in chunks of at most the
   training count: 90 % band coverage of the true beta, band width, error of the
   median;
2. the posterior predictive of S, I, R, D (the ODE from posterior samples of gamma,
   delta, I0 and beta at the query times): 90 % band coverage of the noise-free
   truth at 201 times;
3. SBC of beta at t = 5, 15, 25, 35, 45 and of gamma, delta, I0 (sbi's
   ``check_sbc`` on ranks computed here), rank ECDFs;
4. training and sampling times.

Run (the record ``simformer_sird.md``; one thread, writes ``simformer_sird.png``
next to this file)::

    python docs/benchmarks/simformer_sird.py --simulations 5000 --num-steps 2500 \
        --seed 1 --sbc-observations 200 --samples 100 --plot-samples 500

Without ``--showcase`` observations (``--showcase 0``) only the SBC is run and no
figure is written. ``--linear-data`` / ``--natural-beta`` learn I, R, D / beta
instead of their logs / logit.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib
import torch
from sbi.diagnostics import check_sbc
from torch import Tensor

from sbi_allinone.benchmarks.sird import (
    GRID,
    OBSERVED,
    PRIOR_UPPER,
    SIRDSimulations,
    interpolate,
    observation_inputs,
    simulate_sird,
    sird_states,
    train_sird_simformer,
)
from sbi_allinone.simformer import SeriesPosterior

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

SBC_TIMES = (5.0, 15.0, 25.0, 35.0, 45.0)
NAMES = ("gamma", "delta", "i0")
STATES = ("S", "I", "R", "D")
FINE = torch.linspace(0.0, 50.0, 201, dtype=torch.float64)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulations", type=int, default=5000)
    parser.add_argument("--num-steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sbc-observations", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100, help="per SBC run")
    parser.add_argument("--plot-samples", type=int, default=500)
    parser.add_argument("--showcase", type=int, default=3)
    parser.add_argument("--query", type=int, default=51)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--beta-points", default="5,10")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--linear-data", action="store_true")
    parser.add_argument("--natural-beta", action="store_true")
    parser.add_argument("--figure", default=str(Path(__file__).with_suffix(".png")))
    return parser.parse_args()


def logit_of(samples: Tensor, natural_beta: bool) -> Tensor:
    """Sampled beta tokens as f = logit beta."""
    return samples.clamp(1e-6, 1 - 1e-6).logit() if natural_beta else samples


def draw(
    posterior: SeriesPosterior,
    obs: SIRDSimulations,
    times: Tensor,
    num: int,
    args: argparse.Namespace,
) -> tuple[Tensor, Tensor]:
    """``(num, 3)`` gamma, delta, I0 and ``(num, Q)`` f at ``times``."""
    x, metadata = observation_inputs(obs, times, log_data=not args.linear_data)
    out = posterior.sample((num,), x=x, metadata=metadata)
    parameters = torch.cat([out[name] for name in NAMES], 1)
    return parameters, logit_of(out["beta"], args.natural_beta)


def chunked(
    posterior: SeriesPosterior,
    obs: SIRDSimulations,
    times: Tensor,
    num: int,
    size: int,
    args: argparse.Namespace,
) -> Tensor:
    """f at ``times`` from calls of at most ``size`` query times (marginals only)."""
    parts = [draw(posterior, obs, t, num, args)[1] for t in times.split(size)]
    return torch.cat(parts, 1)


def band(f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """5 %, 50 %, 95 % quantiles over samples (dim 0)."""
    levels = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    q = torch.quantile(f.double(), levels, 0)
    return q[0], q[1], q[2]


def beta_scores(f: Tensor, truth: Tensor) -> tuple[float, float, float]:
    """Coverage of the true beta by the 90 % band, its mean width, mean |median - true|
    (in beta)."""
    low, mid, high = (torch.sigmoid(q) for q in band(f))
    beta = torch.sigmoid(truth)
    inside = ((beta >= low) & (beta <= high)).double().mean()
    return float(inside), float((high - low).mean()), float((mid - beta).abs().mean())


def predictive(parameters: Tensor, f: Tensor, query: Tensor) -> Tensor:
    """``(num, 4, 201)`` states from posterior samples (clamped to the prior)."""
    upper = torch.tensor(list(PRIOR_UPPER.values()), dtype=torch.float64)
    clamped = torch.minimum(parameters.double().clamp(min=0.0), upper)
    return sird_states(clamped, f.double(), FINE, grid=query.double())


def showcase(
    posterior: SeriesPosterior, test: SIRDSimulations, args: argparse.Namespace
) -> tuple[list, list]:
    """Measurements 1 and 2 on the first ``--showcase`` held-out simulations."""
    query = torch.linspace(0.0, 50.0, args.query)
    size = int(args.beta_points.split(",")[1])
    rows, plots = [], []
    for i in range(args.showcase):
        obs = test.rows(i)
        f_true = _at(obs.logit_beta, query)
        start = time.perf_counter()
        parameters, f = draw(posterior, obs, query, args.plot_samples, args)
        seconds = time.perf_counter() - start
        f_chunk = chunked(posterior, obs, query, args.plot_samples, size, args)
        states = predictive(parameters, f, query)
        true_states = sird_states(obs.parameters, obs.logit_beta, FINE)[0]
        low, _, high = band(states)
        covered = ((true_states >= low) & (true_states <= high)).double().mean(1)
        widths = (high - low).mean(1).tolist(), true_states.amax(1).tolist()
        rows.append(
            (i, beta_scores(f, f_true), beta_scores(f_chunk, f_true), covered,
             list(zip(*widths, strict=True)), parameters, obs.parameters[0], seconds)
        )  # fmt: skip
        plots.append((obs, query, f, states, true_states))
    return rows, plots


def _at(logit_beta: Tensor, times: Tensor) -> Tensor:
    """f of one simulation at ``times``, ``(Q,)``."""
    return interpolate(GRID, logit_beta, times)[0]


def sbc(
    posterior: SeriesPosterior, test: SIRDSimulations, args: argparse.Namespace
) -> dict[str, Tensor | float]:
    """Ranks ``(N, 8)`` (f = logit beta at SBC_TIMES, gamma, delta, I0), truths,
    one posterior sample per observation (the data-averaged posterior), posterior
    means and standard deviations, seconds."""
    times = torch.tensor(SBC_TIMES)
    out = {key: [] for key in ("ranks", "truths", "dap", "means", "sds")}
    start = time.perf_counter()
    for i in range(args.sbc_observations):
        obs = test.rows(args.showcase + i)
        parameters, f = draw(posterior, obs, times, args.samples, args)
        samples = torch.cat([f, parameters], 1).double()
        truth = torch.cat([_at(obs.logit_beta, times), obs.parameters[0]])
        out["ranks"].append((samples < truth).sum(0))
        out["truths"].append(truth)
        out["dap"].append(samples[0])
        out["means"].append(samples.mean(0))
        out["sds"].append(samples.std(0))
    stacked = {key: torch.stack(value) for key, value in out.items()}
    return {**stacked, "seconds": time.perf_counter() - start}


def figure(plots: list, ranks: Tensor, num_samples: int, path: str) -> None:
    """Beta posteriors, rank ECDFs and predictive bands of two observations."""
    fig, axes = plt.subplots(3, 4, figsize=(16, 10.5))
    for ax, (obs, query, f, _, _) in zip(axes[0], plots, strict=False):
        low, mid, high = (torch.sigmoid(q) for q in band(f))
        ax.fill_between(query, low, high, alpha=0.3, label="90 % band")
        ax.plot(query, mid, label="median")
        ax.plot(GRID, torch.sigmoid(obs.logit_beta[0]), "k--", label="true beta")
        ax.set(title="posterior of beta(t)", xlabel="t", ylim=(0, 1))
    axes[0, 0].legend()
    ecdf_panel(axes[0, 3], ranks, num_samples)
    for row, (obs, _, _, states, true_states) in zip(axes[1:], plots, strict=False):
        low, mid, high = band(states)
        for k, ax in enumerate(row):
            ax.fill_between(FINE, low[k], high[k], alpha=0.3)
            ax.plot(FINE, mid[k])
            ax.plot(FINE, true_states[k], "k--")
            if k:
                name = OBSERVED[k - 1]
                ax.plot(obs.times[name][0], obs.values[name][0], "r.")
            ax.set(title=f"predictive of {STATES[k]}", xlabel="t")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def ecdf_panel(ax: plt.Axes, ranks: Tensor, num_samples: int) -> None:
    """ECDF of normalized ranks minus the uniform CDF, with a 95 % pointwise band."""
    grid = torch.linspace(0, 1, 101)
    n = ranks.shape[0]
    labels = [f"beta({t:g})" for t in SBC_TIMES] + list(NAMES)
    for k, label in enumerate(labels):
        u = ranks[:, k].double() / num_samples
        ecdf = (u[:, None] <= grid).double().mean(0)
        ax.plot(grid, ecdf - grid, label=label, lw=1)
    half = 1.96 * (grid * (1 - grid) / n).sqrt()
    ax.fill_between(grid, -half, half, color="grey", alpha=0.2)
    ax.set(title="SBC: rank ECDF - uniform", xlabel="normalized rank")
    ax.legend(fontsize=7, ncol=2)


def report_showcase(rows: list) -> None:
    """Tables of measurements 1 and 2."""
    print(
        "\n| obs | gamma, delta, I0 true | posterior mean (sd) | beta cover joint | "
        "width | mean abs err | beta cover chunked | width | mean abs err | "
        "sample s |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for i, joint, chunk, _, _, parameters, true, secs in rows:
        mean, sd = parameters.mean(0), parameters.std(0)
        post = ", ".join(f"{m:.3f} ({s:.3f})" for m, s in zip(mean, sd, strict=True))
        cells = [f"{joint[0]:.2f}", f"{joint[1]:.2f}", f"{joint[2]:.3f}"]
        cells += [f"{chunk[0]:.2f}", f"{chunk[1]:.2f}", f"{chunk[2]:.3f}"]
        true = ", ".join(f"{v:.3f}" for v in true)
        print(f"| {i} | {true} | {post} | {' | '.join(cells)} | {secs:.1f} |")
    print(
        "\n| obs | " + " | ".join(f"{k} cover / width / max" for k in STATES)
        + " |\n" + "|---" * 5 + "|"
    )  # fmt: skip
    for i, _, _, covered, widths, *_ in rows:
        cells = [
            f"{c:.2f} / {w:.3f} / {m:.3f}"
            for c, (w, m) in zip(covered.tolist(), widths, strict=True)
        ]
        print(f"| {i} | " + " | ".join(cells) + " |")


def report_sbc(out: dict, num_samples: int) -> None:
    """Table of measurement 3."""
    ranks, truths = out["ranks"], out["truths"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = check_sbc(
            ranks.float(), truths.float(), out["dap"].float(), num_samples
        )
    labels = [f"beta({t:g})" for t in SBC_TIMES] + list(NAMES)
    print(
        f"\nSBC: {len(ranks)} observations x {num_samples} samples, "
        f"{out['seconds']:.0f} s; c2st_dap {float(checks['c2st_dap'].mean()):.3f}"
    )
    print("\n| | " + " | ".join(labels) + " |\n" + "|---" * (len(labels) + 1) + "|")
    u = ranks.double() / num_samples
    rows = {
        "KS p-value": checks["ks_pvals"],
        "c2st of ranks": checks["c2st_ranks"],
        "mean rank / L": u.mean(0),
        "90 % coverage": ((u >= 0.05) & (u < 0.95)).double().mean(0),
        "posterior sd / prior sd": out["sds"].mean(0) / truths.std(0),
        "corr(posterior mean, truth)": _correlations(out["means"], truths),
    }
    for key, values in rows.items():
        print(f"| {key} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


def _correlations(a: Tensor, b: Tensor) -> Tensor:
    """Correlation of the columns of ``a`` and ``b``, ``(columns,)``."""
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))


def main() -> None:
    args = arguments()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    low, high = map(int, args.beta_points.split(","))
    sims = simulate_sird(
        args.simulations, torch.Generator().manual_seed(args.seed),
        points=(1, args.points), beta_points=(low, high),
    )  # fmt: skip
    test = simulate_sird(
        args.showcase + args.sbc_observations,
        torch.Generator().manual_seed(args.seed + 10_000), points=(1, args.points),
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        inference = train_sird_simformer(
            sims, args.num_steps, log_data=not args.linear_data,
            logit_beta=not args.natural_beta, net_kwargs={"num_layers": args.layers},
            training_batch_size=args.batch_size,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    loss = inference.summary["best_validation_loss"][-1]
    epochs = inference.summary["epochs_trained"][-1]
    print(
        f"{args.simulations} simulations, {args.num_steps} steps ({epochs} epochs "
        f"run), training {seconds:.0f} s, best validation loss {loss:.4f}"
    )
    posterior = inference.build_posterior()
    rows, plots = showcase(posterior, test, args)
    if rows:
        report_showcase(rows)
    out = sbc(posterior, test, args)
    report_sbc(out, args.samples)
    if plots:
        figure(plots, out["ranks"], args.samples, args.figure)


if __name__ == "__main__":
    main()
