r"""Inflationary flows as a conditional density estimator ``q(theta | x)``.

The paper maps data to latents; here the data is the parameter vector and every
network evaluation is conditioned on an embedding ``y`` of the observation. Derivation:

1. Standardize ``theta``, subtract the linear regression adjustment ``y W + b``
   (:mod:`~sbi_allinone.inflationary.adjustment`; zero without it) and rotate into
   the PCA basis of the training residuals: ``u = V^T ((theta - mu) / sigma - y W -
   b)`` (orthogonal ``V``, eigenvalues ``lambda``).
2. For each ``x``, noise the conditional ``p(u | x)`` with ``n ~ N(0, diag gamma(t))``.
   Its score is ``grad log p_t(u~ | x) = (D(u~, t; y) - u~) / gamma(t)`` with ``D`` the
   posterior-mean denoiser ``E[u | u~, x]`` (Tweedie); ``D`` is learned by the weighted
   denoising loss, conditioned on ``y``.
3. The probability-flow ODE of a diffusion with noise covariance ``diag gamma(t)`` is
   ``du~/dt = -1/2 gamma_dot * score = -1/2 r (D - u~)`` with ``r = rho (1 + g)``.
   In the scaled coordinates ``z = alpha(t) u~`` it reads

       dz/dt = (alpha_dot / alpha + r / 2) z - (alpha r / 2) D(z / alpha, t; y),

   which transports ``q(u | x)`` at ``t_min`` to ``q_T(z | x) ~= N(0, Sigma_T)``,
   ``Sigma_T = diag(alpha_T^2 (lambda + gamma(T)))`` (noise dominates at ``T``).
4. Sampling integrates from ``z ~ N(0, Sigma_T)`` back to ``t_min``; the map is a
   bijection for each ``x``, so ``inverse_transform`` / ``transform`` move between
   parameters and latents.
5. Density by the instantaneous change of variables along the ODE:

       log q(u | x) = log N(z_T; 0, Sigma_T) + int_{t_min}^T tr(df/dz) dt
                      + D log alpha(t_min),

   and ``log q(theta | x) = log q(u | x) - sum log sigma``. Two approximations of
   the method remain: the flow starts at noise ``gamma0`` (not 0), and the latent
   is taken as centred although the noised conditional keeps the mean
   ``alpha_T mu``; for standardized parameters both cost a few hundredths of a nat
   (measured against an exact Gaussian model in the tests). The trace is exact
   (``D`` vector-Jacobian products) up to ``exact_trace_max_dim`` parameters and a
   Hutchinson estimate above.

For a PR-reducing schedule the compressed directions have latent standard deviations
around ``exp(-rho * gap * T / 2)``: sampling and encoding are fine, but ``log_prob``
divides ODE solver error by those tiny scales and is ill-conditioned there.
"""

from __future__ import annotations

import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import Tensor
from torch.distributions import biject_to
from torch.distributions.constraints import Constraint
from torch.distributions.transforms import Transform

from sbi_allinone.diffusion.averaging import update_weight_average, weight_average
from sbi_allinone.diffusion.ode import (
    gaussian_log_prob,
    heun,
    integrate_adaptive,
    integrate_with_divergence,
    rademacher,
)
from sbi_allinone.diffusion.validation import fixed_draws
from sbi_allinone.inflationary.adjustment import AdjustedCoordinates
from sbi_allinone.inflationary.bounded import log_abs_det_unbounding
from sbi_allinone.inflationary.denoiser import PreconditionedDenoiser
from sbi_allinone.inflationary.sampling import (
    CACHE_FRIENDLY_ROWS,
    DEFAULT_STEPS,
    SampleSolver,
    Solver,
    check_sample_solver,
    has_scalar_noise,
    multistep_latent_to_pca,
)
from sbi_allinone.standardized import Standardization, StandardizedEstimator

__all__ = ["InflationaryFlowEstimator"]

#: Fixed (time, noise) draws per validation example.
DEFAULT_VALIDATION_DRAWS = 4


class InflationaryFlowEstimator(
    AdjustedCoordinates, StandardizedEstimator, ConditionalDensityEstimator
):
    """Conditional inflationary flow; built by :func:`inflationary_flow_nn`.

    Args:
        denoiser: The preconditioned denoiser (holds the schedule).
        standardization: z-scoring and embedding net (``y`` ``(batch, dim_y)``;
            a trained embedding net is weight-averaged with the denoiser).
        basis: PCA eigenvectors ``(D, D)`` (columns, descending eigenvalues).
        steps: Heun steps of the fixed-step solver (see ``DEFAULT_STEPS``).
        solver: ``"heun"`` (fixed steps, the paper's) or ``"adaptive"`` (zuko's
            Dormand-Prince).
        atol: Absolute tolerance of the adaptive solver, in units of the
            smallest latent scale (see :meth:`_absolute_tolerance`).
        rtol: Relative tolerance of the adaptive solver.
        exact_trace_max_dim: Exact trace up to this many parameters, Hutchinson
            above.
        validation_draws: Fixed (time, noise) draws per validation pair; the
            validation loss is their mean.
        theta_support: The prior's support, to learn in unbounded space: the flow
            models the parameters mapped through the inverse of
            ``theta_transform = biject_to(theta_support)`` (see
            :mod:`~sbi_allinone.inflationary.bounded`), and ``log_prob`` is
            ``-inf`` outside it. ``None``: the parameters as they are.
        sample_steps: Steps of ``sample`` (default: ``steps``), network calls for
            the multistep solver; ``log_prob`` and the transforms use ``steps``.
        sample_solver: ``sample``'s solver (default: ``solver``); ``"multistep"``
            (PR-preserving schedules only) calls the network once a step, see
            :mod:`~sbi_allinone.inflationary.sampling`.
        adjustment: ``W`` ``(dim_y, D)`` and ``b`` ``(D,)`` of the linear
            regression adjustment (:mod:`~sbi_allinone.inflationary.adjustment`);
            ``None``: none.
    """

    #: ``log_prob`` integrates the ODE without a graph (the trace's gradients are
    #: detached), so it has no gradient: the posterior's ``map`` refuses.
    log_prob_is_differentiable = False

    def __init__(
        self,
        denoiser: PreconditionedDenoiser,
        standardization: Standardization,
        basis: Tensor,
        steps: int = DEFAULT_STEPS["prp"],
        solver: Solver = "heun",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        exact_trace_max_dim: int = 10,
        validation_draws: int = DEFAULT_VALIDATION_DRAWS,
        theta_support: Constraint | None = None,
        sample_steps: int | None = None,
        sample_solver: SampleSolver | None = None,
        adjustment: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__(denoiser, standardization)
        self.theta_support = theta_support
        self.theta_transform: Transform | None = (
            None if theta_support is None else biject_to(theta_support)
        )
        embedding_net = standardization.embedding_net
        # A trained embedding net is averaged with the denoiser: the averaged F
        # was fitted to the averaged embedding's outputs.
        self._embedding_average = None
        trained = next(embedding_net.parameters(), None) is not None
        if denoiser.average is not None and trained:
            self._embedding_average = weight_average(embedding_net, denoiser.ema_decay)
        self._register_coordinates(basis, adjustment, standardization.dim_y)
        self.steps, self.solver = steps, solver
        self.atol, self.rtol = atol, rtol
        self.exact_trace_max_dim = exact_trace_max_dim
        if validation_draws < 1:
            raise ValueError(
                f"`validation_draws` must be at least 1, got {validation_draws}."
            )
        self.validation_draws = validation_draws
        self._check_solver(solver, steps)
        self.sample_steps = steps if sample_steps is None else sample_steps
        self.sample_solver = solver if sample_solver is None else sample_solver
        check_sample_solver(
            self.sample_solver, self.sample_steps, has_scalar_noise(self.schedule)
        )

    @staticmethod
    def _check_solver(solver: str, steps: int) -> None:
        if solver not in ("heun", "adaptive"):
            raise ValueError(f"`solver` must be 'heun' or 'adaptive', got {solver!r}.")
        if steps < 1:
            raise ValueError(f"`steps` must be at least 1, got {steps}.")

    @property
    def schedule(self):
        """The :class:`InflationarySchedule`."""
        return self.net.schedule

    # -- coordinates -----------------------------------------------------------------

    def _embed(self, x: Tensor) -> Tensor:
        """Data ``(batch, *x_shape)`` -> ``y`` ``(batch, dim_y)``, by the weight
        average of the embedding net (if kept) in eval mode."""
        embedding = self._embedding_net
        if self._embedding_average is not None and not self.training:
            embedding = self._embedding_average.module
        return embedding(self._standardize_x(x))

    def update_average(self) -> None:
        """One step of the weight averages of the denoiser and embedding net."""
        self.net.update_average()
        if self._embedding_average is not None:
            update_weight_average(self._embedding_average, self._embedding_net)

    # -- training --------------------------------------------------------------------

    def loss(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """Weighted denoising loss ``(batch,)``.

        In training, times are drawn by the denoiser's ``training_times`` and
        noise is standard normal, and each call first moves the weight averages
        (if kept) by one step: sbi's loop has no hook after ``optimizer.step()``,
        so the previous step's weights enter the average before the next step.
        In evaluation mode time and noise are ``validation_draws`` fixed
        functions of each (theta, x) pair and the loss is their mean, so the
        validation loss is the same function every epoch (sbi shuffles the
        validation set) and early stopping compares like with like.

        Args:
            input: Parameters ``(batch, D)``.
            condition: Data ``(batch, *x_shape)``.
        """
        if self.training:
            self.update_average()
        context = self._embed(condition)
        u = self.to_pca(input, context)
        if self.training:
            uniforms = torch.rand(u.shape[0], 1, device=u.device)
            return self._denoising_loss(u, uniforms, torch.randn_like(u), context)
        k = self.validation_draws
        draws = [_fixed_draws(input, condition, self.dim_theta, d) for d in range(k)]
        uniforms, noise = (torch.cat(parts) for parts in zip(*draws, strict=True))
        # All draws in one batch: at 100 validation rows a call is mostly overhead.
        stacked = (torch.cat([u] * k), uniforms, noise, torch.cat([context] * k))
        return self._denoising_loss(*stacked).reshape(k, -1).mean(0)

    def _denoising_loss(
        self, u: Tensor, uniforms: Tensor, noise: Tensor, context: Tensor
    ) -> Tensor:
        return self.net.loss(u, self.net.training_times(uniforms), noise, context)

    # -- the probability-flow ODE ------------------------------------------------------

    def drift(self, t: Tensor, z: Tensor, context: Tensor) -> Tensor:
        """``dz/dt`` ``(B, D)`` of the scaled pfODE at scalar time ``t``."""
        schedule = self.schedule
        t_shared = t.reshape(1, 1).to(z)  # time features once for the batch
        alpha, alpha_dot = schedule.alpha(t_shared), schedule.alpha_dot(t_shared)
        rate = schedule.rate()
        denoised = self.net(z / alpha, t_shared, context)
        return (alpha_dot / alpha + rate / 2) * z - alpha * rate / 2 * denoised

    def _times(self, forward: bool, steps: int) -> Tensor:
        schedule = self.schedule
        times = torch.linspace(schedule.t_min, schedule.t_max, steps + 1)
        return times if forward else times.flip(0)

    def _absolute_tolerance(self) -> float:
        """``atol`` in units of the smallest latent scale (relative to the largest).

        A PR-reducing schedule ends its compressed coordinates at about 1e-5 of the
        kept ones: an absolute tolerance of the kept scale would not control them
        (round trips off by 4e-3 on gaussian_linear, against 2e-5 this way).
        PR-preserving latents have equal scales, so ``atol`` is unchanged there.
        """
        variance = self.schedule.latent_variance()
        return self.atol * (variance.min() / variance.max()).sqrt().item()

    def _integrate(
        self, z: Tensor, context: Tensor, forward: bool, steps: int | None = None,
        solver: str = "",
    ) -> Tensor:  # fmt: skip
        """Integrate the pfODE from ``t_min`` to ``T`` (``forward``) or back, in
        ``steps`` Heun steps (default ``self.steps``) or adaptively (``solver``,
        default ``self.solver``)."""

        def field(t: Tensor, z: Tensor) -> Tensor:
            return self.drift(t, z, context)

        if (solver or self.solver) == "adaptive":
            t0, t1 = self.schedule.t_min, self.schedule.t_max
            if not forward:
                t0, t1 = t1, t0
            return integrate_adaptive(
                field, z, t0, t1, self._absolute_tolerance(), self.rtol
            )
        steps = self.steps if steps is None else steps
        return heun(field, z, self._times(forward, steps))

    def _integrate_with_trace(
        self, z: Tensor, context: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Forward integration of ``(z, int tr)``; Heun or adaptive."""
        probe = rademacher(z) if self.dim_theta > self.exact_trace_max_dim else None

        def field(t: Tensor, z: Tensor) -> Tensor:
            return self.drift(t, z, context)

        if self.solver == "adaptive":
            schedule = self.schedule
            adaptive = (
                schedule.t_min, schedule.t_max, self._absolute_tolerance(), self.rtol
            )  # fmt: skip
            return integrate_with_divergence(field, z, probe=probe, adaptive=adaptive)
        times = self._times(forward=True, steps=self.steps)
        return integrate_with_divergence(field, z, times, probe)

    # -- the sbi interface -----------------------------------------------------------

    def latent_log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; 0, Sigma_T)`` ``(B,)`` of scaled latents ``z`` ``(B, D)``."""
        return gaussian_log_prob(z, self.schedule.latent_variance().to(z))

    @torch.no_grad()
    def log_prob(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """``log q(theta | x)`` ``(sample_dim, batch_dim)`` by the change of variables.

        Args:
            input: ``(sample_dim, batch_dim, D)`` or ``(batch_dim, D)``.
            condition: ``(batch_dim, *x_shape)`` or
                ``(sample_dim, batch_dim, *x_shape)``.
        """
        theta, x, num_samples = self._flatten(input, condition)
        schedule = self.schedule
        t0 = torch.full((1, 1), schedule.t_min).to(theta)
        alpha0 = schedule.alpha(t0)
        y = self._embed(x)
        z, integral = self._integrate_with_trace(alpha0 * self.to_pca(theta, y), y)
        log_q = (
            self.latent_log_prob(z)
            + integral
            + self.dim_theta * alpha0.log().squeeze()
            - self.theta_std.log().sum()
            + log_abs_det_unbounding(self.theta_transform, self.theta_support, theta)
        )
        return log_q.reshape(num_samples, -1)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size, condition: Tensor, **kwargs) -> Tensor:
        """Samples ``(*sample_shape, batch_dim, D)`` by integrating from the latent.

        Args:
            sample_shape: Samples per condition.
            condition: ``(batch_dim, *x_shape)``.
        """
        return super().sample(sample_shape, condition)

    def _sample_given(self, y: Tensor) -> Tensor:
        scale = self.schedule.latent_variance().sqrt().to(y)
        z = scale * torch.randn(y.shape[0], self.dim_theta, device=y.device)
        rows = CACHE_FRIENDLY_ROWS
        runs = zip(z.split(rows), y.split(rows), strict=True)
        return torch.cat([self._latent_run_to_theta(*run) for run in runs])

    def _latent_run_to_theta(self, z: Tensor, y: Tensor) -> Tensor:
        steps, solver = self.sample_steps, self.sample_solver
        if solver == "multistep":
            u = multistep_latent_to_pca(self.net, self.schedule, z, y, steps)
            return self.from_pca(u, y)
        return self._latent_to_theta(z, y, steps, solver)

    def _latent_to_theta(
        self, z: Tensor, context: Tensor, steps: int | None = None, solver: str = ""
    ) -> Tensor:
        t0 = torch.full((1, 1), self.schedule.t_min).to(z)
        z0 = self._integrate(z, context, forward=False, steps=steps, solver=solver)
        return self.from_pca(z0 / self.schedule.alpha(t0), context)

    @torch.no_grad()
    def inverse_transform(self, theta: Tensor, x: Tensor) -> Tensor:
        """Parameters to scaled latents at ``T``: ``(B, D)`` -> ``(B, D)``.

        Latent coordinates follow the PCA order (largest variance first); under the
        model ``z ~ N(0, Sigma_T)``, ``Sigma_T = schedule.latent_variance()``.

        Args:
            theta: ``(B, D)``.
            x: ``(B, *x_shape)`` or ``(1, *x_shape)``.
        """
        theta, x, _ = self._flatten(theta, x)
        schedule = self.schedule
        t0 = torch.full((1, 1), schedule.t_min).to(theta)
        y = self._embed(x)
        return self._integrate(schedule.alpha(t0) * self.to_pca(theta, y), y, True)

    @torch.no_grad()
    def transform(self, z: Tensor, x: Tensor) -> Tensor:
        """Scaled latents ``(B, D)`` back to parameters ``(B, D)``.

        Args:
            z: ``(B, D)``.
            x: ``(B, *x_shape)`` or ``(1, *x_shape)``.
        """
        return self._latent_to_theta(z, self._embed_for_latents(z, x, self.dim_theta))


def _fixed_draws(
    theta: Tensor, x: Tensor, dim: int, draw: int = 0
) -> tuple[Tensor, Tensor]:
    """A uniform ``(B, 1)`` and standard normals ``(B, dim)`` that are fixed
    functions of each row of ``(theta, x)`` and of ``draw``."""
    rows = torch.cat([theta.reshape(len(theta), -1), x.reshape(len(x), -1)], dim=-1)
    uniforms, normals = fixed_draws(rows, 1, dim, draw)
    return uniforms.to(theta), normals.to(theta)
