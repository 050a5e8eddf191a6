"""Checked conversion of user input to the 2-D shapes the Simformer works with."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_matrix"]


def as_matrix(
    value: Tensor,
    width: int,
    name: str,
    rows: str,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> Tensor:
    """``value`` as a ``(k, width)`` matrix; a single row ``(width,)`` becomes
    ``(1, width)``.

    Args:
        value: Tensor or array-like, ``(width,)`` or ``(k, width)``.
        width: Required number of columns.
        name: The argument's name and meaning, for the error message.
        rows: What the rows are, for the error message (e.g. ``"batch"``).
        dtype: Result dtype.
        device: Result device; default the tensor's own (torch's default
            device for other array-likes).

    Returns:
        ``(k, width)`` tensor.

    Example:
        >>> as_matrix([1.0, 2.0], 2, "`x`", "batch", torch.float32)
        tensor([[1., 2.]])
    """
    matrix = torch.as_tensor(value, dtype=dtype, device=device)
    if matrix.ndim == 1:
        matrix = matrix.unsqueeze(0)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(
            f"{name} must have shape ({rows}, {width}), got {tuple(matrix.shape)}."
        )
    return matrix
