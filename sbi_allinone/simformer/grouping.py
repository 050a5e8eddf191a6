"""Several values per token, for high-dimensional data.

With one token per number, a transformer's attention costs grow with the square of
the number of values: 105 tokens for slcp_distractors (5 parameters, 100 data).
:class:`ColumnGroups` assigns the columns of the joint ``[theta, x]`` to tokens
(patches of a series, blocks of a vector), gathers each token's values and
condition flags into one input vector and scatters the per-token outputs back to
the columns. Everything outside the network (preconditioning, loss, samplers,
condition masks) stays per value: a token may hold conditioned and latent values
at once, its embedding sees which are which.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ColumnGroups(nn.Module):
    """Which values ("columns") of the joint each token holds.

    Args:
        groups: Token index of each column, ``(n,)`` integers covering
            ``[0, num_tokens)``; every token holds at least one column.

    Example:
        >>> groups = ColumnGroups(x_groups(num_parameters=2, num_data=5, size=3))
        >>> groups.num_tokens, groups.size
        (4, 3)
    """

    def __init__(self, groups: Sequence[int] | Tensor) -> None:
        super().__init__()
        groups = torch.as_tensor(groups, dtype=torch.long)
        if groups.ndim != 1 or len(groups) == 0 or groups.min() < 0:
            raise ValueError(
                f"`groups` must be (n,) non-negative token indices, got {groups}."
            )
        counts = torch.bincount(groups)
        if (counts == 0).any():
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"`groups` leaves tokens {empty} without a column.")
        self.num_columns, self.num_tokens = len(groups), len(counts)
        self.size = int(counts.max())
        order = torch.argsort(groups, stable=True)
        slot = torch.arange(len(groups)) - torch.cumsum(counts, 0)[groups[order]]
        slot = slot + counts[groups[order]]
        flat = groups[order] * self.size + slot  # position of column order[i]
        # ``index``: column held by each (token, slot); padding: the extra column n.
        index = torch.full((self.num_tokens * self.size,), self.num_columns)
        index[flat] = order
        position = torch.empty_like(groups)
        position[order] = flat
        self.register_buffer("index", index.reshape(self.num_tokens, self.size))
        self.register_buffer("position", position)
        self.register_buffer("assignment", nn.functional.one_hot(groups).T.float())

    def gather(self, values: Tensor, condition_mask: Tensor) -> Tensor:
        """Each token's values and condition flags.

        Args:
            values: ``(batch, n)``.
            condition_mask: ``(batch, n)`` booleans.

        Returns:
            ``(batch, num_tokens, 2 * size)``: the values then the flags, zero in
            the slots of tokens holding fewer than ``size`` columns.
        """
        pad = values.new_zeros(values.shape[0], 1)
        flags = condition_mask.to(values.dtype)
        values = torch.cat([values, pad], dim=1)[:, self.index]
        flags = torch.cat([flags, pad], dim=1)[:, self.index]
        return torch.cat([values, flags], dim=-1)

    def scatter(self, outputs: Tensor) -> Tensor:
        """Per-token outputs ``(batch, num_tokens, size)`` as ``(batch, n)``."""
        return outputs.flatten(1)[:, self.position]

    def conditioned_fraction(self, condition_mask: Tensor) -> Tensor:
        """``(batch, num_tokens)``: the share of each token's values conditioned."""
        flags = condition_mask.to(self.assignment.dtype)
        return flags @ self.assignment.T / self.assignment.sum(1)

    def token_mask(self, attention_mask: Tensor | None) -> Tensor | None:
        """A per-value attention mask, per token: token ``a`` attends to ``b`` where
        some value of ``a`` attends to some value of ``b``.

        Args:
            attention_mask: ``(n, n)`` or ``(batch, n, n)`` booleans, or ``None``.

        Returns:
            ``(num_tokens, num_tokens)`` or ``(batch, num_tokens, num_tokens)``.
        """
        if attention_mask is None:
            return None
        a = self.assignment.to(attention_mask.device)
        return (a @ attention_mask.to(a.dtype) @ a.T) > 0


def x_groups(num_parameters: int, num_data: int, size: int) -> list[int]:
    """One token per parameter, and the data in consecutive groups of ``size``
    values (the last may hold fewer).

    Args:
        num_parameters: Number of parameter values.
        num_data: Number of data values.
        size: Data values per token.

    Returns:
        The token index of each of the ``num_parameters + num_data`` columns.
    """
    check_group_size(size)
    data = [num_parameters + j // size for j in range(num_data)]
    return list(range(num_parameters)) + data


def check_group_size(size: int) -> None:
    """Raise unless ``size`` (``x_per_token``) is a positive integer."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"`x_per_token` must be a positive integer, got {size!r}.")
