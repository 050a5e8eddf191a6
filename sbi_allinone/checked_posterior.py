"""sbi's ``DirectPosterior`` with its arguments checked before any work.

The posteriors of the estimators that plug into sbi's NPE (INN, inflationary flows)
are sbi's ``DirectPosterior``. sbi converts ``x`` and ``theta`` on the way in but
lets many malformed inputs through to the network, where they fail deep inside
torch (a ``RuntimeError`` for a wrong width or an empty tensor, an
``AttributeError`` for a list passed to ``sample_batched``), succeed silently
(complex or boolean data) or hang (``sample_batched`` at a NaN observation
rejects every sample forever). :class:`CheckedDirectPosterior` checks them first,
as the Simformer's posteriors do, and raises a ``TypeError`` or ``ValueError``
naming the argument; well-formed input (lists of numbers, float16, float64 or
integer tensors) goes on to sbi unchanged in meaning.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from sbi.inference.posteriors.direct_posterior import DirectPosterior
from torch import Tensor

from sbi_allinone.training_checks import as_float32

__all__ = ["CheckedDirectPosterior", "checked_sample_shape"]


def checked_sample_shape(sample_shape: Any) -> torch.Size:
    """``sample_shape`` as a ``torch.Size``, or an error naming it.

    Args:
        sample_shape: ``torch.Size``, a sequence of non-negative integers (or an
            integer tensor of them) or one integer.

    Returns:
        The shape.

    Example:
        >>> checked_sample_shape(3), checked_sample_shape((2, 5))
        (torch.Size([3]), torch.Size([2, 5]))
    """
    if isinstance(sample_shape, Tensor) and sample_shape.ndim > 0:
        sample_shape = sample_shape.tolist()
    if not isinstance(sample_shape, Sequence) or isinstance(sample_shape, str):
        sample_shape = (sample_shape,)
    sizes = []
    for size in sample_shape:
        try:
            if isinstance(size, bool):
                raise TypeError
            size = operator.index(size)
        except TypeError:
            raise TypeError(
                "`sample_shape` must be a tuple of integers, got "
                f"{type(size).__name__} {size!r:.40} in it."
            ) from None
        if size < 0:
            raise ValueError(f"`sample_shape` must not be negative, got {size}.")
        sizes.append(size)
    return torch.Size(sizes)


class CheckedDirectPosterior(DirectPosterior):
    """sbi's ``DirectPosterior`` that checks ``x``, ``theta`` and ``sample_shape``
    first; see the module docstring. Arguments and results are sbi's.

    Built by :meth:`sbi_allinone.npe_plugin.BuilderNPE.build_posterior`.
    """

    def _checked_x(self, x: Any, one: bool) -> Tensor | None:
        """``x`` as float32 ``(k, *x_shape)`` (``k == 1`` if ``one``), finite.

        ``None`` stays ``None`` where a single observation is expected: sbi then
        takes the default ``x`` or says that one is needed.
        """
        if x is None:
            if one:
                return None
            raise ValueError("`x` must be given: a batch of observations.")
        shape = tuple(self.posterior_estimator.condition_shape)
        tensor = as_float32(x, "x", bool_ok=False)
        if tuple(tensor.shape) == shape:
            tensor = tensor.unsqueeze(0)
        dims = ", ".join(str(size) for size in shape)
        rows = "1" if one else "batch"
        if tuple(tensor.shape[1:]) != shape or tensor.shape[0] == 0:
            raise ValueError(
                f"`x` must have shape ({rows}, {dims}) or ({dims}) as the "
                f"simulations, got {tuple(tensor.shape)}."
            )
        if one and tensor.shape[0] != 1:
            raise ValueError(
                f"`x` must be one observation ({dims}), got a batch of "
                f"{tensor.shape[0]}: use `sample_batched` or `log_prob_batched` "
                "for a batch."
            )
        bad = ~torch.isfinite(tensor)
        if bad.any():
            raise ValueError(f"`x` has {int(bad.sum())} NaN or infinite entries.")
        return tensor

    def _checked_theta(self, theta: Any, ranks: tuple[int, ...]) -> Tensor:
        """``theta`` as float32 of one of ``ranks`` dimensions, finite."""
        dim = self.posterior_estimator.input_shape[-1]
        tensor = as_float32(theta, "theta", bool_ok=False)
        if tensor.ndim not in ranks or tensor.shape[-1] != dim or 0 in tensor.shape:
            expected = " or ".join(
                f"({', '.join(['batch'] * (rank - 1) + [str(dim)])})" for rank in ranks
            )
            raise ValueError(f"`theta` must be {expected}, got {tuple(tensor.shape)}.")
        bad = ~torch.isfinite(tensor)
        if bad.any():
            raise ValueError(f"`theta` has {int(bad.sum())} NaN or infinite entries.")
        return tensor

    def _check_density(self) -> None:
        """Raise if the estimator is a sampler without ``log_prob`` (INN ``mmd``)."""
        if not hasattr(self.posterior_estimator, "log_prob"):
            raise AttributeError(
                f"{type(self.posterior_estimator).__name__} has no density: its "
                "posterior samples but has no `log_prob` (INN mode='mmd'; use "
                "mode='ml' or 'hybrid' for one)."
            )

    def sample(
        self,
        sample_shape: Any = (),
        x: Any = None,
        max_sampling_batch_size: int = 10_000,
        show_progress_bars: bool = True,
        reject_outside_prior: bool = True,
        max_sampling_time: float | None = None,
        return_partial_on_timeout: bool = False,
    ) -> Tensor:
        """sbi's ``DirectPosterior.sample`` (same arguments), after the checks."""
        return super().sample(
            checked_sample_shape(sample_shape),
            self._checked_x(x, one=True),
            max_sampling_batch_size=max_sampling_batch_size,
            show_progress_bars=show_progress_bars,
            reject_outside_prior=reject_outside_prior,
            max_sampling_time=max_sampling_time,
            return_partial_on_timeout=return_partial_on_timeout,
        )

    def sample_batched(
        self,
        sample_shape: Any,
        x: Any,
        max_sampling_batch_size: int = 10_000,
        show_progress_bars: bool = True,
        reject_outside_prior: bool = True,
        max_sampling_time: float | None = None,
        return_partial_on_timeout: bool = False,
    ) -> Tensor:
        """sbi's ``DirectPosterior.sample_batched`` (same arguments), after the
        checks: ``x`` is ``(batch, *x_shape)``, finite (a NaN row used to make
        rejection sampling run forever)."""
        return super().sample_batched(
            checked_sample_shape(sample_shape),
            self._checked_x(x, one=False),
            max_sampling_batch_size=max_sampling_batch_size,
            show_progress_bars=show_progress_bars,
            reject_outside_prior=reject_outside_prior,
            max_sampling_time=max_sampling_time,
            return_partial_on_timeout=return_partial_on_timeout,
        )

    def log_prob(self, theta: Any, x: Any = None, **kwargs: Any) -> Tensor:
        """sbi's ``DirectPosterior.log_prob`` (same arguments), after the checks:
        ``theta`` ``(batch, dim_theta)`` or ``(dim_theta,)``, one ``x``."""
        self._check_density()
        theta = self._checked_theta(theta, (1, 2))
        return super().log_prob(theta, self._checked_x(x, one=True), **kwargs)

    def log_prob_batched(self, theta: Any, x: Any, **kwargs: Any) -> Tensor:
        """sbi's ``DirectPosterior.log_prob_batched`` (same arguments), after the
        checks: ``theta`` ``(sample, batch, dim_theta)``, ``x`` a batch."""
        self._check_density()
        theta = self._checked_theta(theta, (3,))
        x = self._checked_x(x, one=False)
        if theta.shape[1] != x.shape[0] and 1 not in (theta.shape[1], x.shape[0]):
            raise ValueError(
                f"`theta` {tuple(theta.shape)} must have one batch entry per row of "
                f"`x` {tuple(x.shape)} (or one of them a single one)."
            )
        return super().log_prob_batched(theta, x, **kwargs)

    def set_default_x(self, x: Any) -> CheckedDirectPosterior:
        """sbi's ``set_default_x``, after checking that ``x`` is one finite
        observation of the simulations' shape."""
        checked = self._checked_x(x, one=True)
        if checked is None:
            raise ValueError("`x` must be an observation, got None.")
        return super().set_default_x(checked)

    def map(self, x: Any = None, **kwargs: Any) -> Tensor:
        """sbi's ``DirectPosterior.map`` (same arguments), after checking ``x``.

        Raises:
            NotImplementedError: If the estimator's ``log_prob`` has no gradient
                (inflationary flows), which sbi's gradient ascent needs.
        """
        self._check_density()
        estimator = self.posterior_estimator
        if not getattr(estimator, "log_prob_is_differentiable", True):
            raise NotImplementedError(
                f"`map` needs the gradient of `log_prob`, which "
                f"{type(estimator).__name__} does not provide (it integrates an "
                "ODE without a graph). For a point estimate take the most probable "
                "of posterior samples: `s[posterior.log_prob(s).argmax()]`."
            )
        return super().map(x=self._checked_x(x, one=True), **kwargs)
