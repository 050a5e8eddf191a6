"""sbi posteriors for any conditional of a trained Simformer.

A :class:`SimformerPosterior` is :math:`p(\\text{latent} \\mid \\text{condition})` for a
fixed condition mask over ``[theta, x]``: the posterior (condition = data), the
likelihood (condition = parameters) or any other split. In sbi's vocabulary its
"theta" is the latent variables and its "x" the conditioned ones, so ``sample``,
``sample_batched``, ``log_prob``, ``map`` and ``set_default_x`` behave as on sbi's
posteriors and sbi's diagnostics (SBC, TARP, expected coverage, C2ST) accept it.
NaN entries of a condition are missing: the conditional is then on the observed
entries only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from sbi.inference.posteriors.base_posterior import NeuralPosterior
from sbi.inference.potentials.vector_field_potential import (
    CallableDifferentiablePotentialFunction,
)
from sbi.utils.sbiutils import gradient_ascent, warn_if_outside_prior_support
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.simformer.checks import (
    check_condition_mask,
    check_constrain_by,
    check_guidance,
    check_sampler,
    check_steps,
    checked_condition,
    estimator_device,
    sample_sizes,
)
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.guidance import Constraint, Guidance
from sbi_allinone.simformer.potential import CACHE_FRIENDLY_ROWS, ConditionalPotential
from sbi_allinone.simformer.sampling import sample_ode, sample_sde
from sbi_allinone.simformer.shapes import as_matrix, check_count
from sbi_allinone.simformer.support import (
    check_feasible,
    constraint_check,
    sample_in_support,
    warn_violations,
)

# ConditionalPotential (from .potential) stays importable from here.
__all__ = ["ConditionalPotential", "SimformerPosterior"]

SampleWith = Literal["sde", "ode"]

#: Default sampler steps: of the ODE (multistep network calls; Heun takes ``2 steps
#: - 1``), and of EDM's stochastic sampler (``2 steps - 1`` calls; first order: 1 %
#: variance error on a Gaussian at 128 steps). 24 calls on the log grid were within
#: 0.003 C2ST of 128 on four tasks (``docs/benchmarks/simformer_sampling_steps.md``).
DEFAULT_STEPS = {"ode": 24, "sde": 128}
#: Self-recurrence of guided sampling unless given (the paper's; on HH, guided samples
#: kept the bound by the model's own likelihood 0.37-0.51 of the time at 1, 0.75-0.93
#: at 5).
GUIDED_RECURRENCE = 5
#: The ODE's default solver: the second-order multistep solver matches Heun's C2ST
#: at half the network calls (two_moons: 0.588 at 32 calls against 0.589 at 63).
DEFAULT_ODE_SOLVER = "multistep"


class SimformerPosterior(NeuralPosterior):
    """One conditional of a trained Simformer, as an sbi ``NeuralPosterior``.

    Args:
        estimator: Trained :class:`~.estimator.SimformerEstimator`.
        condition_mask: ``(n,)`` booleans over ``[theta, x]``, ``True`` for the
            conditioned variables.
        prior: Parameter prior; posterior samples outside its support are
            rejected (only when the latent variables are exactly the parameters).
        sample_with: ``"ode"`` (probability-flow ODE, Heun on EDM's grid) or
            ``"sde"`` (EDM's stochastic sampler). Default: ``"ode"``, or
            ``"sde"`` with ``guidance``.
        steps: Steps of the sampler, at least 2 (default :data:`DEFAULT_STEPS`).
        ode_solver: Solver of the ODE sampler: ``"multistep"`` (second order, one
            network call a step) or ``"heun"`` (EDM's Alg. 1, two calls a step).
        log_prob_steps: Heun steps of the log-probability ODE.
        guidance: Constraints (:mod:`.constraints`, user units, over ``[theta, x]``)
            imposed by guidance. Needs the stochastic sampler; the guided
            conditional has no tractable density (``log_prob`` and ``map`` raise).
        recurrence: Self-recurrence of the sampler (default: 5 with guidance, the
            paper's :data:`GUIDED_RECURRENCE`, else 1).
        constrain_by: ``"guidance_through_network"`` (default: soft guidance,
            its gradient through the denoiser, which moves correlated variables
            too), ``"guidance"`` (the paper's: the gradient at the Tweedie
            estimate; 2.3x cheaper) or ``"rejection"`` (exact for the model).
        device: Device of sampling and densities: the estimator's (the default;
            another one raises). Conditions, latent values and every tensor
            made here are on it.
        event_shape: Shape of one condition before flattening (e.g. ``(1, 3)``
            for simulations ``x`` of shape ``(N, 1, 3)``): ``x`` may then also be
            given as ``(batch, *event_shape)``.
    """

    def __init__(
        self,
        estimator: SimformerEstimator,
        condition_mask: Tensor,
        prior: Distribution | None = None,
        sample_with: SampleWith | None = None,
        steps: int | None = None,
        ode_solver: str = DEFAULT_ODE_SOLVER,
        log_prob_steps: int = 64,
        guidance: Sequence[Constraint] | None = None,
        recurrence: int | None = None,
        constrain_by: str = "guidance_through_network",
        device: str | None = None,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        device = estimator_device(estimator, device)
        condition_mask = check_condition_mask(
            condition_mask, estimator.num_nodes, device
        )
        guidance, steps = check_guidance(guidance), check_steps(steps)
        self.constrain_by = check_constrain_by(constrain_by)
        guided = bool(guidance) and constrain_by != "rejection"
        sample_with = check_sampler(sample_with, ode_solver, guided)
        default = GUIDED_RECURRENCE if guided else 1
        self.recurrence = check_count(
            default if recurrence is None else recurrence, "recurrence"
        )
        check_count(log_prob_steps, "log_prob_steps")
        self.estimator = estimator.eval()
        self.condition_mask = condition_mask
        self.sample_with = sample_with
        self.steps = DEFAULT_STEPS[sample_with] if steps is None else steps
        self.ode_solver = ode_solver
        latent = ~condition_mask
        nodes = torch.arange(estimator.num_nodes, device=device)
        is_parameters = nodes < estimator.num_parameters
        self.prior = prior if torch.equal(latent, is_parameters) else None
        is_data = torch.equal(condition_mask, ~is_parameters)
        self.event_shape = tuple(event_shape) if event_shape and is_data else None
        self.guidance = None
        if guidance:
            mean, std = estimator.mean, estimator.std
            through = constrain_by == "guidance_through_network"
            self.guidance = Guidance(guidance, mean, std, latent, through)
            check_feasible(self.guidance, self.prior, mean, std, latent)
        potential = ConditionalPotential(
            self.estimator, condition_mask, self.prior, log_prob_steps, str(device)
        )
        super().__init__(potential, device=str(device))
        self._purpose = "Conditional of a Simformer (sampled by score diffusion)."

    @property
    def log_prob_steps(self) -> int:
        """Heun steps of the log-probability ODE."""
        return self.potential_fn.log_prob_steps

    @log_prob_steps.setter
    def log_prob_steps(self, steps: int) -> None:
        self.potential_fn.log_prob_steps = steps

    @property
    def num_latent(self) -> int:
        return int((~self.condition_mask).sum())

    def _check_x(self, x: Tensor) -> Tensor:
        event_shape = getattr(self, "event_shape", None)
        return checked_condition(x, self.condition_mask, self.estimator, event_shape)

    def set_default_x(self, x: Tensor) -> SimformerPosterior:
        """Set the condition used when ``x`` is not passed (NaN entries allowed)."""
        self._x = self._check_x(x)
        self._map = None
        return self

    def _x_else_default_x(self, x: Tensor | None) -> Tensor:
        # sbi's version rejects NaN; here NaN marks a missing entry.
        if x is not None:
            return self._check_x(x)
        if self.default_x is None:
            raise ValueError("Pass `x` or set one with `set_default_x`.")
        return self.default_x

    def _draw(self, x: Tensor, num: int) -> Tensor:
        """``(num, batch, num_latent)`` samples for conditions ``x``, drawn in runs
        of :data:`CACHE_FRIENDLY_ROWS` rows."""
        rows = x.repeat(num, 1)
        chunks = [self._draw_rows(c) for c in rows.split(CACHE_FRIENDLY_ROWS)]
        out = torch.cat(chunks) if chunks else rows[:, :0].new_zeros(0, 0)
        return out.reshape(num, len(x), self.num_latent)

    def _draw_rows(self, x_rows: Tensor) -> Tensor:
        values, missing = self.potential_fn.standardized_rows(None, x_rows)
        condition = self.condition_mask.expand_as(values)
        if self.sample_with == "sde":
            out = sample_sde(
                self.estimator,
                values,
                condition,
                missing,
                steps=self.steps,
                guidance=None if self.constrain_by == "rejection" else self.guidance,
                recurrence=self.recurrence,
            )
        else:
            out = sample_ode(
                self.estimator, values, condition, missing, self.steps, self.ode_solver
            )
        return self.estimator.unstandardize(out)[:, ~self.condition_mask]

    def sample(
        self,
        sample_shape: Any = (),
        x: Tensor | None = None,
        show_progress_bars: bool = False,
        max_sampling_batch_size: int = 10_000,
        reject_outside_prior: bool = True,
        max_sampling_time: float | None = None,
        return_partial_on_timeout: bool = False,
    ) -> Tensor:
        """Draw samples of the latent variables given one condition ``x``.

        Args:
            sample_shape: Shape of the samples.
            x: Conditioned values ``(1, num_condition)`` (NaN = missing); default
                the one set by ``set_default_x``.
            show_progress_bars: Show rejection-sampling progress.
            max_sampling_batch_size: Samples per proposal of the rejection loop
                (drawn in runs of :data:`CACHE_FRIENDLY_ROWS`).
            reject_outside_prior: Reject samples outside the prior's support (for
                the posterior of the parameters); ``False``: return them as drawn
                (with a warning if many lie outside).
            max_sampling_time: Seconds after which rejection sampling stops (a
                ``RuntimeError``, as sbi's). Without it, sampling stops with a
                ``RuntimeError`` when none of the first
                :data:`~.support.MIN_PROPOSALS` samples lies in the support.
            return_partial_on_timeout: On timeout, return the samples accepted
                so far, ``(num_accepted, num_latent)``, with a warning.

        Returns:
            ``(*sample_shape, num_latent)`` samples.
        """
        x = self._x_else_default_x(x)
        if x.shape[0] != 1:
            raise ValueError("`sample` takes one `x`; use `sample_batched` for more.")
        sizes = sample_sizes(sample_shape)
        samples = self._sample_rows(
            x, sizes, show_progress_bars, max_sampling_batch_size,
            reject_outside_prior, max_sampling_time, return_partial_on_timeout,
        )  # fmt: skip
        return samples.squeeze(-2)

    def sample_batched(
        self,
        sample_shape: Any,
        x: Tensor,
        show_progress_bars: bool = False,
        max_sampling_batch_size: int = 10_000,
        reject_outside_prior: bool = True,
        max_sampling_time: float | None = None,
        return_partial_on_timeout: bool = False,
    ) -> Tensor:
        """Draw samples for each of a batch of conditions, vectorized.

        Args:
            sample_shape: Shape of the samples per condition.
            x: Conditions ``(batch, num_condition)``.
            show_progress_bars: Show rejection-sampling progress.
            max_sampling_batch_size: Rows (samples × conditions) per proposal of
                the rejection loop.
            reject_outside_prior: As :meth:`sample`.
            max_sampling_time: As :meth:`sample`.
            return_partial_on_timeout: As :meth:`sample`.

        Returns:
            ``(*sample_shape, batch, num_latent)`` samples.
        """
        sizes = sample_sizes(sample_shape)
        return self._sample_rows(
            self._check_x(x), sizes, show_progress_bars, max_sampling_batch_size,
            reject_outside_prior, max_sampling_time, return_partial_on_timeout,
        )  # fmt: skip

    def _sample_rows(
        self,
        x: Tensor,
        sizes: list[int],
        show_progress_bars: bool,
        max_sampling_batch_size: int,
        reject_outside_prior: bool,
        max_sampling_time: float | None,
        return_partial_on_timeout: bool,
    ) -> Tensor:
        """``(*sizes, batch, num_latent)`` samples for checked conditions ``x``
        (``(num_accepted, batch, num_latent)`` on a partial timeout)."""
        num = int(torch.Size(sizes).numel())
        check_count(max_sampling_batch_size, "max_sampling_batch_size")
        prior = self.prior if reject_outside_prior else None
        rejected = self.guidance if self.constrain_by == "rejection" else None
        samples = sample_in_support(
            lambda k: self._draw(x, k), prior, num, len(x), max_sampling_batch_size,
            show_progress_bars, max_sampling_time, return_partial_on_timeout,
            constraint_check(rejected, self.potential_fn, x),
        )  # fmt: skip
        if self.prior is not None and not reject_outside_prior:
            warn_if_outside_prior_support(self.prior, samples)
        if rejected is None:
            warn_violations(self.guidance, self.potential_fn, samples, x)
        if len(samples) != num:
            return samples
        return samples.reshape(*sizes, len(x), self.num_latent)

    def log_prob(self, theta: Tensor, x: Tensor | None = None) -> Tensor:
        """Log-density of latent values given ``x`` (probability-flow ODE).

        Args:
            theta: Latent values ``(batch, num_latent)``.
            x: One condition ``(1, num_condition)`` or one per row.

        Returns:
            ``(batch,)`` log-densities in original units.
        """
        self._no_density_under_guidance("log_prob")
        theta = self._check_theta(theta, "`theta` (the latent variables)")
        x = self._x_else_default_x(x)
        if len(x) not in (1, len(theta)):
            raise ValueError(
                f"`x` must have one row or one per row of `theta` ({len(theta)}), "
                f"got {len(x)}."
            )
        return self.potential_fn.log_prob_rows(theta, x.expand(len(theta), -1))

    def _check_theta(self, theta: Tensor, name: str) -> Tensor:
        return as_matrix(
            theta, self.num_latent, name, "batch", torch.float32, self._device
        )

    def _no_density_under_guidance(self, what: str) -> None:
        if self.guidance is not None:
            raise ValueError(
                f"`{what}` is not available with `guidance`: the guided conditional "
                "is defined by its sampler only and has no tractable density."
            )

    def map(
        self,
        x: Tensor | None = None,
        num_iter: int = 300,
        num_to_optimize: int = 100,
        learning_rate: float = 0.01,
        init_method: str | Tensor = "posterior",
        num_init_samples: int = 1000,
        save_best_every: int = 100,
        show_progress_bars: bool = False,
        force_update: bool = False,
    ) -> Tensor:
        """Maximum of the conditional density, by gradient ascent on the score.

        Uses the score at :math:`t_{min}` as the gradient of the log-density and the
        ODE log-density to pick the best of ``num_to_optimize`` starts (as sbi's
        score-based posteriors do).
        """
        self._no_density_under_guidance("map")
        for name, count in (
            ("num_iter", num_iter), ("num_to_optimize", num_to_optimize),
            ("num_init_samples", num_init_samples),
            ("save_best_every", save_best_every),
        ):  # fmt: skip
            check_count(count, name)
        if isinstance(init_method, str) and init_method != "posterior":
            raise ValueError(
                "`init_method` must be 'posterior' or a tensor of initial "
                f"parameters, got {init_method!r}."
            )
        inits = init_method
        if not isinstance(init_method, str):
            inits = self._check_theta(init_method, "`init_method` (initial values)")
        if x is not None:
            if len(self._check_x(x)) != 1:
                raise ValueError("`map` takes one `x` (a batch of one row).")
            self.set_default_x(x)
        if self.default_x is None:
            raise ValueError("Set `x` first with `set_default_x` (or pass `x`).")
        if self._map is None or force_update:
            self.potential_fn.set_x(self.default_x)
            differentiable = CallableDifferentiablePotentialFunction(self.potential_fn)
            if isinstance(inits, str):
                inits = self.sample((num_init_samples,))
            self._map = gradient_ascent(
                potential_fn=differentiable,
                inits=inits,
                theta_transform=self.theta_transform,
                num_iter=num_iter,
                num_to_optimize=num_to_optimize,
                learning_rate=learning_rate,
                save_best_every=save_best_every,
                show_progress_bars=show_progress_bars,
            )[0]
        return self._map
