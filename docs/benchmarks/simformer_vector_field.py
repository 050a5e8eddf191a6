"""A Simformer as an sbi vector-field estimator: sbi's ``VectorFieldPosterior``
against the package's ``SimformerPosterior`` on a linear Gaussian.

theta ~ N(0, I_2), x = theta + 0.5 eps: the posterior given one x is
N(x / 1.25, 0.2 I), given N iid x's N(4 sum(x) / (1 + 4N), I / (1 + 4N)). One
Simformer is trained (2000 simulations, 1500 steps, one thread); then for one x_o
every sampler draws 2000 samples, compared with exact draws by sbi's C2ST (random
forest), the error of the mean and the largest error of the covariance, with wall
time and the number of transformer evaluations per sample (rows through the network
/ samples). Also: sbi's iid methods on 5 iid x's, sbi's guidance against exact
tempered / truncated posteriors, ``log_prob`` against the exact density, and a NaN
(missing) entry in x.

The defaults (2000 samples everywhere, sbi's 500 Euler-Maruyama steps for iid) take
a few hours on one thread; ``simformer_vector_field.md`` was made with

    cd docs/benchmarks
    OMP_NUM_THREADS=1 python simformer_vector_field.py --samples 500 \
        --slow-samples 200 --iid-samples 300 --iid-steps 128 \
        --precision-budget 300 --log-prob-points 100 --cache /tmp/vf_simformer.pt

``--cache FILE`` stores the trained estimator (and reuses it when FILE exists).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from sbi.utils.metrics import c2st
from torch import Tensor
from torch.distributions import Independent, MultivariateNormal, Normal

from sbi_allinone.benchmarks.c2st import C2ST_SEED
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.guidance import Interval
from sbi_allinone.simformer.posterior import SimformerPosterior
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.simformer.vector_field import vector_field_posterior
from sbi_allinone.tracking import NullTracker

X_O_LIST = [0.8, -0.6]
X_O = torch.tensor([X_O_LIST])
THETA_IID_LIST = [0.6, -0.4]
THETA_IID = torch.tensor(THETA_IID_LIST)
NUM_IID = 5
LOW = 0.8  # interval observation theta_1 >= LOW
POSTERIOR_MASK = torch.tensor([False, False, True, True])


class Counter:
    """Counts calls and rows through the estimator's transformer(s)."""

    def __init__(self, estimator: SimformerEstimator) -> None:
        self.calls = self.rows = 0
        modules = [estimator.net]
        if estimator.average is not None:
            modules.append(estimator.average.module)
        for module in modules:
            module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:  # noqa: ANN001
        self.calls += 1
        self.rows += inputs[0].shape[0]

    def reset(self) -> None:
        self.calls = self.rows = 0


def exact(x: Tensor, likelihood_weight: float = 1.0) -> MultivariateNormal:
    """Posterior N(0, I) prior x prod_i N(x_i; theta, 0.25 I)^weight."""
    precision = 1.0 + 4.0 * likelihood_weight * x.shape[0]
    mean = 4.0 * likelihood_weight * x.sum(0) / precision
    return MultivariateNormal(mean, torch.eye(2) / precision)


def truncated(x: Tensor, num: int) -> Tensor:
    """Exact posterior draws with theta_1 >= LOW (by rejection)."""
    draws = exact(x).sample((40 * num,))
    return draws[draws[:, 0] >= LOW][:num]


def scores(samples: Tensor, reference: Tensor) -> dict[str, float]:
    samples = samples.reshape(-1, 2)
    if not torch.isfinite(samples).all():
        return {"c2st": math.nan, "mean": math.nan, "cov": math.nan}
    cov_error = torch.cov(samples.T) - torch.cov(reference.T)
    return {
        "c2st": float(c2st(samples, reference, seed=C2ST_SEED)),
        "mean": float((samples.mean(0) - reference.mean(0)).norm()),
        "cov": float(cov_error.abs().max()),
    }


def run(
    counter: Counter,
    draw: Callable[[int], Tensor],
    num: int,
    exact_draws: Callable[[int], Tensor],
) -> str:
    """Draw ``num`` samples; a table row's numbers (or the error)."""
    counter.reset()
    torch.manual_seed(2)
    start = time.perf_counter()
    try:
        samples = draw(num)
    except Exception as error:  # noqa: BLE001 - the table reports what breaks
        message = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
        return f"fails: {message} | | | | "
    seconds = time.perf_counter() - start
    torch.manual_seed(4)
    s = scores(samples, exact_draws(num))
    return (
        f"{s['c2st']:.3f} | {s['mean']:.3f} | {s['cov']:.3f} | {seconds:.1f} "
        f"| {counter.rows / num:.0f} | {num}"
    )


def table(
    title: str,
    counter: Counter,
    draws: dict[str, tuple[Callable[[int], Tensor], int]],
    exact_draws: Callable[[int], Tensor],
) -> None:
    """Print one table: name -> (draw function, number of samples)."""
    print(f"\n## {title}\n")
    print(
        "| sampler | C2ST | mean error | max cov error | s | network rows / sample "
        "| samples |\n|---|---|---|---|---|---|---|"
    )
    for name, (draw, num) in draws.items():
        print(f"| {name} | {run(counter, draw, num, exact_draws)} |", flush=True)


def train(args: argparse.Namespace, prior: MultivariateNormal) -> SimformerEstimator:
    if args.cache and Path(args.cache).exists():
        return torch.load(args.cache, weights_only=False)
    theta = prior.sample((args.simulations,))
    x = theta + 0.5 * torch.randn_like(theta)
    trainer = Simformer(prior, tracker=NullTracker(), show_progress_bars=False)
    start = time.perf_counter()
    estimator = trainer.append_simulations(theta, x).train(num_steps=args.num_steps)
    print(f"Trained in {time.perf_counter() - start:.0f} s.")
    if args.cache:
        torch.save(estimator, args.cache)
    return estimator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--num-steps", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=2000, help="one x_o")
    parser.add_argument("--slow-samples", type=int, default=2000, help="sbi's ODE")
    parser.add_argument("--iid-samples", type=int, default=2000)
    parser.add_argument("--iid-steps", type=int, default=500, help="EM steps, iid")
    parser.add_argument("--precision-budget", type=int, default=None)
    parser.add_argument("--log-prob-points", type=int, default=500)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    independent = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    estimator = train(args, prior).eval()
    counter = Counter(estimator)
    ours = SimformerPosterior(estimator, POSTERIOR_MASK, prior)
    ours_sde = SimformerPosterior(estimator, POSTERIOR_MASK, prior, sample_with="sde")
    sbi_sde = vector_field_posterior(estimator, prior)
    sbi_independent = vector_field_posterior(estimator, independent)
    sbi_ode = vector_field_posterior(estimator, prior, sample_with="ode")
    quiet = {"show_progress_bars": False}
    num, slow = args.samples, args.slow_samples

    table(
        f"One observation x_o = {X_O_LIST}",
        counter,
        {
            "exact draws (C2ST floor)": (lambda n: exact(X_O).sample((n,)), num),
            "ours: ODE, multistep 32 (default)": (
                lambda n: ours.sample((n,), x=X_O),
                num,
            ),
            "ours: EDM SDE, 128 steps": (lambda n: ours_sde.sample((n,), x=X_O), num),
            "sbi: Euler-Maruyama, 500 steps (default)": (
                lambda n: sbi_sde.sample((n,), x=X_O, **quiet),
                num,
            ),
            "sbi: Euler-Maruyama, 128 steps": (
                lambda n: sbi_sde.sample((n,), x=X_O, steps=128, **quiet),
                num,
            ),
            "sbi: ODE (zuko dopri5, atol 1e-6, rtol 1e-5)": (
                lambda n: sbi_ode.sample((n,), x=X_O, **quiet),
                slow,
            ),
        },
        lambda n: exact(X_O).sample((n,)),
    )

    torch.manual_seed(3)
    x_iid = THETA_IID + 0.5 * torch.randn(NUM_IID, 2)
    steps, n_iid = args.iid_steps, args.iid_samples
    iid_params = {"precision_est_budget": args.precision_budget}

    def iid(posterior, method: str, **kwargs):  # noqa: ANN001, ANN202
        def draw(n: int) -> Tensor:
            return posterior.sample(
                (n,), x=x_iid, iid_method=method, steps=steps, **kwargs, **quiet
            )

        return draw, n_iid

    table(
        f"{NUM_IID} iid observations (theta = {THETA_IID_LIST}), "
        f"Euler-Maruyama {steps} steps",
        counter,
        {
            "exact draws (C2ST floor)": (lambda n: exact(x_iid).sample((n,)), n_iid),
            "ours: one x = mean of the x's (not the iid posterior)": (
                lambda n: ours.sample((n,), x=x_iid.mean(0, keepdim=True)),
                n_iid,
            ),
            "sbi fnpe": iid(sbi_independent, "fnpe"),
            "sbi gauss, MultivariateNormal prior": iid(sbi_sde, "gauss"),
            "sbi gauss, Independent(Normal) prior": iid(sbi_independent, "gauss"),
            "sbi auto_gauss, Independent(Normal) prior": iid(
                sbi_independent, "auto_gauss", iid_params=iid_params
            ),
            "sbi auto_gauss, Independent prior, precision_est_only_diag": iid(
                sbi_independent,
                "auto_gauss",
                iid_params={**iid_params, "precision_est_only_diag": True},
            ),
            "sbi jac_gauss": iid(sbi_independent, "jac_gauss"),
        },
        lambda n: exact(x_iid).sample((n,)),
    )

    def sbi_guided(method: str, params: dict):
        """sbi's guided sampler at x_o, 128 Euler-Maruyama steps."""
        return lambda n: sbi_independent.sample(
            (n,), x=X_O, steps=128, guidance_method=method,
            guidance_params=params, **quiet,
        )  # fmt: skip

    table(
        f"Guidance at x_o = {X_O_LIST}: likelihood x2",
        counter,
        {
            "sbi affine_classifier_free, likelihood_scale 2, EM 128": (
                sbi_guided("affine_classifier_free", {"likelihood_scale": 2.0}),
                num,
            ),
        },
        lambda n: exact(X_O, likelihood_weight=2.0).sample((n,)),
    )
    ours_interval = SimformerPosterior(
        estimator, POSTERIOR_MASK, prior, guidance=[Interval(node=0, low=LOW)]
    )
    interval = {
        "lower_bound": LOW,
        "upper_bound": None,
        "mask": torch.tensor([True, False]),
    }
    table(
        f"Guidance at x_o = {X_O_LIST}: interval theta_1 >= {LOW}",
        counter,
        {
            "ours: Interval, EDM SDE 128": (
                lambda n: ours_interval.sample((n,), x=X_O),
                num,
            ),
            "sbi interval, EM 128": (
                sbi_guided("interval", interval),
                num,
            ),
        },
        lambda n: truncated(X_O, n),
    )

    points = args.log_prob_points
    print(f"\n## log_prob at {points} exact posterior draws\n")
    print(
        "| method | correlation | mean abs error (nats) | s | network calls |\n"
        "|---|---|---|---|---|"
    )
    for label, posterior in (
        ("ours (Heun 64, exact divergence)", ours),
        ("sbi (zuko dopri5, exact divergence)", sbi_sde),
    ):
        theta = exact(X_O).sample((points,))
        truth = exact(X_O).log_prob(theta)
        counter.reset()
        start = time.perf_counter()
        log_prob = posterior.log_prob(theta, x=X_O).detach()
        seconds = time.perf_counter() - start
        corr = torch.corrcoef(torch.stack([log_prob, truth]))[0, 1]
        mae = (log_prob - truth).abs().mean()
        print(f"| {label} | {corr:.4f} | {mae:.3f} | {seconds:.1f} | {counter.calls} |")

    print("\n## Missing entry: x_o = [0.8, NaN]\n")
    x_nan = torch.tensor([[0.8, math.nan]])
    for label, posterior in (("ours", ours), ("sbi", sbi_sde)):
        try:
            samples = posterior.sample((num,), x=x_nan, **quiet)
        except Exception as error:  # noqa: BLE001
            print(f"- {label}: fails: {type(error).__name__}: {error}")
            continue
        # Exact: x_2 is unobserved, so theta_2 keeps its prior N(0, 1).
        mean, var = samples.mean(0).tolist(), samples.var(0).tolist()
        print(
            f"- {label}: mean ({mean[0]:.3f}, {mean[1]:.3f}), exact (0.640, 0); "
            f"var ({var[0]:.3f}, {var[1]:.3f}), exact (0.2, 1)"
        )


if __name__ == "__main__":
    main()
