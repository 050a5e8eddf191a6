"""Condition masks: which variables a training example conditions on.

The Simformer learns every conditional of the joint by drawing, per training example,
one of five condition masks with probability 1/5 each (Gloeckler et al. 2024, Sec. 3.3):
joint (nothing conditioned), posterior (all data conditioned), likelihood (all
parameters conditioned), Bernoulli(0.3) and Bernoulli(0.7) over all variables. A mask
that conditions on everything leaves nothing to learn and becomes the joint mask. The
official code draws the Bernoulli masks once per batch; here they are drawn per example.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MASK_KINDS", "sample_condition_masks"]

MASK_KINDS = ("joint", "posterior", "likelihood", "bernoulli_0.3", "bernoulli_0.7")


def sample_condition_masks(
    batch_size: int,
    num_parameters: int,
    num_data: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one condition mask per example from the paper's five-way mixture.

    Args:
        batch_size: Number of masks.
        num_parameters: Number of parameter variables (first in every mask).
        num_data: Number of data variables (after the parameters).
        generator: Random generator, for reproducible masks.

    Returns:
        Boolean masks ``(batch_size, num_parameters + num_data)``, ``True`` where the
        variable is conditioned on.
    """
    n = num_parameters + num_data
    kind = torch.randint(len(MASK_KINDS), (batch_size, 1), generator=generator)
    is_data = torch.arange(n) >= num_parameters
    uniform = torch.rand(batch_size, n, generator=generator)
    masks = torch.where(kind == 1, is_data, False)
    masks = torch.where(kind == 2, ~is_data, masks)
    masks = torch.where(kind == 3, uniform < 0.3, masks)
    masks = torch.where(kind == 4, uniform < 0.7, masks)
    return masks & ~masks.all(dim=1, keepdim=True)
