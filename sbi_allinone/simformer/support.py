"""Prior support for the Simformer's conditionals: rejection sampling that cannot
hang (also against constraints, for ``constrain_by="rejection"``), and checks that
guidance constraints can be met inside the prior.

sbi's :func:`~sbi.samplers.rejection.rejection.accept_reject_sample` draws until
enough samples lie in the prior's support, with no bound unless
``max_sampling_time`` is given. :func:`sample_in_support` adds what a hang needs:
the proposals are drawn in runs of a bounded number of rows, and when no sample of
:data:`MIN_PROPOSALS` proposals for a condition lies in the support the sampling
stops with a ``RuntimeError`` (a warning below :data:`WARN_ACCEPTANCE`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sbi.samplers.rejection.rejection import accept_reject_sample
from sbi.utils.sbiutils import within_support
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.simformer.guidance import Guidance
from sbi_allinone.simformer.potential import CACHE_FRIENDLY_ROWS

__all__ = [
    "MIN_PROPOSALS",
    "WARN_ACCEPTANCE",
    "check_feasible",
    "constraint_check",
    "sample_in_support",
    "sample_slack",
    "support_box",
    "warn_violations",
]

#: Proposals per condition after which an acceptance of zero stops the sampling.
MIN_PROPOSALS = 1000
#: Acceptance rate below which sampling warns (once).
WARN_ACCEPTANCE = 0.01
#: Slack (standard deviations) below which a guided sample breaks a constraint.
VIOLATION_TOLERANCE = 1e-4
#: Radius (standard deviations) of the largest ball a constraint set must hold.
MIN_DEPTH = 1e-6

Draw = Callable[[int], Tensor]
#: ``accept(samples)``: ``(k, batch, d)`` samples -> ``(k, batch)`` booleans.
Accept = Callable[[Tensor], Tensor]

_REMEDY = {
    "prior": "Pass `reject_outside_prior=False` to get the samples as drawn",
    "constraints": "Sample with guidance (the default `constrain_by`, built for "
    "constraints the conditional rarely meets)",
}


class _Acceptance:
    """Counts of proposals and accepted samples per condition; raises or warns."""

    def __init__(
        self,
        prior: Distribution | None,
        constraints: Accept | None,
        max_time: float | None,
    ) -> None:
        self.prior, self.constraints, self.warned = prior, constraints, False
        self.proposed, self.accepted = 0, None  # accepted: (batch,) counts
        self.start, self.max_time = time.time(), max_time
        self.region = " and ".join(
            what
            for what, used in (
                ("lies in the prior's support", prior is not None),
                ("meets the constraints", constraints is not None),
            )
            if used
        )
        self.remedy = _REMEDY["constraints" if constraints else "prior"]

    def accept(self, samples: Tensor) -> Tensor:
        """``(k, batch, d)`` samples -> ``(k, batch)``: in the support, constraints
        met."""
        inside = torch.ones(samples.shape[:2], dtype=torch.bool, device=samples.device)
        if self.prior is not None:
            inside &= within_support(self.prior, samples).reshape(samples.shape[:2])
        if self.constraints is not None:
            inside &= self.constraints(samples)
        return inside

    def update(self, samples: Tensor) -> None:
        """Count ``(k, batch, d)`` proposals; stop on collapse or timeout."""
        self.proposed += samples.shape[0]
        accepted = self.accept(samples).sum(0)
        self.accepted = accepted if self.accepted is None else self.accepted + accepted
        if self.proposed < MIN_PROPOSALS:
            return
        if (self.accepted == 0).any():
            which = torch.nonzero(self.accepted == 0).flatten().tolist()
            raise RuntimeError(
                f"None of {self.proposed} samples drawn for condition(s) {which[:5]} "
                f"{self.region}: the conditional has (almost) no mass there (a "
                "diverged training, an `x` far from the simulations, or constraints "
                f"outside the prior). {self.remedy}, or `max_sampling_time` to "
                "bound the time."
            )
        rate = float(self.accepted.min()) / self.proposed
        if rate < WARN_ACCEPTANCE and not self.warned:
            self.warned = True
            warnings.warn(
                f"Only {rate:.3%} of the samples drawn {self.region}; sampling may "
                f"take long. Set `max_sampling_time` to bound it. {self.remedy}.",
                UserWarning,
                stacklevel=5,
            )

    def check_time(self) -> None:
        if self.max_time is not None and time.time() - self.start > self.max_time:
            raise RuntimeError(
                f"Sampling exceeded `max_sampling_time` ({self.max_time} s) with "
                f"{0 if self.accepted is None else int(self.accepted.min())} "
                f"samples accepted for some condition. {self.remedy}."
            )


def sample_in_support(
    draw: Draw,
    prior: Distribution | None,
    num: int,
    batch: int,
    max_sampling_batch_size: int,
    show_progress_bars: bool = False,
    max_sampling_time: float | None = None,
    return_partial_on_timeout: bool = False,
    constraints: Accept | None = None,
) -> Tensor:
    """``num`` samples per condition, in the prior's support if ``prior`` is given
    and meeting ``constraints`` if they are.

    Args:
        draw: ``draw(k)`` returns ``(k, batch, d)`` samples.
        prior: Prior whose support the samples must lie in, or ``None`` (no
            rejection).
        num: Samples per condition.
        batch: Number of conditions.
        max_sampling_batch_size: Rows (samples x conditions) per proposal of
            sbi's rejection loop; ``draw`` is called with at most
            :data:`~.potential.CACHE_FRIENDLY_ROWS` rows at once.
        show_progress_bars: Show sbi's progress bar.
        max_sampling_time: As sbi's ``accept_reject_sample`` (seconds).
        return_partial_on_timeout: As sbi's ``accept_reject_sample``.
        constraints: Which samples meet the constraints (see
            :func:`constraint_check`), or ``None``.

    Returns:
        ``(num, batch, d)`` samples (fewer with ``return_partial_on_timeout``).
    """
    per_call = max(1, max_sampling_batch_size // batch)
    run_size = max(1, min(per_call, CACHE_FRIENDLY_ROWS // batch))
    if (prior is None and constraints is None) or num == 0:
        return _in_runs(draw, num, run_size)
    # A timeout inside a proposal throws its samples away; with partial returns,
    # sbi's check between proposals stops instead (one proposal late, at most), so
    # a slow first proposal still returns what it accepted.
    inner_time = None if return_partial_on_timeout else max_sampling_time
    counts = _Acceptance(prior, constraints, inner_time)

    def propose(shape: torch.Size, **kwargs: object) -> Tensor:
        return _in_runs(draw, shape.numel(), run_size, counts)

    samples, _ = accept_reject_sample(
        proposal=propose,
        accept_reject_fn=counts.accept,
        num_samples=num,
        num_xos=batch,
        show_progress_bars=show_progress_bars,
        max_sampling_batch_size=per_call,
        proposal_sampling_kwargs={},
        max_sampling_time=max_sampling_time,
        return_partial_on_timeout=return_partial_on_timeout,
    )
    return samples


def _in_runs(
    draw: Draw, num: int, run_size: int, counts: _Acceptance | None = None
) -> Tensor:
    runs = []
    for start in range(0, num, run_size):
        runs.append(draw(min(run_size, num - start)))
        if counts is not None:
            counts.update(runs[-1])
            if start + run_size < num:
                counts.check_time()
    if not runs:
        return draw(0)
    return torch.cat(runs)


def support_box(
    prior: Distribution | None, dim: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper bounds ``(dim,)`` of a prior's support, if it is a box.

    Args:
        prior: The prior (e.g. sbi's ``BoxUniform``), or ``None``.
        dim: Number of parameters.

    Returns:
        The bounds (``-inf``/``inf`` where unbounded), or ``None`` when the support
        is unknown or unbounded.
    """
    try:
        support = prior.support
    except (AttributeError, NotImplementedError):
        return None
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    ends = []
    for end, default in (("lower_bound", -np.inf), ("upper_bound", np.inf)):
        value = getattr(support, end, default)
        value = value.tolist() if isinstance(value, Tensor) else value
        try:
            ends.append(np.broadcast_to(np.asarray(value, dtype=float), (dim,)))
        except (TypeError, ValueError):
            return None
    if np.isinf(ends[0]).all() and np.isinf(ends[1]).all():
        return None
    return ends[0], ends[1]


def check_feasible(
    guidance: Guidance,
    prior: Distribution | None,
    mean: Tensor,
    std: Tensor,
    latent: Tensor,
) -> None:
    """Raise a ``ValueError`` if the interval and linear constraints of guidance
    leave no room (an empty set, or one outside the prior's support box).

    Args:
        guidance: The guidance (its standardized rows ``W u <= c``).
        prior: The prior of the latent variables, or ``None``.
        mean: ``(n,)`` standardization mean.
        std: ``(n,)`` standardization std.
        latent: ``(n,)`` booleans, ``True`` for the sampled variables.
    """
    weights = np.array(guidance.weights[:, latent].tolist(), dtype=float)
    if weights.shape[0] == 0:
        return
    bounds = np.array(guidance.bounds.tolist(), dtype=float)
    if _depth(weights, bounds, None) < MIN_DEPTH:
        raise ValueError(
            "The constraints of `guidance` exclude every value (their set is "
            "empty, e.g. disjoint intervals): no sample can meet them."
        )
    box = support_box(prior, int(latent.sum()))
    if box is None:
        return
    shift = np.array(mean[latent].tolist(), dtype=float)
    scale = np.array(std[latent].tolist(), dtype=float)
    box = ((box[0] - shift) / scale, (box[1] - shift) / scale)
    if _depth(weights, bounds, box) < MIN_DEPTH:
        raise ValueError(
            "The constraints of `guidance` lie entirely outside the prior's "
            "support: every sample meeting them would be rejected. Move them "
            "inside the prior's bounds."
        )


def _depth(
    weights: np.ndarray,
    bounds: np.ndarray,
    box: tuple[np.ndarray, np.ndarray] | None,
) -> float:
    """Radius (up to 1) of the largest ball inside ``{u: W u <= c}`` and the box;
    ``0`` if it has no interior or is empty (unit-norm rows of ``W``)."""
    from scipy.optimize import linprog

    dim = weights.shape[1]
    rows, limits = [np.hstack([weights, np.ones((len(weights), 1))])], [bounds]
    for sign, ends in () if box is None else ((-1.0, box[0]), (1.0, box[1])):
        finite = np.isfinite(ends)
        eye = sign * np.eye(dim)[finite]
        rows.append(np.hstack([eye, np.ones((len(eye), 1))]))
        limits.append(sign * ends[finite])
    cost = np.zeros(dim + 1)
    cost[-1] = -1.0
    result = linprog(
        cost,
        A_ub=np.vstack(rows),
        b_ub=np.concatenate(limits),
        bounds=[(None, None)] * dim + [(0.0, 1.0)],
        method="highs",
    )
    return float(result.x[-1]) if result.status == 0 else 0.0


def sample_slack(
    guidance: Guidance, potential: Any, samples: Tensor, x: Tensor
) -> Tensor:
    """Each sample's smallest constraint slack, in standard deviations.

    Args:
        guidance: The constraints.
        potential: The conditional's
            :class:`~sbi_allinone.simformer.potential.ConditionalPotential`.
        samples: ``(num, batch, num_latent)`` samples in user units.
        x: ``(batch, num_condition)`` their conditions.

    Returns:
        ``(num, batch)`` slacks: ``>= 0`` where every constraint holds.
    """
    latent = samples.reshape(-1, samples.shape[-1])
    rows = x.repeat(len(samples), 1)
    slacks = []
    for theta, x_rows in zip(
        latent.split(CACHE_FRIENDLY_ROWS), rows.split(CACHE_FRIENDLY_ROWS), strict=True
    ):
        values, _ = potential.standardized_rows(theta, x_rows)
        slacks.append(guidance.slack(values)[0].amin(dim=1))
    return torch.cat(slacks).reshape(samples.shape[:2])


def constraint_check(
    guidance: Guidance | None, potential: Any, x: Tensor
) -> Accept | None:
    """Which samples meet every constraint of ``guidance``: the acceptance of
    ``constrain_by="rejection"``.

    Args:
        guidance: The constraints (``None``: nothing to check).
        potential: The conditional's
            :class:`~sbi_allinone.simformer.potential.ConditionalPotential`.
        x: ``(batch, num_condition)`` the conditions.

    Returns:
        ``accept(samples)``: ``(k, batch, num_latent)`` samples in user units ->
        ``(k, batch)`` booleans; ``None`` without ``guidance``.
    """
    if guidance is None:
        return None
    return lambda samples: sample_slack(guidance, potential, samples, x) >= 0


def warn_violations(
    guidance: Guidance | None, potential: Any, samples: Tensor, x: Tensor
) -> None:
    """Warn with the number of guided samples that break a constraint.

    Args:
        guidance: The guidance, or ``None`` (nothing to check).
        potential: The conditional's
            :class:`~sbi_allinone.simformer.potential.ConditionalPotential`.
        samples: ``(num, batch, num_latent)`` samples in user units.
        x: ``(batch, num_condition)`` their conditions.
    """
    if guidance is None or samples.numel() == 0:
        return
    breach = -sample_slack(guidance, potential, samples, x)
    broken, worst = int((breach > VIOLATION_TOLERANCE).sum()), float(breach.max())
    if broken:
        warnings.warn(
            f"{broken} of {breach.numel()} guided samples break a constraint of "
            f"`guidance` (by up to {worst:.3g} standard deviations): guidance is "
            "soft. More `recurrence` or `steps` reduce it; filter the samples if "
            "the constraint is hard.",
            UserWarning,
            stacklevel=4,
        )
