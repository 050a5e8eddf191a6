"""Shared plumbing of the estimators that plug into sbi's NPE (INN, inflationary flows):
z-scoring from the training data and an NPE trainer with a fixed builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from sbi.inference import NPE
from sbi.utils.sbiutils import z_standardization
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.sbi_internals import has_proposal_rounds

__all__ = ["BuilderNPE", "check_theta", "z_score"]


def z_score(batch: Tensor, flag: str | None, name: str) -> tuple[Tensor, Tensor]:
    """Mean and std for z-scoring: ``"independent"``, ``"structured"``, ``"none"``.

    Args:
        batch: ``(n, *event_shape)``; rows with NaN or inf are ignored.
        flag: The z-scoring mode, as sbi's ``z_score_x``.
        name: Argument name for the error message.

    Returns:
        Mean and standard deviation, each of ``event_shape``.
    """
    if flag in (None, "none"):
        return torch.zeros(batch.shape[1:]), torch.ones(batch.shape[1:])
    if flag not in ("independent", "structured"):
        raise ValueError(
            f"`{name}` must be 'independent', 'structured' or 'none', got {flag!r}."
        )
    finite = batch[torch.isfinite(batch.reshape(batch.shape[0], -1)).all(-1)]
    mean, std = z_standardization(finite, structured_dims=flag == "structured")
    return mean.expand(batch.shape[1:]).clone(), std.expand(batch.shape[1:]).clone()


def check_theta(theta: Tensor) -> None:
    """Raise unless the training parameters are ``(num_simulations, dim_theta)``."""
    if theta.ndim != 2:
        raise ValueError(
            f"`theta` must be (num_simulations, dim_theta), got {tuple(theta.shape)}."
        )


class BuilderNPE(NPE):
    """sbi's NPE with one of this package's estimator builders.

    Args:
        prior: Prior over the parameters.
        builder: ``build(theta, x) -> estimator``.
        device, logging_level, summary_writer, tracker, show_progress_bars: As in
            sbi's ``NPE``.
    """

    def __init__(
        self,
        prior: Distribution | None,
        builder: Callable[[Tensor, Tensor], Any],
        device: str = "cpu",
        logging_level: int | str = "WARNING",
        summary_writer: Any = None,
        tracker: Any = None,
        show_progress_bars: bool = True,
    ) -> None:
        super().__init__(
            prior=prior,
            density_estimator=builder,
            device=device,
            logging_level=logging_level,
            summary_writer=summary_writer,
            tracker=tracker,
            show_progress_bars=show_progress_bars,
        )

    def _refuse_proposals(self, message: str) -> None:
        """Raise if any simulations came from a proposal other than the prior."""
        if has_proposal_rounds(self):
            raise ValueError(message)
