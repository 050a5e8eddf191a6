"""Checks shared by the three trainers (``Simformer``, ``InflationaryFlow``,
``INN``): the simulations and prior passed to ``append_simulations``, and the
detection of a diverging training run.

The same input gets the same treatment in every trainer: real-valued simulations
of another dtype (e.g. float64) are cast to float32 without a warning, 1-D
``theta`` or ``x`` raise a ``ValueError`` naming the argument (as do row counts
that differ and a ``theta`` with NaN or inf), and a prior whose event shape does
not match the width of ``theta`` raises one naming ``prior``.
A training run whose loss becomes non-finite or explodes, or whose network gets
non-finite weights, stops with a ``RuntimeError`` and leaves no network behind
(:class:`DivergenceGuard`).
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import torch
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.sbi_internals import NONFINITE_LOSS_MESSAGE

__all__ = [
    "EXPLOSION_FACTOR",
    "DivergenceGuard",
    "as_float32",
    "check_prior_shape",
    "check_simulation_shapes",
    "check_simulation_values",
]

#: A validation loss above this factor times ``max(1, |L0|)``, with ``L0`` the
#: validation loss of the network before the training run, counts as divergence.
EXPLOSION_FACTOR = 1e3


def as_float32(value: Any, name: str, bool_ok: bool = True) -> Tensor:
    """``value`` as a float32 tensor of real numbers, or a ``TypeError`` naming it.

    Args:
        value: Tensor or array-like of real numbers (e.g. float64 ``theta``, a
            list of lists of numbers, an integer tensor).
        name: The argument's name, for the error message.
        bool_ok: Accept booleans (as 0 and 1), e.g. for simulations ``x``.

    Returns:
        A float32 tensor.

    Raises:
        TypeError: For text, ``None``, ragged lists, complex numbers, and
            booleans unless ``bool_ok``.
    """
    expected = f"`{name}` must be a tensor (or array-like) of real numbers"
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{expected}, got {type(value).__name__}.") from None
    if value.is_complex() or (value.dtype == torch.bool and not bool_ok):
        raise TypeError(f"{expected}, got dtype {value.dtype}.")
    return value.to(torch.float32)


def check_simulation_shapes(theta: Tensor, x: Tensor) -> None:
    """Raise unless ``theta`` is 2-D and ``x`` at least 2-D, both non-empty.

    Args:
        theta: Parameters, ``(num_simulations, dim_theta)``.
        x: Simulations, ``(num_simulations, dim_x)`` or
            ``(num_simulations, *x_shape)``.

    Raises:
        ValueError: Naming the argument, its expected and its given shape.
    """
    if theta.ndim != 2 or 0 in theta.shape:
        raise ValueError(
            "`theta` must have shape (num_simulations, dim_theta), got "
            f"{tuple(theta.shape)}."
        )
    if x.ndim < 2 or 0 in x.shape:
        hint = " (for one value per simulation: `x.reshape(-1, 1)`)"
        raise ValueError(
            "`x` must have shape (num_simulations, dim_x) or (num_simulations, "
            f"*x_shape), got {tuple(x.shape)}{hint if x.ndim == 1 else ''}."
        )


def check_simulation_values(theta: Tensor, x: Tensor) -> None:
    """Raise unless ``theta`` and ``x`` have as many rows, ``theta`` is finite and
    some row of ``x`` is (sbi's NPE leaves rows of ``x`` with NaN or inf out of
    training, and with none left fails on an ``AssertionError``).

    Args:
        theta: Parameters, ``(num_simulations, dim_theta)``.
        x: Simulations, ``(num_simulations, *x_shape)``.

    Raises:
        ValueError: Naming the argument.
    """
    if theta.shape[0] != x.shape[0]:
        raise ValueError(
            f"`theta` has {theta.shape[0]} rows but `x` has {x.shape[0]}: pass one "
            "simulation per parameter set."
        )
    bad = ~torch.isfinite(theta)
    if bad.any():
        raise ValueError(f"`theta` has {int(bad.sum())} NaN or infinite entries.")
    if not torch.isfinite(x.reshape(x.shape[0], -1)).all(-1).any():
        raise ValueError(
            "Every simulation in `x` has NaN or infinite entries: nothing to train on."
        )


def check_prior_shape(prior: Distribution | None, dim_theta: int) -> None:
    """Raise unless the prior's samples have the width of ``theta``.

    Args:
        prior: The trainer's prior (``None``: nothing to check).
        dim_theta: Number of columns of ``theta``.

    Raises:
        ValueError: Naming ``prior``, the expected and the given event shape.
    """
    if prior is None:
        return
    # A prior of independent scalars (not wrapped by sbi) has batch_shape (D,).
    shape = tuple(prior.batch_shape + prior.event_shape) or (1,)
    if shape != (dim_theta,):
        raise ValueError(
            f"`prior` must have event shape ({dim_theta},) (one entry per column of "
            f"`theta`), got {shape}."
        )


class DivergenceGuard:
    """Mixin for an sbi trainer: stop a diverging training run.

    After every epoch of sbi's training loop (its ``_summarize_epoch`` hook) the
    run counts as diverged if the training or validation loss is not finite or
    exceeds :data:`EXPLOSION_FACTOR` times ``max(1, |L0|)``
    (``L0``: the validation loss before the run), or a weight of the network is
    not finite; sbi's own error for a non-finite loss counts too. Training then
    raises a ``RuntimeError`` naming the trainer, the epoch and a smaller
    learning rate, the network is discarded (the next ``train`` builds a fresh
    one; ``resume_training`` is refused), and building a posterior raises until
    a run succeeds.
    """

    def _run_training_loop(
        self,
        train_loader: Any,
        val_loader: Any,
        train_config: Any,
        loss_args: Any = None,
        summarization_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if train_config.resume_training and self._diverged():
            self._neural_net = None  # the untrained one built for this call
            raise ValueError(
                "The last training run diverged and its network was discarded: "
                "`resume_training=True` has nothing to resume; train afresh."
            )
        self._divergence: str | None = None
        self._learning_rate = train_config.learning_rate
        self._loss_scale = None
        self._neural_net.to(self._device).eval()
        try:
            initial = self._validate_epoch(val_loader, loss_args)
            self._loss_scale = max(1.0, abs(initial))
            return super()._run_training_loop(
                train_loader, val_loader, train_config, loss_args,
                summarization_kwargs,
            )  # fmt: skip
        except ValueError as error:
            if NONFINITE_LOSS_MESSAGE not in str(error):
                raise
            self._diverge(f"the loss is not finite ({error})", error)

    def _summarize_epoch(
        self,
        train_loss: float,
        val_loss: float,
        epoch_start_time: float,
        summarization_kwargs: dict[str, Any],
    ) -> None:
        super()._summarize_epoch(
            train_loss, val_loss, epoch_start_time, summarization_kwargs
        )
        reason = self._divergence_reason(train_loss, val_loss)
        if reason is not None:
            self._diverge(reason)

    def _divergence_reason(self, train_loss: float, val_loss: float) -> str | None:
        """Why the epoch that ended with these losses diverged, or ``None``."""
        if not math.isfinite(train_loss):
            return f"the training loss is {train_loss}"
        if not math.isfinite(val_loss):
            return f"the validation loss is {val_loss}"
        scale = self._loss_scale
        # The training loss too: a trainer may skip validation in some epochs
        # (the inflationary flow's step budget), whose validation loss is then stale.
        for name, loss in (("validation", val_loss), ("training", train_loss)):
            if scale is not None and loss > EXPLOSION_FACTOR * scale:
                return (
                    f"the {name} loss exploded to {loss:.4g} (more than "
                    f"{EXPLOSION_FACTOR:g} x {scale:.4g}, the validation loss "
                    "before training)"
                )
        # One sum, one check: any inf or nan weight makes it non-finite (a sum per
        # tensor cost 3 % of an inflationary flow's training at 1 000 simulations).
        weights = [p.detach().reshape(-1) for p in self._neural_net.parameters()]
        if weights and not math.isfinite(float(torch.cat(weights).sum())):
            return "the network has non-finite weights"
        return None

    def _divergence_position(self, epoch: int) -> str:
        """Where in the run (0-based ``epoch``) it diverged, for the error."""
        return f"epoch {epoch + 1}"

    def _diverge(self, reason: str, cause: Exception | None = None) -> NoReturn:
        """Discard the network, remember why and raise the ``RuntimeError``."""
        rate = self._learning_rate
        self._divergence = (
            f"{type(self).__name__} training diverged in "
            f"{self._divergence_position(getattr(self, 'epoch', 0))}: {reason}. "
            "The network was discarded; train again with a smaller `learning_rate` "
            f"(this run: {rate:g}; e.g. {rate / 10:g})."
        )
        self._neural_net = None
        raise RuntimeError(self._divergence) from cause

    def _diverged(self) -> bool:
        """Whether the last training run diverged."""
        return getattr(self, "_divergence", None) is not None

    def _check_not_diverged(self) -> None:
        """Raise if the last training run diverged (before building a posterior)."""
        if self._diverged():
            raise RuntimeError(
                f"No posterior: the last training run diverged. {self._divergence}"
            )
