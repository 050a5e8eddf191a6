"""``InflationaryFlow``: sbi's NPE with an inflationary flow, and its training
schedule."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
from torch.distributions import Distribution
from torch.nn.utils import clip_grad_norm_

from sbi_allinone.diffusion.optimizer import flush_denormal, live_adam
from sbi_allinone.inflationary.builder import inflationary_flow_nn
from sbi_allinone.inflationary.estimator import InflationaryFlowEstimator
from sbi_allinone.npe_plugin import NPE_KEYWORDS, BuilderNPE, split_keywords
from sbi_allinone.sbi_internals import num_stored_simulations

__all__ = [
    "DEFAULT_NUM_STEPS",
    "PATIENCE_STEPS",
    "InflationaryFlow",
    "cosine_learning_rate",
    "default_num_steps",
    "patience_epochs",
]

#: Early-stopping patience of :meth:`InflationaryFlow.train` at a constant learning
#: rate (``lr_decay="constant"``), in optimizer steps.
PATIENCE_STEPS = 20_000

#: Optimizer steps of :meth:`InflationaryFlow.train` with the cosine decay, at 1 000
#: simulations; see :func:`default_num_steps`.
DEFAULT_NUM_STEPS = 2_400

#: Optimizer steps between two validations, at least, in a step-budget run without
#: early stopping (no ``stop_after_epochs``): the validation loss only picks the
#: weights to return.
VALIDATION_STEPS = 16
MAX_DEFAULT_NUM_STEPS = 30_000


class InflationaryFlow(BuilderNPE):
    """Neural posterior estimation with an inflationary flow
    (see :func:`inflationary_flow_nn`): sbi's NPE training loop and
    ``DirectPosterior``, unchanged.

    With ``z_score_theta="transform_to_unconstrained"`` a prior with bounded support
    (a ``BoxUniform``, say) is learned in unbounded space (``x_dist=prior`` is
    passed for you), so no sample leaks out of it. Off by default, as in sbi's NPE:
    on two_moons at 1 000 simulations it cost 0.01-0.04 in C2ST
    (``docs/benchmarks/2026-12-02-iflow-cost/``).

    Args:
        prior: Prior over the parameters.
        schedule: ``"prp"`` or ``"prr"``.
        **kwargs: sbi's ``NPE`` keywords
            (:data:`~sbi_allinone.npe_plugin.NPE_KEYWORDS`; pass a ``tracker`` to
            avoid TensorBoard's ``sbi-logs/``), as in sbi's ``NPE``, and further
            arguments of :func:`inflationary_flow_nn`.
    """

    def __init__(
        self,
        prior: Distribution | None = None,
        schedule: Literal["prp", "prr"] = "prp",
        **kwargs: Any,
    ) -> None:
        npe_kwargs, flow_kwargs = split_keywords(kwargs, NPE_KEYWORDS)
        if flow_kwargs.get("z_score_theta") == "transform_to_unconstrained":
            flow_kwargs.setdefault("x_dist", prior)
        builder = inflationary_flow_nn(schedule=schedule, **flow_kwargs)
        super().__init__(prior, builder, **npe_kwargs)

    def train(
        self,
        num_steps: int | None = None,
        lr_decay: Literal["cosine", "constant"] = "cosine",
        **kwargs: Any,
    ) -> InflationaryFlowEstimator:
        """Train as ``NPE.train``, single round only (the atomic loss of sequential
        NPE would integrate the ODE for every atom).

        By default the run is a budget of ``num_steps`` optimizer steps over which
        the learning rate (``learning_rate=2e-3``) decays to 0 along a cosine; the
        weights of the best validation loss are returned, as sbi does, which keeps
        tasks that overfit (slcp, gaussian_linear_uniform at 1 000 simulations) near
        their best epoch. The decay reached the C2ST of 8 000 constant-rate steps
        in 2 400 on two moons (``docs/benchmarks/2026-12-02-iflow-cost/``). There is
        no early stopping by default (``stop_after_epochs`` is the whole budget):
        at the high early rate the validation loss can stall for a third of the run
        before the decay brings it down (gaussian_mixture, 1 000 simulations, width
        64: a patience of a quarter of the budget stopped it at C2ST 0.74 instead
        of 0.57).

        Args:
            num_steps: Optimizer steps of the run (default:
                :func:`default_num_steps` of the number of simulations); sets
                ``max_num_epochs``. Not with ``max_num_epochs``.
            lr_decay: ``"cosine"``, or ``"constant"`` for the constant learning rate
                (``learning_rate=1e-3``) of earlier versions, with a patience of
                ``PATIENCE_STEPS`` steps (between 20 and 1 000 epochs) and no step
                budget unless ``num_steps`` sets one.
            **kwargs: ``NPE.train``'s arguments, with the defaults above.

        Returns:
            The trained estimator.
        """
        self._refuse_proposals(
            "InflationaryFlow trains on simulations from the prior only (single "
            "round); got simulations from a proposal."
        )
        kwargs = self._schedule_keywords(num_steps, lr_decay, kwargs)
        with flush_denormal(), warnings.catch_warnings():
            if self._cosine_epochs is not None:
                # Reaching the step budget is the plan, not a failure to converge.
                warnings.filterwarnings("ignore", "Maximum number of epochs")
            try:
                return super().train(**kwargs)
            finally:
                self._split_rows = None  # copies of the simulations: not kept

    def _schedule_keywords(
        self, num_steps: int | None, lr_decay: str, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """``NPE.train``'s keywords for the schedule :meth:`train` describes; sets
        the cosine decay (or ``None``) for :meth:`_train_epoch`."""
        if lr_decay not in ("cosine", "constant"):
            raise ValueError(
                f"`lr_decay` must be 'cosine' or 'constant', got {lr_decay!r}."
            )
        if num_steps is not None and "max_num_epochs" in kwargs:
            raise ValueError("Pass `num_steps` or `max_num_epochs`, not both.")
        if num_steps is not None and num_steps < 1:
            raise ValueError(f"`num_steps` must be positive, got {num_steps}.")
        cosine, kwargs = lr_decay == "cosine", dict(kwargs)
        kwargs.setdefault("learning_rate", 2e-3 if cosine else 1e-3)
        shape = (
            num_stored_simulations(self),
            kwargs.get("training_batch_size", 200),
            kwargs.get("validation_fraction", 0.1),
        )
        if num_steps is None and cosine and "max_num_epochs" not in kwargs:
            num_steps = default_num_steps(shape[0])
        if num_steps is not None:
            epochs = math.ceil(num_steps / _steps_per_epoch(*shape))
            kwargs["max_num_epochs"] = epochs - 1  # sbi runs epochs 0..max
        self._cosine_epochs = None
        self._validation_every = 1
        if cosine:
            self._cosine_epochs = (
                kwargs["learning_rate"],
                kwargs["max_num_epochs"] + 1,
            )
        if cosine and "stop_after_epochs" not in kwargs:
            # Without early stopping validation only picks the best weights, so it
            # can be thinned; a patience counts epochs, so each is validated.
            self._validation_every = math.ceil(
                VALIDATION_STEPS / _steps_per_epoch(*shape)
            )
        self._val_loss = math.inf  # the first validation of a run is never skipped
        if "stop_after_epochs" not in kwargs:
            kwargs["stop_after_epochs"] = (
                kwargs["max_num_epochs"] + 1
                if cosine
                else patience_epochs(*shape, PATIENCE_STEPS)
            )
        return kwargs

    def get_dataloaders(
        self,
        starting_round: int = 0,
        training_batch_size: int = 200,
        validation_fraction: float = 0.1,
        resume_training: bool = False,
        dataloader_kwargs: dict | None = None,
    ) -> tuple[Any, Any]:
        """sbi's loaders and train/validation split; the split's rows are also kept
        as tensors, which :meth:`_train_epoch` and :meth:`_validate_epoch` index
        (unless ``dataloader_kwargs`` customise the loaders)."""
        loaders = super().get_dataloaders(
            starting_round,
            training_batch_size,
            validation_fraction,
            resume_training,
            dataloader_kwargs,
        )
        self._split_rows = None
        if dataloader_kwargs is None:
            columns = self.get_simulations(starting_round)
            self._split_rows = (
                [column[self.train_indices] for column in columns],
                [column[self.val_indices] for column in columns],
            )
        return loaders

    def _train_epoch(self, train_loader, clip_max_norm, loss_args) -> float:  # noqa: ANN001
        """sbi's epoch (shuffled batches of ``training_batch_size``, the last
        partial one dropped), with Adam over the live network only
        (:func:`live_adam`, replacing sbi's once per run), at the learning rate of
        the cosine decay (if on).

        Batches are drawn by indexing the training tensors: sbi's loader collates
        examples one by one, and its gradient clipping walks the module tree;
        together 20 % of a step at width 64 (gaussian_linear, 1 000 simulations).
        """
        self.optimizer = live_adam(self.optimizer, self._neural_net, self._device)
        if getattr(self, "_cosine_epochs", None) is not None:
            learning_rate = cosine_learning_rate(self.epoch, *self._cosine_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
        if self._split_rows is None:  # set by get_dataloaders, before any epoch
            return super()._train_epoch(train_loader, clip_max_norm, loss_args)
        rows, size = self._split_rows[0], train_loader.batch_size
        order = torch.randperm(len(rows[0]))
        num_steps = len(order) // size
        parameters = self.optimizer.param_groups[0]["params"]
        total = torch.zeros((), device=self._device)  # no sync per step
        for step in range(num_steps):
            batch = [column[order[step * size : (step + 1) * size]] for column in rows]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._get_losses(batch=batch, loss_args=loss_args).mean()
            loss.backward()
            if clip_max_norm is not None:
                clip_grad_norm_(parameters, clip_max_norm, foreach=True)
            self.optimizer.step()
            total += loss.detach()
        return float(total) / num_steps

    def _validate_epoch(self, val_loader, loss_args) -> float:  # noqa: ANN001
        """The mean validation loss over every validation row (sbi's loader drops
        a last partial batch).

        In a step-budget run without ``stop_after_epochs`` (no early stopping) the
        loss is computed once every ``VALIDATION_STEPS``
        optimizer steps or more, and at the last epoch; in between, the last value
        is returned, which sbi's loop never takes for an improvement. At 1 000
        simulations (4 steps per epoch) validating every epoch was a tenth of the
        training time.
        """
        if self._skips_validation():
            return self._val_loss
        if self._split_rows is None:
            return super()._validate_epoch(val_loader, loss_args)
        rows, size = self._split_rows[1], val_loader.batch_size
        with torch.no_grad():
            losses = [
                self._get_losses(
                    batch=[column[i : i + size] for column in rows], loss_args=loss_args
                )
                for i in range(0, len(rows[0]), size)
            ]
        return float(torch.cat(losses).mean())

    def _skips_validation(self) -> bool:
        every = getattr(self, "_validation_every", 1)
        if every == 1 or not math.isfinite(self._val_loss):
            return False
        # Thinned only under the cosine budget, whose epochs are known.
        last_epoch = self.epoch >= self._cosine_epochs[1] - 1
        return not last_epoch and (self.epoch + 1) % every != 0


def cosine_learning_rate(epoch: int, base: float, num_epochs: int) -> float:
    """``base`` decayed to 0 along a half cosine over ``num_epochs`` epochs.

    Example:
        >>> cosine_learning_rate(0, 2e-3, 4), cosine_learning_rate(2, 2e-3, 4)
        (0.002, 0.001)
    """
    fraction = min(epoch / num_epochs, 1.0)
    return base * 0.5 * (1.0 + math.cos(math.pi * fraction))


def default_num_steps(num_simulations: int) -> int:
    """Optimizer steps of :meth:`InflationaryFlow.train`: ``DEFAULT_NUM_STEPS``
    (2 400) at 1 000 simulations or fewer, 9 000 at 10 000, a power law in between
    and beyond (to at most ``MAX_DEFAULT_NUM_STEPS``), in hundreds.

    ``num_steps`` used to count an epoch's last partial batch, which sbi's loader
    drops: the "3 000 steps" at 1 000 simulations of earlier records were 2 400,
    which is what this default keeps. On two moons (observations
    1-3) that was enough at 1 000 simulations (0.570, against 0.564 after four
    times as many) but not at 10 000 (0.535, against 0.513 after 10 000;
    ``docs/benchmarks/2026-12-02-iflow-schedule/``). At 10 000 simulations
    (observations 1-10, MLP C2ST, one training seed) two_moons gave 0.532, 0.528
    and 0.527 after 8 000, 9 000 and 10 000 steps, gaussian_mixture 0.535, 0.529
    and 0.531; gaussian_linear trained 2.5x, 2.8x and 3.1x as long as sbi's NPE.
    9 000 is the most that keeps that cell under three times NPE's time (the
    record at these defaults: ``docs/benchmarks/2026-12-03-issue23c/``).

    Example:
        >>> default_num_steps(1_000), default_num_steps(10_000)
        (2400, 9000)
    """
    growth = (max(num_simulations, 1_000) / 1_000) ** math.log10(9_000 / 2_400)
    return min(int(round(DEFAULT_NUM_STEPS * growth, -2)), MAX_DEFAULT_NUM_STEPS)


def _steps_per_epoch(
    num_simulations: int, training_batch_size: int, validation_fraction: float
) -> int:
    """Optimizer steps of one epoch: full batches of sbi's training split (its
    loader drops the last partial batch; the batch is at most the split)."""
    num_train = int((1 - validation_fraction) * num_simulations)
    return max(1, num_train // max(1, min(training_batch_size, num_train)))


def patience_epochs(
    num_simulations: int,
    training_batch_size: int,
    validation_fraction: float,
    patience_steps: int = PATIENCE_STEPS,
) -> int:
    """Early-stopping patience in epochs: ``patience_steps`` optimizer steps,
    between 20 and 1 000 epochs.

    Args:
        num_simulations: Simulations appended (training and validation).
        training_batch_size: Examples per optimizer step.
        validation_fraction: Fraction held out for validation.
        patience_steps: Patience in optimizer steps.

    Returns:
        ``stop_after_epochs`` for sbi's training loop.
    """
    steps = _steps_per_epoch(num_simulations, training_batch_size, validation_fraction)
    return min(max(20, math.ceil(patience_steps / steps)), 1000)
