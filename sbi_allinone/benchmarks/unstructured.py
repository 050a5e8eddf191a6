"""Lotka-Volterra observed at irregular times and in varying numbers.

The Simformer's unstructured-observation application (Gloeckler et al., ICML 2024)
on sbibm's Lotka-Volterra model (prior, initial state, log-normal noise 0.1, horizon
[0, 20]; see ``ode_models``): each series (prey, predator) has a number of points
uniform on `min_points .. max_points`, at times uniform on [0, 20] (continuous, as
the Simformer embeds them), all independent of theta, so the posterior given the
times is prior x ``lv_unstructured_log_likelihood``.

Data contract, with `M = max_points`: `x` and `times` have shape `(batch, 2 M)`;
columns `0 .. M-1` are prey, `M .. 2M-1` predator; times ascend within a series and
unused slots, at its end, are NaN in both. Both are float32; `x` was drawn at the
float32 times, so the pair is exact as stored.

The ODE solution at any time is the quintic Hermite interpolant (values, first and
second derivatives from the ODE) of the log states saved every 0.05 by the RK4 steps
(0.005) of ``ode_models``. Its error in the log states (relative error of the
states) against ``scipy.integrate.solve_ivp`` (DOP853, ``rtol=atol=1e-12``) at 2000
random times: median over 300 prior draws of the largest error 2.2e-9, max 8.7e-5
(a tail draw), at most 7.7e-6 at the +-2 sigma corners of the prior (RK4 alone: max
1.3e-5; cubic Hermite every 0.1: 2.4e-2). 1e-4 moves a log-likelihood term by ~2e-3.
Reference posteriors: ``generate_lv_unstructured_references``.
"""

from __future__ import annotations

import gzip
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from sbi.samplers.mcmc import SliceSamplerVectorized
from scipy import special, stats
from scipy.spatial.distance import cdist
from torch import Tensor
from torch.distributions import Distribution, LogNormal

from sbi_allinone.benchmarks import ode_models
from sbi_allinone.benchmarks.ode_models import LV_NOISE_SCALE, lotka_volterra_prior

__all__ = [
    "LV_T_MAX",
    "REFERENCE_POINTS",
    "generate_lv_unstructured_references",
    "lv_unstructured_log_likelihood",
    "lv_unstructured_observation",
    "lv_unstructured_predictive",
    "simulate_lv_unstructured",
]

LV_T_MAX = 20.0
REFERENCE_POINTS = (3, 6, 12, 20)  # points per series of observations 1, 2, 3, 4
_MAX_POINTS = 20
_REFINEMENT, _DT = 2, 0.05  # log states saved every 0.1 / 2
_LOG_CLAMP = (math.log(ode_models._LV_CLAMP[0]), math.log(ode_models._LV_CLAMP[1]))
_CHUNK = 10_000  # theta rows per ODE solve, as in ode_models
_DATA = Path(__file__).parent / "data" / "lv_unstructured"
_PARAMETERS = ("alpha", "beta", "gamma", "delta")
_SAMPLES = "reference_posterior_samples"
Observation = tuple[Tensor, Tensor, Tensor, Tensor]
# Reference MCMC, draws per chain: slice (tuning, draws), IMH (adapt, burn-in, thin).
_PILOT_TUNING, _PILOT_DRAWS, _ADAPT, _BURN_IN, _THIN = 30, 20, 200, 50, 20


def _as_times(times: Tensor) -> Tensor:
    times = torch.as_tensor(times).detach().to(device="cpu", dtype=torch.float64)
    times = times[None] if times.ndim == 1 else times
    if times.ndim != 2 or ((times < 0) | (times > LV_T_MAX)).any():  # NaN passes
        raise ValueError("`times` must be 1-d or 2-d and lie in [0, 20] (or be NaN).")
    return times


def _quintic_hermite(theta: Tensor, log_traj: Tensor, times: Tensor) -> Tensor:
    """Log states of both species at `times` (rows as `theta`), `(rows, 2, Q)`."""
    idx = torch.floor(times / _DT).long().clamp(0, log_traj.shape[2] - 2)
    u = ((times - idx.to(times.dtype) * _DT) / _DT)[:, None, :]
    c = torch.stack((theta[:, 0], -theta[:, 2]), dim=1)[:, :, None]  # alpha, -gamma
    a = torch.stack((-theta[:, 1], theta[:, 3]), dim=1)[:, :, None]  # -beta, delta
    ends = []
    for node in (idx, idx + 1):
        z = torch.gather(log_traj, 2, node[:, None, :].expand(-1, 2, -1))
        # d log x/dt = alpha - beta y, d log y/dt = -gamma + delta x, and their
        # time derivatives -beta y (d log y/dt) and delta x (d log x/dt).
        ae = a * torch.exp(z.flip(1))
        d1 = c + ae
        ends.append((z, _DT * d1, _DT**2 * ae * d1.flip(1)))
    (z0, v0, a0), (z1, v1, a1) = ends
    u2, u3 = u * u, u**3
    u4, u5 = u3 * u, u3 * u2
    out = z0 + (10 * u3 - 15 * u4 + 6 * u5) * (z1 - z0)
    out = out + (u - 6 * u3 + 8 * u4 - 3 * u5) * v0
    out = out + (-4 * u3 + 7 * u4 - 3 * u5) * v1
    out = out + (0.5 * (u2 - u5) + 1.5 * (u4 - u3)) * a0
    return out + (0.5 * (u3 + u5) - u4) * a1


def _log_solution_at(theta: Tensor, times: Tensor) -> Tensor:
    """Log states `(rows, 2, Q)` at `times` (NaN read as 0, not masked); all-NaN rows
    exactly where theta's trajectory is not finite."""
    theta, times = ode_models.check_theta(theta, 4), _as_times(times)
    if 1 not in (theta.shape[0], times.shape[0]) and theta.shape[0] != times.shape[0]:
        raise ValueError("Row counts of `theta` and `times` differ, and neither is 1.")
    times, rows, out = torch.nan_to_num(times, nan=0.0), max(len(theta), len(times)), []
    for start in range(0, rows, _CHUNK):
        th = theta if len(theta) == 1 else theta[start : start + _CHUNK]
        tt = times if len(times) == 1 else times[start : start + _CHUNK]
        n = max(len(th), len(tt))
        log_traj = ode_models.lotka_volterra_log_trajectory(th, _REFINEMENT)
        th, log_traj, tt = th.expand(n, 4), log_traj.expand(n, -1, -1), tt.expand(n, -1)
        out.append(_quintic_hermite(th, log_traj, tt))
    return torch.cat(out)


def _log_mean(theta: Tensor, times: Tensor) -> tuple[Tensor, Tensor]:
    """Clamped log means `(rows, 2 M)` at contract-format `times` (NaN slots are
    filled, not masked), and which rows have a finite trajectory, `(rows,)`."""
    if times.shape[-1] % 2:
        raise ValueError(f"Data must have an even width, got {times.shape[-1]}.")
    m = times.shape[-1] // 2
    log_states = _log_solution_at(theta, times)
    log_mean = torch.cat((log_states[:, 0, :m], log_states[:, 1, m:]), dim=1)
    return log_mean.clamp(*_LOG_CLAMP), ~log_mean.isnan().any(dim=1)


def simulate_lv_unstructured(
    theta: Tensor,
    min_points: int = 1,
    max_points: int = _MAX_POINTS,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Simulates prey and predator seen at random times, with log-normal noise 0.1.

    Args:
        theta: Parameters `(alpha, beta, gamma, delta)`, `(batch, 4)`.
        min_points: Fewest points per series (at least 1).
        max_points: Most points per series; also the padded width `M`.
        generator: Source of randomness; torch's global RNG if None.

    Returns:
        `x` and `times`, each `(batch, 2 * max_points)`, float32, in the data
        contract; all-NaN rows where the trajectory is not finite.
    """
    if not 1 <= min_points <= max_points:
        raise ValueError(f"Need 1 <= min_points <= max_points, got {min_points}.")
    n = ode_models.check_theta(theta, 4).shape[0]
    counts = torch.randint(min_points, max_points + 1, (n, 2, 1), generator=generator)
    shape = (n, 2, max_points)
    raw = LV_T_MAX * torch.rand(shape, generator=generator, dtype=torch.float64)
    used = torch.arange(max_points) < counts
    times = torch.where(used, raw.float(), torch.inf).sort(dim=2).values.flatten(1)
    noise = torch.randn((n, 2 * max_points), generator=generator, dtype=torch.float64)
    log_mean, valid = _log_mean(theta, torch.where(used.flatten(1), times, torch.nan))
    keep = used.flatten(1) & valid[:, None]
    x = torch.exp(log_mean + LV_NOISE_SCALE * noise).float()
    return torch.where(keep, x, torch.nan), torch.where(keep, times, torch.nan)


def lv_unstructured_log_likelihood(theta: Tensor, x: Tensor, times: Tensor) -> Tensor:
    """Exact log-likelihood log p(x | theta, times); padding (NaN) is ignored.

    Args:
        theta: Parameters, `(batch, 4)`.
        x: Data `(batch, 2 M)` in the data contract.
        times: Times of `x`, NaN exactly where `x` is. `theta`, or `x` and `times`,
            may have a single row, shared by all rows of the other.

    Returns:
        Log-likelihoods `(batch,)`, float64; `-inf` for theta whose trajectory is not
        finite and for observed x <= 0.
    """
    x = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)
    x, times = x[None] if x.ndim == 1 else x, _as_times(times)
    if x.shape != times.shape or not torch.equal(x.isnan(), times.isnan()):
        raise ValueError("`x` and `times` must have the same shape and NaN pattern.")
    log_mean, valid = _log_mean(theta, times)
    log_x = torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))
    residual = (log_x - log_mean) / LV_NOISE_SCALE
    log_norm = math.log(LV_NOISE_SCALE) + 0.5 * math.log(2 * math.pi)
    terms = torch.where(x > 0, -0.5 * residual**2 - log_norm - log_x, -torch.inf)
    log_lik = torch.where(x.isnan(), 0.0, terms).sum(dim=1)
    return torch.where(valid, log_lik, -torch.inf)


def lv_unstructured_predictive(
    theta: Tensor, query_times: Tensor
) -> tuple[Tensor, Distribution]:
    """Noise-free solution and observation distribution at any times in [0, 20]
    (posterior-predictive: pass posterior samples, mix over rows).

    Args:
        theta: Parameters `(alpha, beta, gamma, delta)`, `(batch, 4)`.
        query_times: Times `(num_times,)` shared by all rows, or `(batch, num_times)`
            (or either `theta` or this with a single row); NaN gives NaN.

    Returns:
        The solution `(batch, 2, num_times)`, float64, prey then predator (all-NaN
        rows where the trajectory is not finite), and the log-normal observation
        noise around it (clamped as in sbibm, scale 0.1), batch shape as the former.
    """
    log_states = _log_solution_at(theta, query_times)
    nan_times = _as_times(query_times).isnan()[:, None, :]
    solution = torch.where(nan_times, torch.nan, torch.exp(log_states))
    loc = torch.log(solution).clamp(*_LOG_CLAMP)
    return solution, LogNormal(loc, LV_NOISE_SCALE, validate_args=False)


def lv_unstructured_observation(num_observation: int) -> Observation:
    """A stored observation and its reference posterior samples.

    Args:
        num_observation: 1 to 4, with 3, 6, 12 and 20 points per series.

    Returns:
        `theta_true` `(1, 4)`, `x_o` `(1, 40)` and `times_o` `(1, 40)` (the data
        contract with `max_points` 20), `reference_samples` `(10000, 4)`; float32.
    """
    if num_observation not in range(1, len(REFERENCE_POINTS) + 1):
        raise ValueError(f"`num_observation` must be 1..4, got {num_observation}.")
    table = np.loadtxt(_DATA / "observations.csv", delimiter=",", skiprows=1)
    row = torch.from_numpy(table[num_observation - 1, 1:])
    theta, x, times = row.float()[None].split((4, 2 * _MAX_POINTS, 2 * _MAX_POINTS), 1)
    path = _DATA / f"{_SAMPLES}_{num_observation}.csv.gz"
    samples = np.loadtxt(path, delimiter=",", skiprows=1)
    return theta, x, times, torch.from_numpy(samples).float()


def _prior_sample(num: int, generator: torch.Generator) -> Tensor:
    """Log-normal prior draws with an explicit generator, `(num, 4)`, float64."""
    base = lotka_volterra_prior().base_dist
    z = torch.randn((num, 4), generator=generator, dtype=torch.float64)
    return torch.exp(base.loc.double() + base.scale.double() * z)


def _draw_observations(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Prior-predictive draws with `REFERENCE_POINTS[i]` points per series in row `i`
    (all finite for seed 0): theta `(4, 4)`, x `(4, 40)`, times `(4, 40)`."""
    generator = torch.Generator().manual_seed(seed)
    thetas, xs, ts = [], [], []
    for n in REFERENCE_POINTS:
        theta = _prior_sample(1, generator)
        x, times = simulate_lv_unstructured(theta, n, n, generator)
        pad = torch.full((1, 2, _MAX_POINTS - n), torch.nan)
        thetas.append(theta.float())
        xs.append(torch.cat((x.view(1, 2, n), pad), dim=2).flatten(1))
        ts.append(torch.cat((times.view(1, 2, n), pad), dim=2).flatten(1))
    return torch.cat(thetas), torch.cat(xs), torch.cat(ts)


def _sir_init(log_lik: Callable, chains: int, seed: int) -> tuple[np.ndarray, float]:
    """Chain starts by sampling-importance-resampling 100 000 prior draws (log space)
    with weights likelihood^beta; beta, halved from 1 until the effective sample size
    is `chains / 4`, spreads them wider than the posterior."""
    u = torch.log(_prior_sample(100_000, torch.Generator().manual_seed(seed))).numpy()
    ll = np.concatenate([log_lik(c) for c in np.array_split(u, len(u) // _CHUNK)])
    ll, beta = ll - ll.max(), 1.0
    while np.exp(beta * ll).sum() ** 2 / np.exp(2 * beta * ll).sum() < chains / 4:
        beta /= 2
    p = np.exp(beta * ll)
    return u[np.random.default_rng(seed).choice(len(u), chains, p=p / p.sum())], beta


def _t_mixture(centres: np.ndarray, cov: np.ndarray, rng: np.random.Generator):
    """Sampler and log density of the equal mixture of Student-t distributions (4
    degrees of freedom) at `centres` `(K, 4)` with scale matrix `cov`."""
    df, chol = 4.0, np.linalg.cholesky(cov)
    log_norm = special.gammaln((df + 4) / 2) - special.gammaln(df / 2)
    log_norm -= 2 * np.log(df * np.pi) + np.log(np.diag(chol)).sum()
    white = np.linalg.solve(chol, centres.T).T

    def sample(n: int) -> np.ndarray:
        z = rng.standard_normal((n, 4)) / np.sqrt(rng.chisquare(df, (n, 1)) / df)
        return centres[rng.integers(len(centres), size=n)] + z @ chol.T

    def log_q(u: np.ndarray) -> np.ndarray:
        maha = cdist(np.linalg.solve(chol, u.T).T, white, "sqeuclidean")
        log_k = log_norm - (df + 4) / 2 * np.log1p(maha / df)
        return special.logsumexp(log_k, axis=1) - np.log(len(centres))

    return sample, log_q


def _indep_mh(
    log_post: Callable, proposal: tuple, init: np.ndarray, draws: int, rng
) -> tuple[np.ndarray, float]:
    """Independence Metropolis-Hastings chains from `init` `(chains, 4)` with a
    `(sampler, log density)` proposal: draws `(chains, draws, 4)`, acceptance."""
    (sample, log_q), u = proposal, init.copy()
    out, accepted, log_w = np.empty((len(u), draws, 4)), 0, log_post(u) - log_q(u)
    for t in range(draws):
        new = sample(len(u))
        new_log_w = log_post(new) - log_q(new)
        accept = np.log(rng.random(len(u))) < new_log_w - log_w
        u[accept], log_w[accept] = new[accept], new_log_w[accept]
        out[:, t], accepted = u, accepted + accept.sum()
    return out, accepted / (len(u) * draws)


def _diagnostics(chains: np.ndarray) -> dict[str, np.ndarray]:
    """Rank-normalised split R-hat (bulk and folded) and bulk ESS per dimension of
    draws `(chains, draws, dim)` (Vehtari et al., 2021)."""
    z, n = [], chains[..., 0].size
    for a in (chains, np.abs(chains - np.median(chains, axis=(0, 1)))):
        ranks = stats.rankdata(a.reshape(n, -1), axis=0).reshape(a.shape)
        z.append(torch.from_numpy(stats.norm.ppf((ranks - 0.375) / (n + 0.25))))
    rhat_bulk, rhat_folded = (split_gelman_rubin(t, 0, 1).numpy() for t in z)
    ess_bulk = effective_sample_size(z[0], 0, 1).numpy()
    return {"rhat_bulk": rhat_bulk, "rhat_folded": rhat_folded, "ess_bulk": ess_bulk}


def _reference_samples(
    x_o: Tensor, times_o: Tensor, num_samples: int, num_chains: int, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray | float]]:
    """MCMC draws of theta `(num_samples, 4)` and their diagnostics (see
    ``generate_lv_unstructured_references``)."""
    base = lotka_volterra_prior().base_dist
    loc, scale = base.loc.double(), base.scale.double()

    def log_lik(u: np.ndarray) -> np.ndarray:
        out = lv_unstructured_log_likelihood(
            torch.exp(torch.from_numpy(u)), x_o, times_o
        )
        return torch.nan_to_num(out, nan=-torch.inf).numpy()

    def log_post(u: np.ndarray) -> np.ndarray:
        z = (torch.from_numpy(u) - loc) / scale
        return (-0.5 * z**2).sum(dim=1).numpy() + log_lik(u)

    init, beta = _sir_init(log_lik, num_chains, seed)
    np.random.seed(seed)  # noqa: NPY002 (sbi's slice sampler uses the global RNG)
    kwargs = {"num_chains": num_chains, "verbose": False, "init_width": 0.5}
    slicer = SliceSamplerVectorized(log_post, init, tuning=_PILOT_TUNING, **kwargs)
    draws = slicer.run(_PILOT_DRAWS)
    cov = 2 * np.mean([np.cov(c[_PILOT_DRAWS // 2 :].T) for c in draws], axis=0)
    rng = np.random.default_rng(seed)
    for length in (_ADAPT, _BURN_IN + -(-num_samples // num_chains) * _THIN):
        recent = draws[:, draws.shape[1] // 2 :].reshape(-1, 4)
        proposal = _t_mixture(rng.permutation(recent)[:1000], cov, rng)
        draws, acceptance = _indep_mh(log_post, proposal, draws[:, -1], length, rng)
        cov = np.cov(draws[:, length // 2 :].reshape(-1, 4).T) / 4  # KDE bandwidth
    chains = draws[:, _BURN_IN:]
    kept = chains[:, _THIN - 1 :: _THIN].reshape(-1, 4)[:num_samples]
    diagnostics = _diagnostics(chains) | {"acceptance": acceptance, "sir_beta": beta}
    return np.exp(kept), diagnostics


def _savetxt(path: Path, table: np.ndarray, header: list, fmt: str = "%.9g") -> None:
    """Writes a CSV file; gzipped with reproducible bytes if `path` ends in .gz."""
    gz = path.suffix == ".gz"
    with gzip.GzipFile(path, "wb", mtime=0) if gz else path.open("wb") as f:
        np.savetxt(f, table, fmt, ",", header=",".join(header), comments="")


def generate_lv_unstructured_references(
    num_samples: int = 10_000, num_chains: int = 500, seed: int = 0, out_dir=_DATA
) -> list[dict[str, float]]:
    """Draws the observations and their reference posteriors and writes them, with
    the MCMC diagnostics, to `out_dir` (str or Path, by default the package's).

    Per observation, sbi's vectorised slice sampler explores the posterior of log
    theta from over-dispersed starts (``_sir_init``). Independence Metropolis-Hastings
    chains, started where it ended, sample with a Student-t mixture proposal built
    from its draws (they jump between modes, where slice chains stick and so
    mis-weight them), then again with one refitted to their own draws. R-hat, ESS
    and acceptance are of this final round.

    Args:
        num_samples: Posterior samples per observation.
        num_chains: MCMC chains per observation; should divide `num_samples`.
        seed: Seed of the observations and of the MCMC.

    Returns:
        The rows of ``mcmc_diagnostics.csv``, per observation and parameter.
    """
    torch.set_num_threads(1)
    (out_dir := Path(out_dir)).mkdir(parents=True, exist_ok=True)
    theta, x, times = _draw_observations(seed)
    header = ["observation", *_PARAMETERS]
    header += [f"{v}_{j}" for v in "xt" for j in range(x.shape[1])]
    table = torch.cat((torch.arange(1, 5)[:, None], theta, x, times), 1).double()
    _savetxt(out_dir / "observations.csv", table.numpy(), header)
    rows = []
    for i, points in enumerate(REFERENCE_POINTS):
        start = time.perf_counter()
        draws, diag = _reference_samples(
            x[i : i + 1], times[i : i + 1], num_samples, num_chains, seed + i
        )
        diag["seconds"] = round(time.perf_counter() - start)
        _savetxt(out_dir / f"{_SAMPLES}_{i + 1}.csv.gz", draws, list(_PARAMETERS))
        values = {k: np.broadcast_to(v, 4).round(4).tolist() for k, v in diag.items()}
        for j, name in enumerate(_PARAMETERS):
            row = {"observation": i + 1, "points": points, "parameter": name}
            rows.append(row | {k: v[j] for k, v in values.items()})
    table = np.array([list(row.values()) for row in rows], dtype=object)
    _savetxt(out_dir / "mcmc_diagnostics.csv", table, list(rows[0]), "%s")
    return rows
