"""What each token of the Simformer is: its variable kind and its metadata.

With fixed-size vectors the token of column ``i`` has identifier ``i`` and no
metadata, and nothing here is needed. For series observed at irregular times, or
parameters that are functions, several tokens share one variable kind (one
identifier, one standardization) and differ by their metadata (e.g. a time), so that
their number can differ between simulations and between training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Tokens"]


@dataclass(frozen=True)
class Tokens:
    """The variable kind and the metadata of every token.

    Args:
        node_ids: Variable kind of each token, ``(n,)`` or ``(batch, n)`` integers
            (an index into the network's identifiers and the standardization).
        metadata: Per-token metadata ``(batch, n, num_channels)`` (a batch of 1 is
            shared by all rows), NaN where a token has none; ``None`` without
            metadata.
    """

    node_ids: Tensor
    metadata: Tensor | None = None

    def __post_init__(self) -> None:
        if self.node_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"`node_ids` must be integers, got dtype {self.node_ids.dtype}."
            )
        n = self.node_ids.shape[-1]
        if self.metadata is not None and (
            self.metadata.ndim != 3 or self.metadata.shape[1] != n
        ):
            raise ValueError(
                f"`metadata` must be (batch, {n}, num_channels) for {n} tokens, got "
                f"{tuple(self.metadata.shape)}."
            )

    def rows(self, index: Tensor | slice) -> Tokens:
        """The tokens of some batch rows (per-row ``node_ids`` and ``metadata``
        are indexed, shared ones kept)."""
        node_ids = self.node_ids if self.node_ids.ndim == 1 else self.node_ids[index]
        metadata = self.metadata
        if metadata is not None and metadata.shape[0] > 1:
            metadata = metadata[index]
        return Tokens(node_ids, metadata)
