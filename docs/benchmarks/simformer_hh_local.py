r"""Hodgkin–Huxley's energy bound with a second round of simulations near the
observation (issue 20, part 3).

The energy bound fails in re-simulation where the Simformer has not learned the
energy's few-percent variation *inside* one posterior (``simformer_hh.md``: the
model's energy given θ correlates −0.1 to 0.7 with the simulated one there, a plain
regression 0.8–0.9). A network trained on the whole prior spends its capacity on the
prior's range. This script trains a second Simformer per observation on simulations
drawn from a truncated prior: the box that holds the first model's posterior samples
(per parameter their range, widened by ``--widen`` of it on each side, cut to the
prior). Inside the box the truncated prior is the prior up to a constant, so the
posterior, the likelihood ``p(E | θ, features)`` and the constrained conditional are
unchanged there (truncated sequential estimation, as TSNPE); outside it the
posterior must be negligible, which the script checks (the share of the second
model's posterior samples within 2 % of the box's faces).

With ``--focused-model`` it trains a third Simformer the same way, on a box around
the second model's *constrained* conditional (its posterior draws whose sampled energy
is below the threshold: exact draws of that conditional for the model), so that the
simulations land where the bound is decided. The truncation again leaves the
constrained conditional unchanged inside the box, but not the unconstrained
posterior; the edge check is therefore taken on the constrained draws (rejection on
the model's joint, and guided), and the "unconstrained" and "oracle" columns of a
focused model are those of the truncated posterior.

It then runs the oracle protocol of ``simformer_hh_oracle.py`` on the models named
by ``--score`` at the *first* model's threshold (the ``--quantile`` quantile of its
posterior's sampled energy): the re-simulated share below the threshold of
unconstrained, rejection-on-the-model and guided samples, the oracle, and how well
the re-simulated features of unconstrained and guided samples match the observed
ones (median absolute error in prior-predictive sds, as ``simformer_hh.py``). Run
(one thread; ``--model`` as saved by ``simformer_hh.py``)::

    python docs/benchmarks/simformer_hh_local.py --model results/hh_simformer.pt \
        --observation 2 --local-simulations 10000 --local-model results/hh_local_2.pt \
        --focused-model results/hh_focused_2.pt --score local,focused
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from sbi.utils import BoxUniform

from sbi_allinone import Simformer

sys.path.insert(0, str(Path(__file__).parent))
import simformer_hh as hh  # noqa: E402
import simformer_hh_oracle as oracle  # noqa: E402


def arguments() -> argparse.Namespace:
    parser = oracle.base_parser()
    parser.add_argument("--observation", type=int, required=True, help="1, 2, ...")
    parser.add_argument("--local-simulations", type=int, default=10_000)
    parser.add_argument("--num-steps", type=int, default=None)
    parser.add_argument("--widen", type=float, default=0.2)
    parser.add_argument("--guided", type=int, default=200)
    parser.add_argument("--local-model", default=None, help="load/save here")
    parser.add_argument(
        "--focused-model",
        default=None,
        help="a third round, near the local model's constrained conditional: "
        "load/save here (none if not given)",
    )
    parser.add_argument(
        "--score",
        default=None,
        help="models to score, comma-separated from whole, local, focused "
        "(default: every model built)",
    )
    hh.add_guidance_options(parser)
    parser.set_defaults(constrain_by="guidance_through_network")
    args = parser.parse_args()
    built = ["whole", "local"] + (["focused"] if args.focused_model else [])
    unknown = [key for key in (args.score or "").split(",") if key and key not in built]
    if unknown:
        parser.error(
            f"--score names {unknown}, but the models built are {built} "
            "(`focused` needs --focused-model)"
        )
    return args


def truncated_box(samples: torch.Tensor, widen: float) -> tuple[torch.Tensor, ...]:
    """Low and high ``(7,)`` of the box around ``samples`` ``(n, 7)``: their range,
    widened by ``widen`` of it on each side, cut to the prior's box."""
    low, high = samples.min(dim=0).values, samples.max(dim=0).values
    margin = widen * (high - low)
    prior_low, prior_high = prior_box()
    return (low - margin).clamp_min(prior_low), (high + margin).clamp_max(prior_high)


def train_local(low, high, args, path, round_: int = 2) -> tuple[Simformer, float]:
    """A Simformer on ``--local-simulations`` valid draws from the box (or loaded
    from ``path``) and its training seconds; ``round_`` picks the simulations'
    seeds."""
    if path and Path(path).exists():
        saved = torch.load(path, weights_only=False)
        return saved["simformer"], saved["train_time"]
    offset = args.seed + 1000 * args.observation + 10_000 * (round_ - 2)
    generator = torch.Generator().manual_seed(offset)
    theta = low + (high - low) * torch.rand(
        args.local_simulations, hh.P, generator=generator
    )
    _, _, x = hh.simulate(theta, seed=offset + 1000 * args.observation)
    valid = x.isfinite().all(dim=1)
    print(f"{int(valid.sum())} of {len(valid)} round-{round_} simulations valid")
    return hh.fit(
        BoxUniform(low, high), theta[valid], x[valid], args.num_steps, path, False
    )


def posterior_draws(model: Simformer, features, n: int) -> torch.Tensor:
    """``(n, 8)`` draws of θ and energy given the observed ``features``."""
    free = model.build_conditional(hh.features_mask())
    return free.sample((n,), x=features, show_progress_bars=False)


def prior_box() -> tuple[torch.Tensor, torch.Tensor]:
    """The prior's low and high ``(7,)``."""
    return torch.tensor(hh.PRIOR_LOW), torch.tensor(hh.PRIOR_HIGH)


def volume_share(low, high) -> float:
    """The box's share of the prior's volume."""
    prior_low, prior_high = prior_box()
    return float(((high - low) / (prior_high - prior_low)).prod())


def near_faces(samples: torch.Tensor, low, high, prior_low, prior_high) -> float:
    """Share of ``samples`` within 2 % of the box's width of a face that is not the
    prior's own (a posterior cut by the truncation piles up there)."""
    width = high - low
    cut_low = low > prior_low + 1e-6
    cut_high = high < prior_high - 1e-6
    close_low = (samples - low < 0.02 * width) & cut_low
    close_high = (high - samples < 0.02 * width) & cut_high
    return float((close_low | close_high).any(dim=1).float().mean())


def feature_error(samples, features, sd, seed: int) -> float:
    """Median absolute error of the re-simulated features of ``samples`` in
    prior-predictive sds, averaged over the features (``simformer_hh.py``'s)."""
    x_o = torch.cat([features[0], torch.tensor([float("nan")])])
    return hh.score(samples, x_o, sd, float("inf"), seed + 11)["feature_error"]


def main() -> None:
    args = arguments()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    first, sd, first_seconds = hh.train(args)
    index = args.observation - 1
    theta_o = hh.observations(argparse.Namespace(**{**vars(args), "observations": 99}))
    theta_o = theta_o[index]
    features = oracle.observed_features(theta_o, args, index)
    samples = posterior_draws(first, features, args.samples)
    threshold = float(samples[:, -1].quantile(args.quantile))
    low, high = truncated_box(samples[:, : hh.P], args.widen)
    print(f"box: {volume_share(low, high):.2e} of the prior's volume", flush=True)
    local, seconds = train_local(low, high, args, args.local_model)
    # (name, model, training seconds, its box, whether its box may cut the posterior)
    models = {
        "whole": (
            f"whole prior, {args.simulations}",
            first,
            first_seconds,
            None,
            False,
        ),
        "local": (
            f"local, {args.local_simulations}",
            local,
            seconds,
            (low, high),
            False,
        ),
    }
    if args.focused_model:
        draws = posterior_draws(local, features, args.samples)
        kept = draws[draws[:, -1] <= threshold, : hh.P]
        box = truncated_box(kept, args.widen)
        print(f"focused box from {len(kept)} draws: {volume_share(*box):.2e}")
        focused, focused_seconds = train_local(*box, args, args.focused_model, 3)
        name = f"focused, {args.local_simulations}"
        models["focused"] = (name, focused, focused_seconds, box, True)
    scored = args.score.split(",") if args.score else list(models)
    print(
        "| obs (thr) | model | train s | unconstrained | oracle | rejection on the "
        f"model's joint | guided ({args.constrain_by}, r={args.recurrence}) "
        "| corr joint, likelihood | feature error (sd): unconstrained, guided "
        "| guided s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in scored:
        row(*models[key], theta_o, features, threshold, sd, args)


def row(name, model, train_seconds, box, cuts, theta_o, features, threshold, sd, args):
    """Print the table's row of one model. For a truncated one, with the share of its
    samples near a cut face: of its posterior draws, or where the box may cut the
    posterior (``cuts``), of its constrained ones (rejection on its joint), then of
    its guided ones."""
    index = args.observation - 1
    r = oracle.study(model, theta_o, args, index, threshold=threshold)
    if box is not None:
        checked = r["samples"][:, : hh.P]
        if cuts:
            checked = checked[r["samples"][:, -1] <= threshold]
        edges = [
            near_faces(s, *box, *prior_box())
            for s in (checked, r["guided_samples"][:, : hh.P])
        ]
        name = f"{name} (edge {edges[0]:.3f}, {edges[1]:.3f})"
    errors = [
        feature_error(r[key][: args.guided], features, sd, args.seed)
        for key in ("samples", "guided_samples")
    ]
    print(
        f"| {args.observation} ({r['threshold']:.0f}) | {name} "
        f"| {train_seconds:.0f} | {r['simulated']} | {r['oracle']} "
        f"| {r['model']} | {r['guided']} | {r['joint_correlation']:.2f}, "
        f"{r['correlation']:.2f} | {errors[0]:.2f}, {errors[1]:.2f} "
        f"| {r['seconds']:.0f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
