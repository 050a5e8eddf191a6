"""MCMC building blocks for :mod:`.conditional_references`: convergence diagnostics
and a vectorised sampler (slice-sampling burn-in, then Metropolis-Hastings mixing a
random walk with independence jumps between modes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from sbi.samplers.mcmc.slice_numpy import SliceSamplerVectorized
from torch import Tensor

__all__ = ["McmcDiagnostics", "convergence_diagnostics", "run_chains"]


@dataclass(frozen=True)
class McmcDiagnostics:
    """Convergence diagnostics of one MCMC run.

    Attributes:
        max_rhat: Largest rank-normalised split R-hat over latent entries.
        min_bulk_ess: Smallest bulk effective sample size over latent entries.
        num_chains: Number of chains.
        draws_per_chain: Kept draws per chain (after warm-up and thinning).
        converged: Whether ``max_rhat <= rhat_threshold`` and
            ``min_bulk_ess >= min_ess``.
    """

    max_rhat: float
    min_bulk_ess: float
    num_chains: int
    draws_per_chain: int
    converged: bool


def _rank_normalise(chains: Tensor) -> Tensor:
    # chains (num_chains, draws, dim) -> normal scores of the pooled ranks.
    c, n, d = chains.shape
    flat = chains.reshape(c * n, d)
    ranks = flat.argsort(dim=0).argsort(dim=0).to(torch.float64) + 1
    scores = torch.special.ndtri((ranks - 0.375) / (c * n + 0.25))
    return scores.reshape(c, n, d)


def convergence_diagnostics(
    chains: Tensor, rhat_threshold: float = 1.05, min_ess: float = 100.0
) -> McmcDiagnostics:
    """Rank-normalised split R-hat and bulk ESS (Vehtari et al., 2021).

    Args:
        chains: Draws ``(num_chains, draws_per_chain, dim)``, ``draws_per_chain >= 4``.
        rhat_threshold: Largest R-hat accepted.
        min_ess: Smallest bulk effective sample size accepted.

    Returns:
        The diagnostics.
    """
    chains = chains.to(torch.float64)
    c, n, _ = chains.shape
    bulk = _rank_normalise(chains)
    folded = _rank_normalise((chains - chains.median(dim=1, keepdim=True)[0]).abs())
    rhat = torch.maximum(
        split_gelman_rubin(bulk, chain_dim=0, sample_dim=1),
        split_gelman_rubin(folded, chain_dim=0, sample_dim=1),
    )
    half = n // 2
    split = torch.cat([bulk[:, :half], bulk[:, n - half :]], dim=0)
    ess = effective_sample_size(split, chain_dim=0, sample_dim=1)
    max_rhat, min_ess_seen = float(rhat.max()), float(ess.min())
    converged = bool(max_rhat <= rhat_threshold and min_ess_seen >= min_ess)
    return McmcDiagnostics(max_rhat, min_ess_seen, c, n, converged)


def _slice_burn_in(
    log_prob, inits: Tensor, widths: Tensor, sweeps: int, seed: int
) -> tuple[Tensor, Tensor]:
    # sbi's vectorised slice sampler: robust burn-in from the SIR states; returns
    # its draws (chains, sweeps, dim) and their average within-chain covariance.
    sampler = SliceSamplerVectorized(
        lambda values: log_prob(torch.from_numpy(values)).numpy(),
        inits.numpy(),
        num_chains=len(inits),
        tuning=sweeps,
        verbose=False,
        init_width=widths.numpy(),
    )
    sampler.rng = np.random.RandomState(seed)  # instead of numpy's global RNG
    draws = torch.from_numpy(sampler.run(sweeps))
    deviations = (draws - draws.mean(dim=1, keepdim=True)).reshape(-1, draws.shape[2])
    covariance = deviations.T @ deviations / max(len(deviations) - len(inits), 1)
    jitter = 1e-6 * covariance.diagonal().mean() + 1e-12
    eye = torch.eye(len(covariance), dtype=covariance.dtype)
    return draws, covariance + jitter * eye


def _mixture_log_q(values: Tensor, centres: Tensor, factor: Tensor) -> Tensor:
    # Log-density (up to a constant) of the equal-weight mixture of N(centre, L L^T).
    deviations = (values[:, None, :] - centres[None]).reshape(-1, centres.shape[1])
    z = torch.linalg.solve_triangular(factor, deviations.T, upper=False).T
    squared = (z**2).sum(dim=1).reshape(len(values), len(centres))
    return torch.logsumexp(-0.5 * squared, dim=1)


def _metropolis(
    log_prob,
    states: Tensor,
    centres: Tensor,
    covariance: Tensor,
    steps: list[int],
    generator: torch.Generator,
    jump_probability: float = 0.2,
) -> Tensor:
    # Random walk (per-chain scales adapted towards acceptance 0.25 in warm-up) or,
    # with `jump_probability`, an independence proposal from the fixed mixture of
    # N(centre, 4 * covariance); each kernel leaves the target invariant.
    warmup, draws, thin = steps
    num_chains, dim = states.shape
    factor = torch.linalg.cholesky(covariance)
    jump_factor = 2 * factor  # (2 L)(2 L)^T = 4 * covariance
    log_scale = torch.zeros(num_chains, dtype=states.dtype)
    current = log_prob(states)
    kept = []
    for step in range(warmup + draws * thin):
        noise = torch.randn(num_chains, dim, generator=generator, dtype=states.dtype)
        scale = 2.38 / dim**0.5 * log_scale.exp()[:, None]
        walk = states + scale * (noise @ factor.T)
        pick = torch.randint(len(centres), (num_chains,), generator=generator)
        jump = centres[pick] + noise @ jump_factor.T
        jumping = torch.rand(num_chains, generator=generator) < jump_probability
        proposal = torch.where(jumping[:, None], jump, walk)
        proposed = log_prob(proposal)
        q_ratio = _mixture_log_q(states, centres, jump_factor)
        q_ratio -= _mixture_log_q(proposal, centres, jump_factor)
        log_ratio = proposed - current + torch.where(jumping, q_ratio, 0.0)
        accept_prob = log_ratio.clamp(max=0.0).exp().nan_to_num(0.0)
        accept = torch.rand(num_chains, generator=generator).double() < accept_prob
        states = torch.where(accept[:, None], proposal, states)
        current = torch.where(accept, proposed, current)
        if step < warmup:
            log_scale += ~jumping * (accept_prob - 0.25) * (step + 1) ** -0.6
        elif (step - warmup) % thin == thin - 1:
            kept.append(states)
    return torch.stack(kept, dim=1)


def run_chains(
    log_prob,
    inits: Tensor,
    widths: Tensor,
    steps: tuple[int, int, int, int],
    seed: int,
    generator: torch.Generator,
) -> Tensor:
    """Slice-sampling burn-in, then Metropolis-Hastings, all chains at once.

    Args:
        log_prob: Vectorised log-density, ``(n, dim)`` float64 -> ``(n,)``.
        inits: Initial states ``(num_chains, dim)``, of finite density.
        widths: Initial slice bracket widths ``(dim,)``.
        steps: Slice sweeps (tuning, then as many kept), Metropolis warm-up steps,
            kept draws per chain, Metropolis steps per kept draw.
        seed: Seed of the slice sampler's numpy generator.
        generator: Torch generator of the Metropolis steps.

    Returns:
        Kept draws ``(num_chains, draws_per_chain, dim)``.
    """
    sweeps, *metropolis_steps = steps
    burn_in, covariance = _slice_burn_in(log_prob, inits, widths, sweeps, seed)
    pooled = burn_in.reshape(-1, burn_in.shape[2])
    centres = pooled[torch.randperm(len(pooled), generator=generator)[:200]]
    return _metropolis(
        log_prob, burn_in[:, -1], centres, covariance, metropolis_steps, generator
    )
