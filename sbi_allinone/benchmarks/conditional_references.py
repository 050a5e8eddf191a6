"""Reference samples of any conditional of a tractable joint, by MCMC.

The observation is one joint draw ``v*`` (:func:`observation_from_seed`); the
conditioned entries are fixed to ``v*``. Latent *barren* entries (in blocks without
conditioned descendants) integrate out, so they are simulated exactly at the end.
The other latent entries (:func:`mcmc_entries`) are sampled by MCMC on the marginal
of the conditioned blocks and their ancestors: chains initialised by
sampling-importance-resampling (SIR) from a broad Gaussian fitted to joint samples,
burnt in by sbi's vectorised slice sampler (as in the official Simformer code), then
run, all at once, with Metropolis-Hastings mixing a Gaussian random walk
(within-chain covariance of the slice draws, step scales adapted in warm-up only)
and independence jumps to a fixed Gaussian mixture on the slice draws, which moves
chains between separated modes (two moons, SLCP, sign flips in the Markov chain).

Convergence: rank-normalised split R-hat (larger of bulk and folded) and bulk ESS
(Vehtari et al., 2021) via ``pyro.ops.stats``; failures warn or raise. Results,
failed or not, are cached per (task, mask, observation seed, sample count).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from sbi_allinone.benchmarks.conditional_mcmc import (
    McmcDiagnostics,
    convergence_diagnostics,
    run_chains,
)
from sbi_allinone.benchmarks.conditional_tasks import ConditionalTask, conditional_task

__all__ = [
    "DEFAULT_CACHE_DIR",
    "ConvergenceError",
    "ConvergenceWarning",
    "McmcDiagnostics",
    "conditional_reference",
    "convergence_diagnostics",
    "mcmc_conditional_samples",
    "mcmc_entries",
    "observation_from_seed",
]

DEFAULT_CACHE_DIR = Path("~/.cache/sbi_allinone/conditional_references")


class ConvergenceWarning(UserWarning):
    """MCMC chains that did not pass the R-hat / ESS checks."""


class ConvergenceError(RuntimeError):
    """MCMC chains that did not pass the R-hat / ESS checks (strict mode)."""


def observation_from_seed(task: ConditionalTask, seed: int) -> Tensor:
    """The joint draw that provides the observation for a seed.

    Args:
        task: The task.
        seed: Observation seed.

    Returns:
        One joint vector ``(dim,)``; a mask picks the conditioned entries from it.
    """
    return task.sample_joint(1, torch.Generator().manual_seed(seed))[0]


def _fill(observation: Tensor, latent: Tensor, values: Tensor) -> Tensor:
    full = observation.to(torch.float64).expand(len(values), -1).clone()
    full[:, latent] = values.to(torch.float64)
    return full


def mcmc_entries(task: ConditionalTask, condition_mask: Tensor) -> Tensor:
    """Entries in conditioned blocks or their ancestors; the latent ones need MCMC.

    Args:
        task: The task.
        condition_mask: ``(dim,)`` booleans, ``True`` for conditioned entries.

    Returns:
        ``(dim,)`` booleans.
    """
    graph = task.graph()
    block_of = torch.empty(task.dim, dtype=torch.long)
    for index, block in enumerate(task.blocks):
        block_of[list(block)] = index
    relevant = condition_mask.bool().clone()
    while True:
        # Whole blocks, then their parents, until nothing changes.
        grown = torch.isin(block_of, block_of[relevant])
        grown |= graph[grown].any(dim=0)
        if torch.equal(grown, relevant):
            return relevant
        relevant = grown


def _sir_initial_states(
    task: ConditionalTask,
    log_prob,
    latent: Tensor,
    num_chains: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    # Proposal: N(mean, (2 std)^2) of the latent entries under the joint.
    pool = task.sample_joint(20_000, generator).to(torch.float64)[:, latent]
    mean, std = pool.mean(dim=0), 2 * pool.std(dim=0)
    proposals = mean + std * torch.randn(pool.shape, generator=generator).double()
    log_w = log_prob(proposals) + (0.5 * ((proposals - mean) / std) ** 2).sum(dim=1)
    finite = log_w.isfinite()
    if not finite.any():
        raise RuntimeError(
            f"No SIR proposal has a finite density for task {task.name!r}: the "
            "observation may lie outside the joint's support."
        )
    weights = torch.where(finite, (log_w - log_w[finite].max()).exp(), 0.0)
    many = int((weights > 0).sum()) >= num_chains
    index = torch.multinomial(weights, num_chains, not many, generator=generator)
    return proposals[index], std / 2


def mcmc_conditional_samples(
    task: ConditionalTask,
    condition_mask: Tensor,
    observation: Tensor,
    num_samples: int,
    num_chains: int = 20,
    slice_sweeps: int = 30,
    warmup: int | None = None,
    thin: int | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Sample ``p(latent | conditioned)``: MCMC where needed, then simulation.

    Args:
        task: The task.
        condition_mask: ``(dim,)`` booleans, ``True`` for conditioned entries.
        observation: Joint vector ``(dim,)``; its conditioned entries are used.
        num_samples: Number of samples returned.
        num_chains: Number of chains run side by side.
        slice_sweeps: Slice-sampler tuning sweeps, then as many kept sweeps.
        warmup: Metropolis warm-up steps (discarded); default
            ``max(200, 100 * num_mcmc)``.
        thin: Metropolis steps per kept draw; default ``max(10, 5 * num_mcmc)``.
        seed: Seed of the initialisation, the samplers and the simulation.

    Returns:
        Samples ``(num_samples, dim)`` (conditioned entries equal to the
        observation, chains pooled and shuffled) and the chains' draws of the
        MCMC entries ``(num_chains, draws_per_chain, num_mcmc)``, or None when no
        MCMC was needed (the samples are then exact).
    """
    mask = condition_mask.bool()
    relevant = mcmc_entries(task, mask)
    latent = relevant & ~mask
    num_mcmc = int(latent.sum())
    generator = torch.Generator().manual_seed(seed)
    chains = None
    if num_mcmc == 0:
        samples = _fill(observation, latent, torch.empty(num_samples, 0))
    else:
        blocks = torch.tensor([bool(relevant[list(b)].any()) for b in task.blocks])

        def log_prob(values: Tensor) -> Tensor:
            factors = task.log_factors(_fill(observation, latent, values))
            return factors[:, blocks].sum(dim=1)

        inits, widths = _sir_initial_states(
            task, log_prob, latent, num_chains, generator
        )
        warmup = max(200, 100 * num_mcmc) if warmup is None else warmup
        thin = max(10, 5 * num_mcmc) if thin is None else thin
        draws = max(math.ceil(num_samples / num_chains), 4)
        steps = (slice_sweeps, warmup, draws, thin)
        chains = run_chains(log_prob, inits, widths, steps, seed, generator)
        pooled = chains.reshape(-1, num_mcmc)
        keep = torch.randperm(len(pooled), generator=generator)[:num_samples]
        samples = _fill(observation, latent, pooled[keep])
    samples = task.resimulate(samples, ~relevant, generator)
    return samples.to(torch.float32), chains


def _cache_path(
    cache_dir: Path, task: str, mask: Tensor, seed: int, num_samples: int
) -> Path:
    bits = "".join("1" if m else "0" for m in mask.tolist())
    return cache_dir / f"{task}_mask{bits}_obs{seed}_n{num_samples}.pt"


def _report(
    diagnostics: McmcDiagnostics | None,
    label: str,
    on_failure: Literal["warn", "raise"],
) -> None:
    if diagnostics is None or diagnostics.converged:
        return
    message = (
        f"MCMC reference for {label} did not converge: max R-hat "
        f"{diagnostics.max_rhat:.3f}, min bulk ESS {diagnostics.min_bulk_ess:.0f} "
        f"({diagnostics.num_chains} chains x {diagnostics.draws_per_chain} draws)."
    )
    if on_failure == "raise":
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


def _load(
    path: Path, on_failure: Literal["warn", "raise"]
) -> tuple[Tensor, Tensor, McmcDiagnostics | None]:
    stored = torch.load(path, weights_only=True)
    diagnostics = stored["diagnostics"] and McmcDiagnostics(**stored["diagnostics"])
    _report(diagnostics, f"{path.name} (cached)", on_failure)
    return stored["observation"], stored["samples"], diagnostics


def conditional_reference(
    task: ConditionalTask | str,
    condition_mask: Tensor,
    observation_seed: int,
    num_samples: int = 10_000,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    on_failure: Literal["warn", "raise"] = "warn",
    rhat_threshold: float = 1.05,
    min_ess: float = 400.0,
    **mcmc_kwargs: int | None,
) -> tuple[Tensor, Tensor, McmcDiagnostics | None]:
    """Observation and reference samples of one conditional, cached on disk.

    Without MCMC entries (see :func:`mcmc_entries`), e.g. with nothing or only
    parameters conditioned, the reference is exact simulation.

    Args:
        task: The task or its name.
        condition_mask: ``(dim,)`` booleans, ``True`` for conditioned entries.
        observation_seed: Seed of the joint draw providing the observation
            (:func:`observation_from_seed`).
        num_samples: Number of reference samples.
        cache_dir: Directory of the cache (created if needed); ``None`` disables it.
        on_failure: Whether failed convergence checks warn
            (:class:`ConvergenceWarning`) or raise (:class:`ConvergenceError`), also
            when a failed run is loaded from the cache.
        rhat_threshold: Largest rank-normalised split R-hat accepted.
        min_ess: Smallest bulk effective sample size accepted.
        **mcmc_kwargs: Passed to :func:`mcmc_conditional_samples` (``num_chains``,
            ``warmup``, ``thin``, ``seed``); not part of the cache key.

    Returns:
        The observation ``(dim,)`` (the full joint draw; only its conditioned
        entries are meant to be seen), samples ``(num_samples, dim)`` with the
        conditioned entries equal to the observation, and the diagnostics (None for
        exact simulation).
    """
    task = conditional_task(task) if isinstance(task, str) else task
    mask = condition_mask.bool().reshape(-1)
    if mask.shape != (task.dim,):
        raise ValueError(f"Expected a mask of shape ({task.dim},), got {mask.shape}.")
    path = None
    if cache_dir is not None:
        key = (task.name, mask, observation_seed, num_samples)
        path = _cache_path(Path(cache_dir).expanduser(), *key)
        if path.exists():
            return _load(path, on_failure)
    observation = observation_from_seed(task, observation_seed)
    samples, chains = mcmc_conditional_samples(
        task, mask, observation, num_samples, **mcmc_kwargs
    )
    diagnostics = None
    if chains is not None:
        diagnostics = convergence_diagnostics(chains, rhat_threshold, min_ess)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"observation": observation, "samples": samples}
        torch.save({**record, "diagnostics": diagnostics and asdict(diagnostics)}, path)
    _report(diagnostics, f"{task.name}, seed {observation_seed}", on_failure)
    return observation, samples, diagnostics
