"""``inflationary_flow_nn``: a builder of inflationary-flow estimators, like sbi's
``posterior_nn``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, biject_to
from torch.distributions.constraints import Constraint

from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.inflationary.adjustment import fit_linear_adjustment
from sbi_allinone.inflationary.bounded import prior_support
from sbi_allinone.inflationary.denoiser import (
    DENOISER_DEFAULTS,
    DenoiserResNet,
    PreconditionedDenoiser,
)
from sbi_allinone.inflationary.estimator import (
    DEFAULT_VALIDATION_DRAWS,
    InflationaryFlowEstimator,
)
from sbi_allinone.inflationary.sampling import (
    DEFAULT_SAMPLE_STEPS,
    DEFAULT_STEPS,
    SampleSolver,
    check_sample_solver,
)
from sbi_allinone.inflationary.schedule import InflationarySchedule
from sbi_allinone.npe_plugin import check_keywords, split_keywords
from sbi_allinone.standardized import Standardization, fit_standardization

__all__ = [
    "NETWORK_KEYWORDS",
    "SCHEDULE_KEYWORDS",
    "ZScoreTheta",
    "directions_explaining",
    "inflationary_flow_nn",
]

ZScoreTheta = Literal["independent", "transform_to_unconstrained"]
TrainingNoise = Literal["auto", "log_uniform", "log_normal"]

#: ``training_noise`` of :func:`inflationary_flow_nn`.
DEFAULT_TRAINING_NOISE: TrainingNoise = "auto"
#: From this many training pairs on, ``training_noise="auto"`` is log-normal (else
#: log-uniform) and the default linear adjustment is off (else on). At 10 000
#: simulations (9 000 pairs), without the adjustment, log-normal levels took
#: two_moons from 0.538 to 0.528 and, at the Simformer's (-2.0, 1.6), slcp from
#: 0.830 to 0.778 and sir from 0.613 to 0.600 (MLP C2ST, observations 1-10); at
#: 1 000 they made gaussian_linear_uniform (0.746 -> 0.810) and gaussian_mixture
#: (0.577 -> 0.612) worse: with few pairs, training concentrated at low noise fits
#: the training pairs. Between 1 000 and 10 000 simulations it is not measured
#: (``docs/benchmarks/2026-12-03-iflow-adjustment/``).
MANY_PAIRS = 5_000
#: The denoiser's ``hidden_features`` below :data:`MANY_PAIRS` training pairs (from
#: there on, :class:`DenoiserDefaults`' 64). At 1 000 simulations, over six tasks
#: (two_moons, gaussian_mixture, gaussian_linear, gaussian_linear_uniform, slcp,
#: sir; MLP C2ST, observations 1-10) width 32 averaged 0.685 against 64's 0.687,
#: the largest difference 0.008 either way; at 10 000 it lost (two_moons 0.547
#: against 0.528, gaussian_mixture 0.548 against 0.529).
FEW_PAIRS_HIDDEN_FEATURES = 32
#: ``(p_mean, p_std)`` of ``training_noise="log_normal"``: EDM's log-normal, wider
#: than the Simformer's ``(-2.0, 1.6)``, which at 10 000 simulations gave
#: gaussian_mixture 0.535 against 0.531 (two_moons: 0.525 against 0.528).
LOG_NORMAL_LEVELS = (-2.0, 1.8)


def _pca(theta_standardized: Tensor, floor: float) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending, floored) and eigenvectors of the covariance."""
    covariance = torch.cov(theta_standardized.T).reshape(
        theta_standardized.shape[1], theta_standardized.shape[1]
    )
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    # A direction without variance would make c_out vanish and the loss divide by 0.
    eigenvalues = eigenvalues.clamp_min(floor * eigenvalues.max())
    return eigenvalues.float(), eigenvectors.float()


def directions_explaining(eigenvalues: Tensor, fraction: float) -> int:
    """The fewest top principal directions whose variance reaches ``fraction``.

    Args:
        eigenvalues: PCA eigenvalues ``(D,)``, descending.
        fraction: Fraction of the total variance, in ``(0, 1)``.

    Returns:
        Number of directions, between 1 and ``D``. ``D`` comes with a warning: no
        lower-dimensional structure, a PR-reducing schedule would drop variance.
    """
    explained = eigenvalues.cumsum(0) / eigenvalues.sum()
    kept = min(int((explained < fraction).sum()) + 1, eigenvalues.numel())
    if kept == eigenvalues.numel():
        below = explained[-2].item() if kept > 1 else 0.0
        warnings.warn(
            f"latent_dim={fraction}: the top {kept - 1} principal directions of the "
            f"parameters explain {below:.3f} of their variance, so every direction "
            "is kept and the schedule is PR-preserving.",
            stacklevel=4,  # the caller of the builder
        )
    return kept


#: The keywords of :func:`inflationary_flow_nn` that go to the noise schedule,
#: :class:`InflationarySchedule` (defaults: ``SCHEDULE_DEFAULTS``), and to the
#: denoiser network, :class:`DenoiserResNet` (defaults: ``DENOISER_DEFAULTS``).
SCHEDULE_KEYWORDS: tuple[str, ...] = ("gamma0", "rho", "t_max")
NETWORK_KEYWORDS: tuple[str, ...] = ("hidden_features", "num_layers")


def inflationary_flow_nn(
    schedule: Literal["prp", "prr"] = "prp",
    latent_dim: int | float | None = None,
    gap: float = 1.02,
    *,
    embedding_net: nn.Module | None = None,
    z_score_theta: ZScoreTheta = "independent",
    z_score_x: str | None = "independent",
    x_dist: Distribution | None = None,
    steps: int | None = None,
    solver: Literal["heun", "adaptive"] = "heun",
    sample_steps: int | None = None,
    sample_solver: SampleSolver | None = None,
    eigenvalue_floor: float = 1e-4,
    ema_decay: float | None = DENOISER_DEFAULTS.ema_decay,
    validation_draws: int = DEFAULT_VALIDATION_DRAWS,
    training_noise: TrainingNoise | LogNormalNoise = DEFAULT_TRAINING_NOISE,
    linear_adjustment: bool | None = None,
    seed: int | None = None,
    **components: float,
) -> Callable[[Tensor, Tensor], InflationaryFlowEstimator]:
    """Builder of an inflationary-flow posterior estimator for
    ``NPE(density_estimator=...)``.

    Args:
        schedule: ``"prp"`` (participation-ratio preserving: every direction inflates
            at the same rate) or ``"prr"`` (reducing to ``latent_dim`` dimensions).
        latent_dim: Number of directions a ``"prr"`` schedule keeps; or, as a float
            in ``(0, 1)``, the fraction of the standardized parameters' variance to
            keep, see :func:`directions_explaining` (if that is every direction,
            the schedule is PR-preserving, with a warning).
        gap: Inflation gap of the compressed directions (``"prr"``).
        embedding_net: As in sbi's ``posterior_nn``; see
            :func:`~sbi_allinone.standardized.fit_standardization`.
        z_score_theta: ``"independent"`` (z-score each parameter) or, as in sbi's
            ``posterior_nn``, ``"transform_to_unconstrained"``: map the parameters
            from the support of ``x_dist`` to unbounded space first (then z-score
            there), so that no sample falls outside a bounded prior; see
            :mod:`~sbi_allinone.inflationary.bounded`.
        z_score_x: As in sbi's ``posterior_nn``.
        x_dist: The prior, for ``z_score_theta="transform_to_unconstrained"`` (sbi's
            name; :class:`InflationaryFlow` passes it).
        steps: Heun steps of ``log_prob`` and the transforms (default:
            ``DEFAULT_STEPS`` of the schedule, 64 or 256; why, see there).
        solver: ``"heun"`` or ``"adaptive"`` (zuko's Dormand-Prince).
        sample_steps: Steps of ``sample``, network calls of the multistep solver
            (default: ``DEFAULT_SAMPLE_STEPS`` of the schedule and solver, at most
            ``steps`` Heun steps' calls; fewer than ``log_prob`` needs, see there).
        sample_solver: ``sample``'s solver: ``"multistep"`` (one network call a
            step; the default for ``"prp"`` with the Heun solver, see
            :mod:`~sbi_allinone.inflationary.sampling`), ``"heun"`` or
            ``"adaptive"`` (default for ``"prr"``: ``solver``).
        eigenvalue_floor: PCA eigenvalues are floored at this fraction of the
            largest (a degenerate direction would zero the preconditioning).
        ema_decay: Decay of the weight average of the denoiser (``None``: none); why
            it is on, see ``DenoiserDefaults``.
        validation_draws: Fixed (time, noise) draws per validation pair; the
            validation loss averages them.
        training_noise: Noise levels of the training (and validation) draws:
            ``"log_uniform"`` (times uniform on ``[t_min, T]``: noise variances
            log-uniform over the whole flow), ``"log_normal"`` (EDM's log-normal
            levels, :data:`LOG_NORMAL_LEVELS`), a
            :class:`~sbi_allinone.diffusion.LogNormalNoise`, or ``"auto"``:
            ``"log_normal"`` from :data:`MANY_PAIRS` training pairs on,
            else ``"log_uniform"`` (why, see there).
        linear_adjustment: Model the parameters minus a ridge regression on the
            embedded data (:mod:`~sbi_allinone.inflationary.adjustment`). ``None``
            (default): for ``"prp"`` with fewer than :data:`MANY_PAIRS`
            training pairs, when the embedding net has no trainable parameters (a
            trained embedding would move the regression's inputs; ``True`` raises
            there); not for ``"prr"``, whose reduction is of the parameters' own
            principal directions. With many pairs it was worse on
            gaussian_linear_uniform (10 000 simulations: 0.696 with it, 0.608
            without): in 10 dimensions the network does not learn what the
            regression leaves, so the posterior stays the linear-Gaussian start
            (``docs/benchmarks/2026-12-04-iflow-adjustment-cause/``).
        seed: Seed of the network initialization.
        **components: ``gamma0``, ``rho``, ``t_max``: noise variance at ``t = 0``
            (in units of the standardized parameters), inflation rate and final
            time ``T`` of :class:`InflationarySchedule`; why the defaults, see
            ``ScheduleDefaults``. ``hidden_features``, ``num_layers``: width and
            residual blocks of the denoiser network, :class:`DenoiserResNet`. Each
            defaults to that class's default, but for ``hidden_features`` below
            :data:`MANY_PAIRS` training pairs: :data:`FEW_PAIRS_HIDDEN_FEATURES`.

    Returns:
        ``build(theta, x)``, called by sbi with the training data (z-scoring, PCA
        basis and eigenvalues come from it).
    """
    _check_schedule(schedule, latent_dim)
    if sample_solver is not None:  # now, not at the first training step
        check_sample_solver(sample_solver, scalar_noise=schedule == "prp")
    support = _theta_support(z_score_theta, x_dist)
    _check_training_noise(training_noise)
    trainable = embedding_net is not None and any(
        p.requires_grad for p in embedding_net.parameters()
    )
    if linear_adjustment and trainable:
        raise ValueError(
            "`linear_adjustment=True` needs an embedding net without trainable "
            "parameters: the regression is fitted once, on the embedded data."
        )
    if linear_adjustment is None and (schedule != "prp" or trainable):
        linear_adjustment = False
    check_keywords(
        "inflationary_flow_nn", components, SCHEDULE_KEYWORDS + NETWORK_KEYWORDS
    )
    noise, network = split_keywords(components, SCHEDULE_KEYWORDS)
    return partial(
        _build_flow, schedule=schedule, latent_dim=latent_dim, gap=gap, noise=noise,
        network=network, embedding_net=embedding_net, z_score_x=z_score_x,
        theta_support=support, steps=steps, solver=solver,
        sample_steps=sample_steps, sample_solver=sample_solver,
        eigenvalue_floor=eigenvalue_floor, ema_decay=ema_decay,
        validation_draws=validation_draws, training_noise=training_noise,
        adjust=linear_adjustment, seed=seed,
    )  # fmt: skip


def _check_training_noise(training_noise: TrainingNoise | LogNormalNoise) -> None:
    """Raise for a ``training_noise`` :func:`inflationary_flow_nn` does not know."""
    known = ("auto", "log_uniform", "log_normal")
    if not isinstance(training_noise, LogNormalNoise) and training_noise not in known:
        raise ValueError(
            "`training_noise` must be 'auto', 'log_uniform', 'log_normal' or a "
            f"LogNormalNoise, got {training_noise!r}."
        )


def _training_noise(
    training_noise: TrainingNoise | LogNormalNoise, num_pairs: int
) -> LogNormalNoise | None:
    """The denoiser's ``training_noise`` for :func:`inflationary_flow_nn`'s, given
    the number of training pairs (``"auto"``: see :data:`MANY_PAIRS`)."""
    if isinstance(training_noise, LogNormalNoise):
        return training_noise
    if training_noise == "auto":
        log_normal = num_pairs >= MANY_PAIRS
        training_noise = "log_normal" if log_normal else "log_uniform"
    return (
        LogNormalNoise(*LOG_NORMAL_LEVELS) if training_noise == "log_normal" else None
    )


def _theta_support(
    z_score_theta: ZScoreTheta, x_dist: Distribution | None
) -> Constraint | None:
    """``x_dist``'s support, for ``z_score_theta="transform_to_unconstrained"``;
    else ``None``."""
    if z_score_theta == "independent":
        return None
    if z_score_theta != "transform_to_unconstrained":
        raise ValueError(
            "`z_score_theta` must be 'independent' or 'transform_to_unconstrained', "
            f"got {z_score_theta!r}."
        )
    if x_dist is None:
        raise ValueError(
            "z_score_theta='transform_to_unconstrained' needs the prior as `x_dist`."
        )
    return prior_support(x_dist)


def _check_schedule(schedule: str, latent_dim: int | float | None) -> None:
    """Raise for an unknown schedule or a ``latent_dim`` it cannot use."""
    if schedule not in ("prp", "prr"):
        raise ValueError(f"`schedule` must be 'prp' or 'prr', got {schedule!r}.")
    if schedule == "prr" and latent_dim is None:
        raise ValueError("schedule='prr' needs `latent_dim`.")
    if schedule == "prp" and latent_dim is not None:
        raise ValueError("`latent_dim` applies to schedule='prr' only.")
    if isinstance(latent_dim, float) and not 0.0 < latent_dim < 1.0:
        raise ValueError(
            "`latent_dim` as a float is a fraction of explained variance in (0, 1), "
            f"got {latent_dim}."
        )


def _build_flow(
    theta: Tensor,
    x: Tensor,
    *,
    schedule: Literal["prp", "prr"],
    latent_dim: int | float | None,
    gap: float,
    noise: dict[str, float],
    network: dict[str, int],
    embedding_net: nn.Module | None,
    z_score_x: str | None,
    theta_support: Constraint | None,
    steps: int | None,
    solver: Literal["heun", "adaptive"],
    sample_steps: int | None,
    sample_solver: SampleSolver | None,
    eigenvalue_floor: float,
    ema_decay: float | None,
    validation_draws: int,
    training_noise: TrainingNoise | LogNormalNoise,
    adjust: bool | None,
    seed: int | None,
) -> InflationaryFlowEstimator:
    """``build(theta, x)`` of :func:`inflationary_flow_nn`, whose other arguments
    these are (``noise``: those of its ``components`` that go to the schedule;
    ``network``: those that go to the denoiser network; ``theta_support``: the
    prior's support, to learn in unbounded space, or ``None``)."""
    if seed is not None:
        torch.manual_seed(seed)
    if theta_support is not None:
        theta = biject_to(theta_support).inv(theta)
    # The PCA basis is of standardized parameters, so they are always z-scored.
    standardization = fit_standardization(
        theta, x, z_score_theta="independent", z_score_x=z_score_x,
        embedding_net=embedding_net,
    )  # fmt: skip
    theta = (theta - standardization.theta_mean) / standardization.theta_std
    adjustment = None
    if adjust is None:
        adjust = len(theta) < MANY_PAIRS
    if adjust:  # the flow's coordinates are the residuals of the regression
        y = _embedded(x, standardization)
        adjustment = fit_linear_adjustment(theta, y)
        theta = theta - torch.addmm(adjustment[1], y, adjustment[0])
    eigenvalues, basis = _pca(theta[torch.isfinite(theta).all(-1)], eigenvalue_floor)
    inflation, kind = _noise_schedule(eigenvalues, schedule, latent_dim, gap, noise)
    steps = DEFAULT_STEPS[kind] if steps is None else steps
    if sample_solver is None:
        multistep = kind == "prp" and solver == "heun"
        sample_solver = "multistep" if multistep else solver
    if sample_steps is None:
        sample_steps = _default_sample_steps(kind, sample_solver, steps)
    if len(theta) < MANY_PAIRS:
        network = {"hidden_features": FEW_PAIRS_HIDDEN_FEATURES} | network
    net = DenoiserResNet(standardization.dim_theta, standardization.dim_y, **network)
    return InflationaryFlowEstimator(
        PreconditionedDenoiser(
            net, inflation, ema_decay, _training_noise(training_noise, len(theta))
        ),
        standardization, basis,
        steps=steps, solver=solver, sample_steps=sample_steps,
        sample_solver=sample_solver, validation_draws=validation_draws,
        theta_support=theta_support, adjustment=adjustment,
    )  # fmt: skip


def _embedded(x: Tensor, standardization: Standardization) -> Tensor:
    """The embedding ``y`` ``(N, dim_y)`` of the training data ``x``."""
    with torch.no_grad():
        return standardization.embedding_net(
            (x - standardization.x_mean) / standardization.x_std
        )


def _default_sample_steps(kind: str, sample_solver: str, steps: int) -> int:
    """``DEFAULT_SAMPLE_STEPS``, never costlier than ``steps`` Heun steps: a user who
    lowers ``steps`` for speed samples as fast."""
    if sample_solver == "multistep":
        return min(DEFAULT_SAMPLE_STEPS["multistep"], max(2 * steps, 2))
    return min(DEFAULT_SAMPLE_STEPS[kind] or steps, steps)


def _noise_schedule(
    eigenvalues: Tensor,
    schedule: Literal["prp", "prr"],
    latent_dim: int | float | None,
    gap: float,
    noise: dict[str, float],
) -> tuple[InflationarySchedule, Literal["prp", "prr"]]:
    """The inflationary schedule for the PCA eigenvalues ``(D,)``, and its kind
    (``"prp"`` where a reduction keeps every direction)."""
    kept = latent_dim
    if isinstance(latent_dim, float):
        kept = directions_explaining(eigenvalues, latent_dim)
        # Nothing to reduce: the same flow as "prp" (the warning said so).
        kept = None if kept == eigenvalues.numel() else kept
    if schedule == "prp" or kept is None:
        preserving = InflationarySchedule.preserving(eigenvalues, **noise)
        return preserving, "prp"
    reducing = InflationarySchedule.reducing(eigenvalues, kept, gap, **noise)
    return reducing, "prr"
