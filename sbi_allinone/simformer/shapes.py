"""Checked conversion of user input to the 2-D shapes the Simformer works with."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["as_matrix", "as_tensor", "check_count"]


def as_tensor(
    value: object,
    name: str,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
    bool_ok: bool = False,
) -> Tensor:
    """``value`` as a real tensor of ``dtype``, or a ``TypeError`` naming it.

    Args:
        value: Tensor or array-like of real numbers (not strings, booleans or
            complex numbers).
        name: The argument's name and meaning, for the error message.
        dtype: Result dtype.
        device: Result device; default the tensor's own.
        bool_ok: Accept booleans (as 0 and 1).

    Returns:
        The tensor.
    """
    expected = f"{name} must be a tensor (or array-like) of real numbers"
    if isinstance(value, str | bytes) or (
        isinstance(value, Sequence) and _holds_text(value)
    ):
        raise TypeError(f"{expected}, got text {value!r:.60}.")
    try:
        tensor = torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{expected}, got {type(value).__name__}: {error}") from None
    if (tensor.dtype == torch.bool and not bool_ok) or tensor.is_complex():
        raise TypeError(f"{expected}, got dtype {tensor.dtype}.")
    return tensor.to(dtype)


def _holds_text(value: Sequence) -> bool:
    return any(
        isinstance(v, str | bytes) or (isinstance(v, Sequence) and _holds_text(v))
        for v in value
    )


def as_matrix(
    value: Tensor,
    width: int,
    name: str,
    rows: str,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
    nan_ok: bool = False,
    event_shape: tuple[int, ...] | None = None,
) -> Tensor:
    """``value`` as a finite ``(k, width)`` matrix; a single row ``(width,)``
    becomes ``(1, width)``.

    Args:
        value: Tensor or array-like of real numbers, ``(width,)`` or ``(k, width)``
            (or, with ``event_shape``, ``event_shape`` or ``(k, *event_shape)``).
        width: Required number of columns.
        name: The argument's name and meaning, for the error messages.
        rows: What the rows are, for the error message (e.g. ``"batch"``).
        dtype: Result dtype.
        device: Result device; default the tensor's own (torch's default
            device for other array-likes).
        nan_ok: Allow NaN entries (infinite ones never are).
        event_shape: Shape of one row before flattening, e.g. ``(1, 3)`` for
            simulations of shape ``(N, 1, 3)``.

    Returns:
        ``(k, width)`` tensor.

    Raises:
        TypeError: For text, booleans or complex numbers.
        ValueError: For another shape, or infinite (or NaN) entries.

    Example:
        >>> as_matrix([1.0, 2.0], 2, "`x`", "batch", torch.float32)
        tensor([[1., 2.]])
    """
    matrix = as_tensor(value, name, dtype, device)
    if event_shape is not None and len(event_shape) > 1:
        if tuple(matrix.shape) == tuple(event_shape):
            matrix = matrix.reshape(1, width)
        elif tuple(matrix.shape[1:]) == tuple(event_shape):
            matrix = matrix.reshape(matrix.shape[0], width)
    if matrix.ndim == 1:
        matrix = matrix.unsqueeze(0)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(
            f"{name} must have shape ({rows}, {width}), got {tuple(matrix.shape)}."
        )
    bad = torch.isinf(matrix) if nan_ok else ~torch.isfinite(matrix)
    if bad.any():
        what = "infinite" if nan_ok else "NaN or infinite"
        raise ValueError(f"{name} has {int(bad.sum())} {what} entries.")
    return matrix


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum``, or a clear error.

    Args:
        value: The number given.
        name: The argument's name, for the error message.
        minimum: Smallest allowed value.

    Returns:
        The integer.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an integer, got {type(value).__name__} {value!r:.40}."
        ) from None
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}.")
    return value
