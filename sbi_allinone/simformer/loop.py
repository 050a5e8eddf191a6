"""The Simformer's epochs inside sbi's training loop.

sbi's ``_run_training_loop`` owns validation, early stopping, best-state restore and
the progress display; it calls the two epoch hooks and the convergence check this
mixin overrides (:data:`sbi_allinone.sbi_internals.TRAINER_HOOKS` lists them and is
tested against sbi). An "epoch" here is ``steps_per_epoch`` optimizer steps on
batches drawn with replacement, so the number of steps is the same for any number
of simulations.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import clip_grad_norm_

from sbi_allinone.diffusion.optimizer import live_adam
from sbi_allinone.diffusion.validation import fixed_draws
from sbi_allinone.sbi_internals import (
    StartIndexContext,
    TrainConfig,
    num_stored_simulations,
    restart_patience,
)
from sbi_allinone.simformer.condition import (
    condition_masks,
    mask_kind_cdf,
    sample_condition_masks,
)
from sbi_allinone.simformer.inputs import (
    check_schedule,
    checked_draws,
    warn_if_too_large,
)
from sbi_allinone.simformer.schedule import (
    decay_start,
    default_batch_size,
    default_num_steps,
    learning_rate_at,
)
from sbi_allinone.simformer.tokens import Tokens
from sbi_allinone.training_checks import DivergenceGuard

__all__ = ["StepsTrainingLoop", "sbi_config", "steps_not_epochs"]


def sbi_config(batch_size: int, num_epochs: int, **kwargs: Any) -> TrainConfig:
    """sbi's ``TrainConfig`` for ``num_epochs`` epochs (sbi's loop runs
    ``max_num_epochs + 1``)."""
    return TrainConfig(
        training_batch_size=batch_size, max_num_epochs=num_epochs - 1, **kwargs
    )


@contextmanager
def steps_not_epochs(num_steps: int) -> Iterator[None]:
    """Inside the block, sbi's warning that ``max_num_epochs`` was reached (an
    option ``Simformer.train`` does not take) becomes one naming ``num_steps``;
    other warnings pass unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if "max_num_epochs" in str(w.message):
            warnings.warn(
                f"Training ran all its `num_steps={num_steps}` optimizer steps "
                "without early stopping: the validation loss was still falling. "
                "Consider increasing `num_steps`.",
                UserWarning,
                stacklevel=3,
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _rows(tokens: Tokens | None, index: Tensor | slice) -> Tokens | None:
    return None if tokens is None else tokens.rows(index)


class StepsTrainingLoop(DivergenceGuard):
    """Mixin for :class:`~sbi_allinone.simformer.trainer.Simformer`: fixed-size
    epochs of random batches, a fused Adam over the live network, the paper's
    learning-rate schedule and a validation loss over fixed draws; a diverging
    run raises (:class:`~sbi_allinone.training_checks.DivergenceGuard`).

    Expects, set by :meth:`_split_values`: ``_train_values`` and ``_val_values``
    (rows of ``[theta, x]``), ``_train_tokens`` and ``_val_tokens`` (their tokens,
    or ``None``); by :meth:`_set_losses`: ``_validation_draws``, ``_mask_kind_cdf``; by
    :meth:`_set_schedule`: ``_steps_per_epoch``, ``_batch_size``,
    ``_lr_schedule = (learning_rate, num_epochs)``; and from the trainer
    ``_neural_net``, ``_noise``, ``_num_parameters``, ``_num_data``, ``_device``.
    """

    def _set_schedule(
        self,
        num_steps: int | None,
        batch_size: int | None,
        steps_per_epoch: int,
        learning_rate: float,
    ) -> tuple[int, int]:
        """Resolve the defaults, check and store the schedule for the epoch hooks.

        Returns:
            The number of epochs and the batch size.
        """
        num_simulations = num_stored_simulations(self)
        if num_simulations == 0:
            raise ValueError("No simulations: call `append_simulations` first.")
        if num_steps is None:
            num_steps = default_num_steps(num_simulations)
        data_tokens = -(-self._num_data // self._x_per_token)
        num_tokens = self._num_parameters + data_tokens
        batch_size = (
            default_batch_size(num_tokens) if batch_size is None else batch_size
        )
        check_schedule(num_steps, steps_per_epoch, batch_size)
        warn_if_too_large(num_tokens, batch_size, self._net_kwargs, self._device)
        # At least two "epochs", so that short runs still validate twice.
        steps_per_epoch = min(steps_per_epoch, num_steps // 2)
        self._steps_per_epoch, self._batch_size = steps_per_epoch, batch_size
        self._num_steps = num_steps
        num_epochs = -(-num_steps // steps_per_epoch)
        self._lr_schedule = (learning_rate, num_epochs)
        return num_epochs, batch_size

    def _split_values(
        self, batch_size: int, validation_fraction: float, resume_training: bool
    ) -> tuple[Any, Any]:
        """sbi's train/validation split; keeps both halves as ``[theta, x]`` rows."""
        loaders = self.get_dataloaders(
            0, batch_size, validation_fraction, resume_training
        )
        theta, x, _ = self.get_simulations()
        values = torch.cat([theta, x], dim=1).to(self._device)
        self._train_values = values[self.train_indices]
        self._val_values = values[self.val_indices]
        self._train_tokens = self._val_tokens = None
        if self._tokens is not None:
            tokens = self._tokens.to(self._device)
            self._train_tokens = tokens.rows(self.train_indices)
            self._val_tokens = tokens.rows(self.val_indices)
        return loaders

    def _set_losses(
        self, validation_draws: int, mask_weights: Mapping[str, float] | None
    ) -> None:
        """Check and store the validation draws and the mask-kind weights."""
        self._validation_draws = checked_draws(validation_draws)
        self._mask_kind_cdf = mask_kind_cdf(mask_weights)

    def _fused_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the live network (:func:`live_adam`), replacing sbi's once per
        (non-resumed) run."""
        self.optimizer = live_adam(self.optimizer, self._neural_net.net, self._device)
        return self.optimizer

    def _train_epoch(self, train_loader, clip_max_norm, loss_args) -> float:  # noqa: ANN001
        """``steps_per_epoch`` steps on batches drawn with replacement.

        Batches are drawn by indexing the training tensor: sbi's loader would
        collate a thousand examples one by one, 7 % of a step at 4 tokens.
        """
        optimizer = self._fused_optimizer()
        learning_rate = learning_rate_at(self.epoch, *self._lr_schedule)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        estimator, values = self._neural_net, self._train_values
        total = values.new_zeros(())
        for _ in range(self._steps_per_epoch):
            rows = torch.randint(len(values), (self._batch_size,), device=values.device)
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss(values[rows], _rows(self._train_tokens, rows)).mean()
            loss.backward()
            if clip_max_norm is not None:
                clip_grad_norm_(estimator.net.parameters(), clip_max_norm, foreach=True)
            optimizer.step()
            estimator.update_average()
            total += loss.detach()
        return float(total) / self._steps_per_epoch

    def _validate_epoch(self, val_loader, loss_args) -> float:  # noqa: ANN001
        values, size = self._val_values, self._batch_size
        with torch.no_grad():
            losses = [
                self._loss(
                    values[i : i + size], _rows(self._val_tokens, slice(i, i + size))
                )
                for i in range(0, len(values), size)
            ]
        return float(torch.cat(losses).mean())

    def _converged(self, epoch: int, stop_after_epochs: int) -> bool:
        """sbi's early stopping, with the patience counted from the start of the
        learning-rate decay: no stop in the constant-rate first half, where the
        validation loss plateaus before the decay lowers it (gaussian_linear 10k,
        15 000 steps: stopped at 4 900, RF C2ST 0.509; trained on, 0.504).

        sbi's check still keeps the best weights from the first epoch on.

        Args:
            epoch: The epoch about to start; the loss is that of the one before.
            stop_after_epochs: Fruitless epochs of the decay before stopping.

        Returns:
            Whether training stops (best weights restored).
        """
        if epoch - 1 > decay_start(self._lr_schedule[1]):
            return super()._converged(epoch, stop_after_epochs)
        super()._converged(epoch, sys.maxsize)
        restart_patience(self)
        return False

    def _divergence_position(self, epoch: int) -> str:
        first = epoch * self._steps_per_epoch + 1
        last = first + self._steps_per_epoch - 1
        return f"epoch {epoch + 1} (optimizer steps {first}-{last})"

    def _get_start_index(self, context: StartIndexContext) -> int:
        return 0

    def _get_losses(self, batch: Sequence[Tensor], loss_args: Any = None) -> Tensor:
        theta, x = batch[0].to(self._device), batch[1].to(self._device)
        return self._loss(torch.cat([theta, x], dim=1))

    def _loss(self, values: Tensor, tokens: Tokens | None = None) -> Tensor:
        """Training loss on fresh draws; in eval mode, the mean over fixed draws
        (``tokens``: the rows' token kinds and metadata, with ``variables``)."""
        estimator = self._neural_net
        if estimator.training:
            masks = sample_condition_masks(
                values.shape[0],
                self._num_parameters,
                self._num_data,
                device=values.device,
                kind_cdf=self._mask_kind_cdf,
            )
            return estimator.loss(values, masks, tokens=tokens)
        n = values.shape[1]
        losses = torch.zeros(values.shape[0], device=values.device)
        for draw in range(self._validation_draws):
            uniforms, normals = fixed_draws(values, 2 + n, n, draw)
            sigma = self._noise.from_uniform(uniforms[:, :1]).to(values)
            masks = condition_masks(
                uniforms[:, 1:], self._num_parameters, self._mask_kind_cdf
            )
            fixed = sigma, normals.to(values)
            losses += estimator.loss(values, masks, fixed=fixed, tokens=tokens)
        return losses / self._validation_draws
