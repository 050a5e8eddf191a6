"""``Simformer``: an sbi trainer for the joint of parameters and data.

Drop-in for sbi's ``NPE``: ``Simformer(prior).append_simulations(theta, x).train()``,
then :meth:`Simformer.build_posterior` (p(θ|x)), :meth:`Simformer.build_likelihood`
(p(x|θ)) or :meth:`Simformer.build_conditional` (any split) from the one network.
Training reuses sbi's loop (validation split, early stopping with best-state restore,
progress, tracker).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from sbi.inference.trainers.base import NeuralInference
from torch import Tensor
from torch.distributions import Distribution
from torch.nn.utils import clip_grad_norm_

from sbi_allinone.diffusion.noise import NoiseLevels, make_noise
from sbi_allinone.diffusion.validation import fixed_draws
from sbi_allinone.sbi_internals import (
    StartIndexContext,
    TrainConfig,
    num_stored_simulations,
    store_prior_round,
)
from sbi_allinone.simformer.condition import condition_masks, sample_condition_masks
from sbi_allinone.simformer.estimator import (
    MaskKind,
    SimformerEstimator,
    check_attention,
)
from sbi_allinone.simformer.guidance import Constraint
from sbi_allinone.simformer.masks import check_dag
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.posterior import (
    DEFAULT_ODE_SOLVER,
    SampleWith,
    SimformerPosterior,
)

__all__ = ["Simformer", "default_batch_size", "default_num_steps"]

MIN_LEARNING_RATE = 1e-6

#: Tokens (examples x variables) per default training batch.
TOKENS_PER_BATCH = 4_000


def default_batch_size(num_nodes: int) -> int:
    """Default examples per step: about :data:`TOKENS_PER_BATCH` tokens, so that a
    step costs about the same for any number of variables; between 200 and 500."""
    return min(max(TOKENS_PER_BATCH // num_nodes, 200), 500)


def default_num_steps(num_simulations: int) -> int:
    """Default optimizer steps of :meth:`Simformer.train`:
    ``clip(num_simulations / 2, 3000, 5000)``.

    Chosen by measurement (README, "Simformer: accuracy against training
    compute"): on two_moons at 1 000 simulations, 1 000 steps of 500 gave MLP C2ST
    0.690 and 3 000 steps 0.635 (observations 1-3).
    """
    return min(max(num_simulations // 2, 3_000), 5_000)


class Simformer(NeuralInference):
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
        self._attention = attention
        self._graph = None if graph is None else check_dag(graph)
        self._net_kwargs = dict(net_kwargs or {})
        self._num_parameters: int | None = None
        self._num_data: int | None = None

    def append_simulations(
        self,
        theta: Tensor,
        x: Tensor,
        proposal: Any = None,
        exclude_invalid_x: bool | None = None,
        data_device: str | None = None,
    ) -> Simformer:
        """Store simulations; NaN or inf entries of ``x`` count as missing.

        Args:
            theta: Parameters, ``(num_simulations, num_parameters)``.
            x: Simulations, ``(num_simulations, *x_shape)``; flattened to one token
                per scalar. Missing (non-finite) entries are neither targets nor
                conditions in training.
            proposal: Must be ``None`` (the prior): the joint is learned from prior
                simulations only.
            exclude_invalid_x: Not used (kept for sbi's signature): missing entries
                are used, not excluded.
            data_device: Not used; data stay on the CPU.

        Returns:
            The trainer, for chaining.
        """
        if proposal is not None:
            raise ValueError(
                "Simformer learns the joint from prior simulations: `proposal` "
                "must be None."
            )
        theta, x = torch.as_tensor(theta).float(), torch.as_tensor(x).float()
        if theta.ndim != 2:
            raise ValueError(
                "`theta` must have shape (num_simulations, num_parameters), got "
                f"{tuple(theta.shape)}."
            )
        x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
        if x.shape[0] != theta.shape[0]:
            raise ValueError(
                f"`theta` has {theta.shape[0]} rows but `x` has {x.shape[0]}: "
                "pass one simulation per parameter set."
            )
        if not torch.isfinite(theta).all():
            raise ValueError("`theta` contains NaN or inf values.")
        shape = (theta.shape[1], x.shape[1])
        if self._num_parameters is not None and shape != (
            self._num_parameters,
            self._num_data,
        ):
            raise ValueError(
                f"New simulations have (num_parameters, num_data) = {shape}, "
                f"earlier ones {(self._num_parameters, self._num_data)}."
            )
        self._num_parameters, self._num_data = shape
        missing = ~torch.isfinite(x)
        if missing.any():
            warnings.warn(
                f"{int(missing.sum())} entries of `x` ({int(missing.any(1).sum())} "
                "simulations) are NaN or inf; they are treated as missing: never "
                "targets nor conditions.",
                UserWarning,
                stacklevel=2,
            )
        x = torch.where(missing, torch.nan, x)
        store_prior_round(self, theta, x)
        return self

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
    ) -> SimformerEstimator:
        """Train the denoiser with random condition masks.

        Adam on batches drawn with replacement, the learning rate constant for
        the first half of the steps and decayed linearly to 1e-6 over the second
        (the paper's schedule), a weight average of the network for validation
        and sampling. sbi's loop validates every ``steps_per_epoch`` steps ("an
        epoch"), stops early after ``stop_after_epochs`` epochs without
        improvement and restores the best state. The validation loss averages
        ``validation_draws`` fixed (noise level, noise, condition mask) draws per
        example, so that it is the same function every epoch.

        The default number of steps, :func:`default_num_steps`, was chosen by
        measurement (README, "Simformer: accuracy against training compute"). The
        paper's ``clip(3 N, 5000, 100000)`` steps of 1000 are 3-10 times as many
        examples; on two_moons at 1 000 simulations the previous (VE) version's
        3 000 steps of 1 000 reached MLP C2ST 0.613 in 951 s, this default 0.593
        in 173 s (observations 1-3, one thread on a shared machine).

        Args:
            training_batch_size: Examples per step; default
                :func:`default_batch_size` of the number of variables.
            learning_rate: Initial Adam learning rate (paper: 1e-3).
            validation_fraction: Held-out fraction (paper: 5 %).
            num_steps: Optimizer steps; default :func:`default_num_steps`.
            steps_per_epoch: Steps between validations.
            stop_after_epochs: Early-stopping patience, in epochs.
            clip_max_norm: Gradient-norm clip, or ``None``.
            validation_draws: Fixed draws per validation example.
            resume_training: Continue the previous run (same split and optimizer).
            retrain_from_scratch: Build a fresh network.
            show_train_summary: Print sbi's summary.

        Returns:
            The trained estimator.
        """
        num_simulations = num_stored_simulations(self)
        if num_simulations == 0:
            raise ValueError("No simulations: call `append_simulations` first.")
        if num_steps is None:
            num_steps = default_num_steps(num_simulations)
        if training_batch_size is None:
            training_batch_size = default_batch_size(
                self._num_parameters + self._num_data
            )
        if num_steps < 2 or steps_per_epoch < 1 or training_batch_size < 1:
            raise ValueError(
                "`num_steps` must be at least 2 (sbi's loop runs two epochs or more), "
                "`steps_per_epoch` and `training_batch_size` positive; got "
                f"{num_steps}, {steps_per_epoch} and {training_batch_size}."
            )
        if validation_draws < 1:
            raise ValueError(
                f"`validation_draws` must be at least 1, got {validation_draws}."
            )
        # At least two "epochs", so that short runs still validate twice.
        steps_per_epoch = min(steps_per_epoch, num_steps // 2)
        self._steps_per_epoch, self._batch_size = steps_per_epoch, training_batch_size
        self._validation_draws = validation_draws
        num_epochs = -(-num_steps // steps_per_epoch)
        self._lr_schedule = (learning_rate, num_epochs)
        train_loader, val_loader = self.get_dataloaders(
            0, training_batch_size, validation_fraction, resume_training
        )
        theta, x, _ = self.get_simulations()
        values = torch.cat([theta, x], dim=1).to(self._device)
        self._train_values = values[self.train_indices]
        self._val_values = values[self.val_indices]
        if self._neural_net is None or retrain_from_scratch:
            self._initialize_neural_network(retrain_from_scratch, 0)
        config = TrainConfig(
            training_batch_size=training_batch_size,
            learning_rate=learning_rate,
            validation_fraction=validation_fraction,
            stop_after_epochs=stop_after_epochs,
            max_num_epochs=num_epochs - 1,  # sbi's loop runs max_num_epochs + 1
            resume_training=resume_training,
            retrain_from_scratch=retrain_from_scratch,
            show_train_summary=show_train_summary,
            clip_max_norm=clip_max_norm,
        )
        # Adam's second moments of rarely used parameters decay into denormal
        # numbers, on which the CPU's sqrt and division are ~100x slower.
        torch.set_flush_denormal(True)
        try:
            return self._run_training_loop(train_loader, val_loader, config)
        finally:
            torch.set_flush_denormal(False)

    def _fused_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the live network, fused into one kernel per step.

        sbi's loop builds a plain Adam over all parameters (the frozen weight
        average included); it is replaced once per (non-resumed) run.
        """
        if getattr(self, "_own_optimizer", None) is not self.optimizer:
            learning_rate = self.optimizer.param_groups[0]["lr"]
            parameters = self._neural_net.net.parameters()
            self.optimizer = torch.optim.Adam(
                parameters, lr=learning_rate, fused=self._device == "cpu"
            )
            self._own_optimizer = self.optimizer
        return self.optimizer

    def _train_epoch(self, train_loader, clip_max_norm, loss_args) -> float:  # noqa: ANN001
        """``steps_per_epoch`` steps on batches drawn with replacement.

        Batches are drawn by indexing the training tensor: sbi's loader would
        collate a thousand examples one by one, 7 % of a step at 4 tokens.
        """
        optimizer = self._fused_optimizer()
        base, num_epochs = self._lr_schedule
        decay = max(0.0, (self.epoch - num_epochs / 2) / (num_epochs / 2))
        for group in optimizer.param_groups:
            group["lr"] = base + (MIN_LEARNING_RATE - base) * min(decay, 1.0)
        estimator, values = self._neural_net, self._train_values
        total = torch.zeros(())
        for _ in range(self._steps_per_epoch):
            rows = torch.randint(len(values), (self._batch_size,))
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss(values[rows]).mean()
            loss.backward()
            if clip_max_norm is not None:
                clip_grad_norm_(estimator.net.parameters(), clip_max_norm, foreach=True)
            optimizer.step()
            estimator.update_average()
            total += loss.detach()
        return float(total) / self._steps_per_epoch

    def _validate_epoch(self, val_loader, loss_args) -> float:  # noqa: ANN001
        with torch.no_grad():
            chunks = self._val_values.split(self._batch_size)
            losses = torch.cat([self._loss(chunk) for chunk in chunks])
        return float(losses.mean())

    def _initialize_neural_network(
        self, retrain_from_scratch: bool, start_idx: int
    ) -> None:
        values = self._train_values
        mean = torch.nanmean(values, dim=0)
        std = torch.sqrt(torch.nanmean((values - mean) ** 2, dim=0))
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        num_nodes = values.shape[1]
        if self._graph is not None:
            check_dag(self._graph, num_nodes)
        net = SimformerNet(num_nodes, **self._net_kwargs)
        self._neural_net = SimformerEstimator(
            net,
            self._noise,
            self._num_parameters,
            torch.nan_to_num(mean),
            std,
            graph=self._graph,
            attention=self._attention,
            ema_decay=self._ema_decay,
        ).to(self._device)

    def _get_start_index(self, context: StartIndexContext) -> int:
        return 0

    def _get_losses(self, batch: Sequence[Tensor], loss_args: Any = None) -> Tensor:
        theta, x = batch[0].to(self._device), batch[1].to(self._device)
        return self._loss(torch.cat([theta, x], dim=1))

    def _loss(self, values: Tensor) -> Tensor:
        """Training loss on fresh draws; in eval mode, the mean over fixed draws."""
        estimator = self._neural_net
        if estimator.training:
            masks = sample_condition_masks(
                values.shape[0], self._num_parameters, self._num_data
            )
            return estimator.loss(values, masks.to(values.device))
        n = values.shape[1]
        losses = torch.zeros(values.shape[0], device=values.device)
        for draw in range(self._validation_draws):
            uniforms, normals = fixed_draws(values, 2 + n, n, draw)
            sigma = self._noise.from_uniform(uniforms[:, :1]).to(values)
            masks = condition_masks(uniforms[:, 1:], self._num_parameters)
            losses += estimator.loss(values, masks, sigma, normals.to(values))
        return losses / self._validation_draws

    def _get_potential_function(self, prior, estimator):  # noqa: ANN001
        raise RuntimeError(
            "Simformer builds its posteriors directly: use `build_posterior`, "
            "`build_likelihood` or `build_conditional`."
        )

    @property
    def num_parameters(self) -> int | None:
        """Number of parameter variables, once simulations are appended."""
        return self._num_parameters

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
        recurrence: int = 1,
        ode_solver: str | None = None,
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
            guidance: Interval observations / linear constraints on latent
                variables, e.g. ``[Interval(node=3, low=0.0, high=1.0)]`` (see
                :mod:`~sbi_allinone.simformer.guidance`); sampled by the SDE.
            recurrence: Self-recurrence of the guided sampler (paper: 5).
            ode_solver: ``"multistep"`` or ``"heun"`` (default
                :data:`~sbi_allinone.simformer.posterior.DEFAULT_ODE_SOLVER`).

        Returns:
            An sbi posterior whose ``theta`` is the latent variables and whose
            ``x`` is the conditioned ones.
        """
        if self._neural_net is None:
            raise ValueError("Train the Simformer first: call `train()`.")
        return SimformerPosterior(
            self._neural_net,
            condition_mask,
            prior=self._prior if prior is None else prior,
            sample_with=sample_with,
            steps=steps,
            guidance=guidance,
            recurrence=recurrence,
            ode_solver=ode_solver or DEFAULT_ODE_SOLVER,
            device=str(self._device),
        )

    def build_posterior(
        self,
        sample_with: SampleWith | None = None,
        steps: int | None = None,
        **kwargs: Any,
    ) -> SimformerPosterior:
        """The posterior ``p(theta | x)`` (arguments as :meth:`build_conditional`)."""
        return self.build_conditional(
            self._role_mask(data=True), sample_with, steps, **kwargs
        )

    def build_likelihood(
        self, sample_with: SampleWith | None = None, steps: int | None = None
    ) -> SimformerPosterior:
        """The likelihood ``p(x | theta)`` from the same network."""
        return self.build_conditional(self._role_mask(data=False), sample_with, steps)

    def _role_mask(self, data: bool) -> Tensor:
        if self._num_parameters is None:
            raise ValueError("No simulations: call `append_simulations` first.")
        is_data = torch.arange(self._num_parameters + self._num_data)
        is_data = is_data >= self._num_parameters
        return is_data if data else ~is_data
