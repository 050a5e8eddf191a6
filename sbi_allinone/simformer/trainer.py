"""``Simformer``: an sbi trainer for the joint of parameters and data.

Drop-in for sbi's ``NPE``: ``Simformer(prior).append_simulations(theta, x).train()``,
then :meth:`Simformer.build_posterior` (p(θ|x)), :meth:`Simformer.build_likelihood`
(p(x|θ)) or :meth:`Simformer.build_conditional` (any split) from the one network.
Training reuses sbi's loop (validation split, early stopping, best-state restore).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sbi.inference.trainers.base import NeuralInference
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.diffusion.noise import NoiseLevels, make_noise
from sbi_allinone.diffusion.optimizer import flush_denormal
from sbi_allinone.sbi_internals import store_prior_round
from sbi_allinone.simformer.estimator import (
    MaskKind,
    SimformerEstimator,
    check_attention,
)
from sbi_allinone.simformer.grouping import check_group_size, x_groups
from sbi_allinone.simformer.guidance import Constraint
from sbi_allinone.simformer.inputs import (
    SimulationTokens,
    check_variables,
    checked_simulations,
    warn_unused_graph,
)
from sbi_allinone.simformer.loop import StepsTrainingLoop, sbi_config, steps_not_epochs
from sbi_allinone.simformer.masks import check_dag
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.posterior import (
    DEFAULT_ODE_SOLVER,
    SampleWith,
    SimformerPosterior,
)
from sbi_allinone.simformer.schedule import default_batch_size, default_num_steps
from sbi_allinone.simformer.series import SeriesPosterior
from sbi_allinone.simformer.tokens import Tokens, Variables

__all__ = ["Simformer", "default_batch_size", "default_num_steps"]


class Simformer(SimulationTokens, StepsTrainingLoop, NeuralInference):
    """Train one score model of :math:`p(\\theta, x)`; sample any conditional.

    Args:
        prior: Prior over parameters (used for prior-support rejection of posterior
            samples and by sbi's diagnostics).
        sde: Training noise levels: ``"edm"`` (default: EDM's log-normal levels
            and unit preconditioned weight), the paper's ``"ve"`` or ``"vp"`` SDE,
            or a :class:`~sbi_allinone.diffusion.noise.NoiseLevels`. The network is
            EDM-preconditioned in every case.
        attention: ``"dense"``, ``"undirected"`` or ``"directed"`` (need ``graph``).
        graph: Dependency DAG ``(n, n)`` over ``[theta, x]`` (row = child, column =
            parent), e.g. from :func:`~.masks.adjacency_from_parents`.
        net_kwargs: Keyword arguments of :class:`~.network.SimformerNet`.
        ema_decay: Decay per optimizer step of the weight average used for
            validation, sampling and densities; ``None``: the live weights.
        device: Training device.
        logging_level: sbi's logging level.
        tracker: sbi tracker; ``None`` uses sbi's TensorBoard default.
        show_progress_bars: Show training progress.
        variables: Names and shapes of parameters and data
            (:class:`~.tokens.Variables`), for series (values at per-simulation
            times, any number of them) and function-valued parameters; needs dense
            attention. ``None``: ``theta`` and ``x`` are fixed-size vectors.
        x_per_token: Data values per token, for high-dimensional ``x``: its
            values in consecutive groups of this size (the last may hold fewer)
            share a token, which cuts attention's cost by about its square;
            parameters keep one token each. Not with ``variables``.
    """

    def __init__(
        self,
        prior: Distribution | None = None,
        sde: str | NoiseLevels = "edm",
        attention: MaskKind = "dense",
        graph: Tensor | None = None,
        net_kwargs: dict[str, Any] | None = None,
        ema_decay: float | None = 0.999,
        device: str = "cpu",
        logging_level: int | str = "WARNING",
        tracker: Any = None,
        show_progress_bars: bool = True,
        variables: Variables | None = None,
        x_per_token: int = 1,
    ) -> None:
        super().__init__(
            prior=prior,
            device=device,
            logging_level=logging_level,
            tracker=tracker,
            show_progress_bars=show_progress_bars,
        )
        self._noise = make_noise(sde)
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1) or None, got {ema_decay}.")
        self._ema_decay = ema_decay
        check_attention(attention, graph)
        warn_unused_graph(attention, graph)
        self._attention = attention
        self._graph = None if graph is None else check_dag(graph)
        self._net_kwargs = dict(net_kwargs or {})
        self._num_parameters: int | None = None
        self._num_data: int | None = None
        self._x_shape: tuple[int, ...] | None = None
        self._variables = check_variables(variables, attention)
        check_group_size(x_per_token)
        if variables is not None and x_per_token != 1:
            raise ValueError("`x_per_token` cannot be combined with `variables`.")
        self._x_per_token = x_per_token
        self._channels: tuple[str, ...] | None = None
        self._tokens: Tokens | None = None

    def append_simulations(
        self,
        theta: Tensor,
        x: Tensor,
        proposal: Any = None,
        exclude_invalid_x: bool | None = None,
        data_device: str | None = None,
        metadata: dict[str, dict[str, Tensor]] | None = None,
    ) -> Simformer:
        """Store simulations; NaN or inf entries of ``x`` count as missing.

        Args:
            theta: Parameters, ``(num_simulations, num_parameters)``; with
                ``variables``, also a dict of each parameter's values (series
                NaN-padded ``(num_simulations, K)``).
            x: Simulations, ``(num_simulations, *x_shape)``; flattened to one token
                per scalar. Missing (non-finite) entries are neither targets nor
                conditions in training. With ``variables``, also a dict as
                ``theta``.
            proposal: Must be ``None`` (the prior): the joint is learned from prior
                simulations only.
            exclude_invalid_x: Not used (kept for sbi's signature): missing entries
                are used, not excluded.
            data_device: Not used; data stay on the CPU.
            metadata: With ``variables``: channel name (e.g. ``"time"``) to series
                name to ``(num_simulations, K)`` metadata, NaN where padded.

        Returns:
            The trainer, for chaining.
        """
        if proposal is not None:
            raise ValueError(
                "Simformer learns the joint from prior simulations: `proposal` "
                "must be None."
            )
        if self._variables is None:
            if metadata is not None:
                raise ValueError(
                    "`metadata` describes series: build `Simformer(prior, "
                    "variables=Variables(...))`."
                )
            theta, x, x_shape = checked_simulations(theta, x, self._prior)
        else:
            theta, x = self._arranged(theta, x, metadata)
            x_shape = None
        self._check_same_shapes(theta.shape[1], x.shape[1], x_shape)
        store_prior_round(self, theta, x)
        return self

    def _check_same_shapes(
        self, num_parameters: int, num_data: int, x_shape: tuple[int, ...] | None
    ) -> None:
        """Store the shapes of the first simulations; later ones must match."""
        shape = (num_parameters, num_data, x_shape)
        if self._num_parameters is not None:
            earlier = (self._num_parameters, self._num_data, self.x_shape)
            if shape != earlier:
                raise ValueError(
                    f"New simulations have (num_parameters, num_data, x_shape) = "
                    f"{shape}, earlier ones {earlier} (x_shape None: flat)."
                )
        self._num_parameters, self._num_data, self._x_shape = shape

    def train(
        self,
        training_batch_size: int | None = None,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.05,
        num_steps: int | None = None,
        steps_per_epoch: int = 100,
        stop_after_epochs: int = 20,
        clip_max_norm: float | None = 5.0,
        validation_draws: int = 4,
        resume_training: bool = False,
        retrain_from_scratch: bool = False,
        show_train_summary: bool = False,
        mask_weights: dict[str, float] | None = None,
    ) -> SimformerEstimator:
        """Train the denoiser with random condition masks: epochs of
        :class:`~sbi_allinone.simformer.loop.StepsTrainingLoop` in sbi's loop
        (validation every ``steps_per_epoch`` steps, early stopping, best state
        restored), defaults from :mod:`~sbi_allinone.simformer.schedule`.

        Args:
            training_batch_size: Examples per step; default
                :func:`default_batch_size` of the number of variables.
            learning_rate: Initial Adam learning rate (paper: 1e-3).
            validation_fraction: Held-out fraction (paper: 5 %).
            num_steps: Optimizer steps; default :func:`default_num_steps`.
            steps_per_epoch: Steps between validations.
            stop_after_epochs: Early-stopping patience, in epochs, counted from
                the start of the learning-rate decay (half of ``num_steps``):
                training never stops in the first half.
            clip_max_norm: Gradient-norm clip, or ``None``.
            validation_draws: Fixed draws per validation example.
            resume_training: Continue the previous run (same split, optimizer).
            retrain_from_scratch: Build a fresh network.
            show_train_summary: Print sbi's summary.
            mask_weights: Weights of the training and validation condition masks
                by kind (:data:`~.condition.MASK_KINDS`, unnamed ones 0); ``None``:
                1/5 each (paper). More ``"posterior"`` narrows series posteriors.

        Returns:
            The trained estimator.
        """
        num_epochs, batch_size = self._set_schedule(
            num_steps, training_batch_size, steps_per_epoch, learning_rate
        )
        self._set_losses(validation_draws, mask_weights)
        loaders = self._split_values(batch_size, validation_fraction, resume_training)
        if self._neural_net is None or retrain_from_scratch:
            self._initialize_neural_network(retrain_from_scratch, 0)
        config = sbi_config(
            batch_size,
            num_epochs,
            learning_rate=learning_rate,
            validation_fraction=validation_fraction,
            stop_after_epochs=stop_after_epochs,
            resume_training=resume_training,
            retrain_from_scratch=retrain_from_scratch,
            show_train_summary=show_train_summary,
            clip_max_norm=clip_max_norm,
        )
        with flush_denormal(), steps_not_epochs(self._num_steps):
            return self._run_training_loop(*loaders, config)

    def _initialize_neural_network(
        self, retrain_from_scratch: bool, start_idx: int
    ) -> None:
        mean, std = self._statistics(self._train_values)
        num_nodes = mean.numel()
        if self._graph is not None:
            check_dag(self._graph, num_nodes)
        # Weights, buffers and the weight average made where they will live.
        with torch.device(self._device):
            net = SimformerNet(
                num_nodes,
                **self._net_kwargs,
                metadata_statistics=self._meta_statistics(),
                groups=self._groups(),
            )
            self._neural_net = SimformerEstimator(
                net,
                self._noise,
                self._num_parameters,
                mean,
                std,
                graph=self._graph,
                attention=self._attention,
                ema_decay=self._ema_decay,
            ).to(self._device)

    def _groups(self) -> list[int] | None:
        if self._x_per_token == 1:
            return None
        return x_groups(self._num_parameters, self._num_data, self._x_per_token)

    def _get_potential_function(self, prior, estimator):  # noqa: ANN001
        raise RuntimeError(
            "Simformer builds its posteriors directly: use `build_posterior`, "
            "`build_likelihood` or `build_conditional`."
        )

    @property
    def _trained(self) -> SimformerEstimator:
        self._check_not_diverged()
        if self._neural_net is None:
            raise ValueError("Train the Simformer first: call `train()`.")
        return self._neural_net

    @property
    def num_parameters(self) -> int | None:
        """Number of parameter variables, once simulations are appended."""
        return self._num_parameters

    @property
    def x_shape(self) -> tuple[int, ...] | None:
        """Shape of one simulation ``x`` if not flat (e.g. ``(1, 3)``), else None."""
        return getattr(self, "_x_shape", None)

    @property
    def num_data(self) -> int | None:
        """Number of data variables, once simulations are appended."""
        return self._num_data

    def build_conditional(
        self,
        condition_mask: Tensor,
        sample_with: SampleWith | None = None,
        steps: int | None = None,
        prior: Distribution | None = None,
        guidance: Sequence[Constraint] | None = None,
        recurrence: int | None = None,
        ode_solver: str | None = None,
        constrain_by: str = "guidance_through_network",
    ) -> SimformerPosterior:
        """Any conditional of the joint: ``p(latent | conditioned)``.

        Args:
            condition_mask: ``(num_parameters + num_data,)`` booleans over
                ``[theta, x]``, ``True`` for conditioned variables.
            sample_with: ``"ode"`` (default; the probability-flow ODE) or ``"sde"``
                (EDM's stochastic sampler; the default with ``guidance``).
            steps: Sampler steps (default
                :data:`~sbi_allinone.simformer.posterior.DEFAULT_STEPS`).
            prior: Prior for support rejection (default: the trainer's).
            guidance: Constraints (:mod:`~sbi_allinone.simformer.constraints`),
                e.g. ``[Interval(node=3, low=0.0, high=1.0)]`` (see
                :mod:`~sbi_allinone.simformer.guidance`); sampled by the SDE.
            recurrence: Self-recurrence (default: 5 with guidance, else 1).
            ode_solver: ``"multistep"`` or ``"heun"`` (default
                :data:`~sbi_allinone.simformer.posterior.DEFAULT_ODE_SOLVER`).
            constrain_by: ``"guidance_through_network"`` (default),
                ``"guidance"`` (the paper's) or ``"rejection"`` (see the
                posterior's).

        Returns:
            An sbi posterior whose ``theta`` is the latent variables and whose
            ``x`` is the conditioned ones.
        """
        return SimformerPosterior(
            self._trained,
            condition_mask,
            prior=self._prior if prior is None else prior,
            sample_with=sample_with,
            steps=steps,
            guidance=guidance,
            recurrence=recurrence,
            constrain_by=constrain_by,
            ode_solver=ode_solver or DEFAULT_ODE_SOLVER,
            device=str(self._device),
            event_shape=self.x_shape,
        )

    def build_posterior(
        self,
        sample_with: SampleWith | None = None,
        steps: int | None = None,
        **kwargs: Any,
    ) -> SimformerPosterior | SeriesPosterior:
        """The posterior ``p(theta | x)`` (arguments as :meth:`build_conditional`).

        With ``variables``: a :class:`~.series.SeriesPosterior`, whose ``sample``
        takes observations with any number of points (and their metadata), and
        also gives any other conditional (e.g. the posterior predictive at new
        times); it samples by the ODE.
        """
        if self._variables is not None:
            return self._series_posterior(sample_with, steps, **kwargs)
        return self.build_conditional(
            self._role_mask(data=True), sample_with, steps, **kwargs
        )

    def _series_posterior(
        self, sample_with: SampleWith | None, steps: int | None, **kwargs: Any
    ) -> SeriesPosterior:
        kwargs.setdefault("prior", self._prior)
        return SeriesPosterior.build(
            self._trained, self._variables, self._channels, sample_with, steps,
            device=str(self._device), **kwargs,
        )  # fmt: skip

    def build_likelihood(
        self,
        sample_with: SampleWith | None = None,
        steps: int | None = None,
        **kwargs: Any,
    ) -> SimformerPosterior:
        """The likelihood ``p(x | theta)`` from the same network (arguments as
        :meth:`build_conditional`; ``guidance`` constrains ``x``)."""
        mask = self._role_mask(data=False)
        return self.build_conditional(mask, sample_with, steps, **kwargs)

    def _role_mask(self, data: bool) -> Tensor:
        if self._num_parameters is None:
            raise ValueError("No simulations: call `append_simulations` first.")
        num_nodes = self._num_parameters + self._num_data
        is_data = torch.arange(num_nodes, device=self._device) >= self._num_parameters
        return is_data if data else ~is_data
