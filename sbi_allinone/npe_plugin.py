"""Shared plumbing of the estimators that plug into sbi's NPE (INN, inflationary flows):
z-scoring from the training data, an NPE trainer with a fixed builder (its
posteriors check their input: :mod:`sbi_allinone.checked_posterior`), and the
sorting of the keywords a trainer or builder passes on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from sbi.inference import NPE
from sbi.inference.posteriors.direct_posterior import DirectPosterior
from sbi.utils.sbiutils import z_standardization
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.checked_posterior import CheckedDirectPosterior
from sbi_allinone.sbi_internals import has_proposal_rounds
from sbi_allinone.training_checks import (
    DivergenceGuard,
    as_float32,
    check_prior_shape,
    check_simulation_shapes,
    check_simulation_values,
)

__all__ = [
    "NPE_KEYWORDS",
    "BuilderNPE",
    "check_keywords",
    "check_theta",
    "keywords_set",
    "split_keywords",
    "z_score",
]

#: The keywords of sbi's ``NPE`` that :class:`BuilderNPE` passes on, besides the
#: prior and the density estimator.
NPE_KEYWORDS: tuple[str, ...] = (
    "device",
    "logging_level",
    "summary_writer",
    "tracker",
    "show_progress_bars",
)


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


class BuilderNPE(DivergenceGuard, NPE):
    """sbi's NPE with one of this package's estimator builders.

    Simulations are checked as the other trainers of the package check them (see
    :mod:`sbi_allinone.training_checks`), and a diverging training run raises
    and leaves no network behind (:class:`~.training_checks.DivergenceGuard`).

    Args:
        prior: Prior over the parameters.
        builder: ``build(theta, x) -> estimator``.
        **npe_kwargs: The keywords :data:`NPE_KEYWORDS` (``device``,
            ``logging_level``, ``summary_writer``, ``tracker``,
            ``show_progress_bars``), with their defaults and meaning as in sbi's
            ``NPE``.
    """

    def __init__(
        self,
        prior: Distribution | None,
        builder: Callable[[Tensor, Tensor], Any],
        **npe_kwargs: Any,
    ) -> None:
        super().__init__(prior=prior, density_estimator=builder, **npe_kwargs)

    def append_simulations(
        self,
        theta: Tensor,
        x: Tensor,
        proposal: Any = None,
        exclude_invalid_x: bool | None = None,
        data_device: str | None = None,
    ) -> BuilderNPE:
        """Store simulations as ``NPE.append_simulations`` (same arguments), after
        casting real-valued ``theta`` and ``x`` (or boolean ``x``) to float32 and
        checking their shapes, ``(num_simulations, dim_theta)`` and
        ``(num_simulations, dim_x)`` (or ``(num_simulations, *x_shape)``), their
        values (finite ``theta``, some finite row of ``x``) and the prior's event
        shape.

        Returns:
            The trainer, for chaining.

        Raises:
            TypeError: For text, ``None``, complex numbers or boolean ``theta``.
            ValueError: For other shapes or non-finite values, naming the argument.
        """
        theta = as_float32(theta, "theta", bool_ok=False)
        x = as_float32(x, "x", bool_ok=True)
        check_simulation_shapes(theta, x)
        check_simulation_values(theta, x)
        check_prior_shape(self._prior, theta.shape[1])
        return super().append_simulations(
            theta, x, proposal, exclude_invalid_x, data_device
        )

    def build_posterior(self, *args: Any, **kwargs: Any) -> Any:
        """``NPE.build_posterior`` (same arguments); raises if the last training
        run diverged.

        Returns:
            The posterior; sbi's ``DirectPosterior`` (the default) comes as a
            :class:`~sbi_allinone.checked_posterior.CheckedDirectPosterior`,
            which checks ``x``, ``theta`` and ``sample_shape`` before any work.
        """
        self._check_not_diverged()
        posterior = super().build_posterior(*args, **kwargs)
        if type(posterior) is DirectPosterior:
            # Same state, checked methods: sbi builds the posterior itself.
            posterior.__class__ = CheckedDirectPosterior
        return posterior

    def _refuse_proposals(self, message: str) -> None:
        """Raise if any simulations came from a proposal other than the prior."""
        if has_proposal_rounds(self):
            raise ValueError(message)


def split_keywords(
    kwargs: Mapping[str, Any], names: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword arguments into those named in ``names`` and the others.

    Args:
        kwargs: Keyword arguments, e.g. a trainer's ``**kwargs``.
        names: The keywords to take out, e.g. :data:`NPE_KEYWORDS`.

    Returns:
        The keywords in ``names`` and the others, each in the order given.

    Example:
        >>> split_keywords({"device": "cpu", "seed": 1}, NPE_KEYWORDS)
        ({'device': 'cpu'}, {'seed': 1})
    """
    names = set(names)
    chosen = {key: value for key, value in kwargs.items() if key in names}
    return chosen, {key: value for key, value in kwargs.items() if key not in names}


def keywords_set(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that are not ``None``, so that a callee's own defaults
    apply to the others.

    Example:
        >>> keywords_set(num_steps=100, training_batch_size=None)
        {'num_steps': 100}
    """
    return {key: value for key, value in kwargs.items() if value is not None}


def check_keywords(
    function: str, kwargs: Iterable[str], accepted: Iterable[str]
) -> None:
    """Raise Python's own error for a keyword that ``function`` does not take.

    Args:
        function: The name the error gives the function, e.g. ``"inn_nn"``.
        kwargs: The keywords given.
        accepted: The keywords the function takes through its ``**kwargs``.

    Raises:
        TypeError: Naming the first keyword not in ``accepted``.
    """
    accepted = set(accepted)
    for name in kwargs:
        if name not in accepted:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
