"""Checks of the arguments of the Simformer's conditionals: condition masks,
guidance, sample shapes and sampler steps, with errors that name the argument."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from sbi.utils.torchutils import process_device
from torch import Tensor

from sbi_allinone.simformer.constraints import (
    Constraint,
    FunctionConstraint,
    Interval,
    LinearConstraint,
)
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.sampling import SOLVERS
from sbi_allinone.simformer.shapes import as_matrix, check_count

__all__ = [
    "CONSTRAIN_BY",
    "check_condition_mask",
    "check_constrain_by",
    "check_guidance",
    "check_sampler",
    "check_steps",
    "checked_condition",
    "estimator_device",
    "sample_sizes",
]

CONSTRAINTS = (Interval, LinearConstraint, FunctionConstraint)
#: Ways to impose constraints: the paper's guidance (gradient at the Tweedie
#: estimate), guidance with the gradient taken through the denoiser, rejection.
CONSTRAIN_BY = ("guidance", "guidance_through_network", "rejection")
#: Distance (in standard deviations of the simulations) beyond which a condition
#: is an extrapolation and sampling warns.
FAR = 20.0


def check_condition_mask(
    condition_mask: Any, num_nodes: int, device: torch.device
) -> Tensor:
    """``condition_mask`` as ``(num_nodes,)`` booleans, after checking it.

    Args:
        condition_mask: Booleans (or integers that are exactly 0 or 1) over
            ``[theta, x]``, ``True`` for the conditioned variables.
        num_nodes: Number of variables.
        device: Device of the result.

    Returns:
        ``(num_nodes,)`` boolean tensor.
    """
    expected = (
        "`condition_mask` must be a boolean tensor (or 0/1 integers) with one "
        "entry per variable of [theta, x]"
    )
    if isinstance(condition_mask, str | bytes):
        raise TypeError(f"{expected}, got text {condition_mask!r:.40}.")
    try:
        mask = torch.as_tensor(condition_mask, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{expected}, got {type(condition_mask).__name__}.") from None
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or mask.is_complex():
            raise TypeError(f"{expected}, got dtype {mask.dtype}.")
        if ((mask != 0) & (mask != 1)).any():
            values = sorted(set(mask.flatten().tolist()) - {0, 1})
            raise ValueError(f"{expected}; it has other values: {values[:5]}.")
    mask = mask.bool().flatten()
    if mask.shape != (num_nodes,):
        raise ValueError(
            f"`condition_mask` must have {num_nodes} entries (one per variable of "
            f"[theta, x]), got {tuple(mask.shape)}."
        )
    if mask.all() or not mask.any():
        raise ValueError(
            "`condition_mask` must condition on some but not all variables."
        )
    return mask


def check_guidance(guidance: Any) -> list[Constraint] | None:
    """``guidance`` as a list of constraints (``None`` for none), or a clear error.

    Args:
        guidance: A list (or tuple) of :class:`~.guidance.Interval`,
            :class:`~.guidance.LinearConstraint` or
            :class:`~.guidance.FunctionConstraint`, or ``None``.

    Returns:
        The constraints, or ``None`` for an empty or absent ``guidance``.
    """
    expected = (
        "`guidance` must be a list of Interval, LinearConstraint or FunctionConstraint"
    )
    if guidance is None:
        return None
    if isinstance(guidance, CONSTRAINTS):
        raise TypeError(f"{expected}: wrap the single constraint, [{guidance!r:.60}].")
    if isinstance(guidance, str | bytes) or not isinstance(guidance, Sequence):
        raise TypeError(f"{expected}, got {type(guidance).__name__}.")
    for i, constraint in enumerate(guidance):
        if not isinstance(constraint, CONSTRAINTS):
            hint = ""
            if isinstance(constraint, tuple | list):
                hint = " (e.g. Interval(node, low, high) instead of a tuple)"
            raise TypeError(
                f"{expected}; entry {i} is a {type(constraint).__name__}{hint}."
            )
    return list(guidance) or None


def check_constrain_by(constrain_by: Any) -> str:
    """``constrain_by``, checked: one of :data:`CONSTRAIN_BY`."""
    if constrain_by not in CONSTRAIN_BY:
        raise ValueError(
            f"`constrain_by` must be one of {CONSTRAIN_BY}, got {constrain_by!r}."
        )
    return constrain_by


def check_sampler(sample_with: Any, ode_solver: Any, guided: bool) -> str:
    """``sample_with`` (default: ``"sde"`` with guidance, else ``"ode"``), after
    checking it and ``ode_solver`` (one of ``SOLVERS``)."""
    if sample_with is None:
        sample_with = "sde" if guided else "ode"
    if sample_with not in ("sde", "ode"):
        raise ValueError(f"`sample_with` must be 'sde' or 'ode', got {sample_with!r}.")
    if guided and sample_with != "sde":
        raise ValueError("`guidance` needs `sample_with='sde'`.")
    if ode_solver not in SOLVERS:
        raise ValueError(f"`ode_solver` must be one of {SOLVERS}, got {ode_solver!r}.")
    return sample_with


def check_steps(steps: Any) -> int | None:
    """``steps`` (``None`` for the default), after checking it is at least 2."""
    return None if steps is None else check_count(steps, "steps", minimum=2)


def sample_sizes(sample_shape: Any) -> list[int]:
    """The sizes of ``sample_shape`` (a tuple of sizes, or one size), checked.

    Args:
        sample_shape: ``torch.Size``, tuple of non-negative integers or an int.

    Returns:
        The sizes, e.g. ``[10, 2]``.
    """
    if isinstance(sample_shape, Tensor) and sample_shape.ndim > 0:
        sample_shape = sample_shape.tolist()
    if not isinstance(sample_shape, Sequence) or isinstance(sample_shape, str):
        sample_shape = (sample_shape,)
    return [check_count(s, "sample_shape", minimum=0) for s in sample_shape]


def estimator_device(
    estimator: SimformerEstimator, device: str | torch.device | None
) -> torch.device:
    """The estimator's device; ``device``, if given, must name the same one."""
    here = estimator.mean.device
    if device is not None and torch.device(process_device(device)) != here:
        raise ValueError(
            f"`device` is {device!r} but the estimator is on {here}: move the "
            "estimator first (`estimator.to(device)`) or leave `device` out."
        )
    return here


def checked_condition(
    x: Any,
    condition_mask: Tensor,
    estimator: SimformerEstimator,
    event_shape: tuple[int, ...] | None = None,
) -> Tensor:
    """Conditions ``x`` as ``(batch, num_condition)`` on the estimator's device.

    NaN entries are missing (a row of NaN: the marginal of the latents);
    infinite ones, text and other shapes raise. Warns for values more than
    :data:`FAR` standard deviations from the simulations.

    Args:
        x: ``(batch, num_condition)``, ``(num_condition,)`` or, with
            ``event_shape``, ``(batch, *event_shape)``.
        condition_mask: ``(n,)`` booleans, ``True`` for the conditioned variables.
        estimator: The trained estimator (its ``mean`` and ``std``).
        event_shape: Shape of one condition before flattening, if not flat.

    Returns:
        ``(batch, num_condition)`` float32 conditions.
    """
    mean = estimator.mean[condition_mask]
    std = estimator.std[condition_mask]
    name = "`x` (the conditioned variables)"
    x = as_matrix(
        x, len(mean), name, "batch", torch.float32, mean.device, nan_ok=True,
        event_shape=event_shape,
    )  # fmt: skip
    if ((x - mean).abs() > FAR * std).any():
        warnings.warn(
            f"{name} lies more than {FAR:g} standard deviations away from the "
            "simulations: the conditional is an extrapolation.",
            UserWarning,
            stacklevel=4,
        )
    return x
