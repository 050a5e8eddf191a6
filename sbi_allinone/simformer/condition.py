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

__all__ = ["MASK_KINDS", "condition_masks", "sample_condition_masks"]

MASK_KINDS = ("joint", "posterior", "likelihood", "bernoulli_0.3", "bernoulli_0.7")


def sample_condition_masks(
    batch_size: int,
    num_parameters: int,
    num_data: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw one condition mask per example from the paper's five-way mixture.

    Args:
        batch_size: Number of masks.
        num_parameters: Number of parameter variables (first in every mask).
        num_data: Number of data variables (after the parameters).
        generator: Random generator, for reproducible masks.
        device: Device of the masks; default the generator's, else torch's
            default device. A training step passes its batch's.

    Returns:
        Boolean masks ``(batch_size, num_parameters + num_data)``, ``True`` where the
        variable is conditioned on.
    """
    n = num_parameters + num_data
    if device is None and generator is not None:
        device = generator.device
    uniforms = torch.rand(batch_size, 1 + n, generator=generator, device=device)
    return condition_masks(uniforms, num_parameters)


def condition_masks(uniforms: Tensor, num_parameters: int) -> Tensor:
    """The five-way mixture of condition masks as a function of uniforms.

    Args:
        uniforms: ``(batch, 1 + n)`` uniforms on ``[0, 1)``: the first picks the
            kind of mask, the others the Bernoulli draws of each variable.
        num_parameters: Number of parameter variables (first of the ``n``).

    Returns:
        Boolean masks ``(batch, n)``, ``True`` where the variable is conditioned on.
    """
    n = uniforms.shape[1] - 1
    kind = (uniforms[:, :1] * len(MASK_KINDS)).long().clamp(max=len(MASK_KINDS) - 1)
    is_data = torch.arange(n, device=uniforms.device) >= num_parameters
    uniform = uniforms[:, 1:]
    masks = torch.where(kind == 1, is_data, False)
    masks = torch.where(kind == 2, ~is_data, masks)
    masks = torch.where(kind == 3, uniform < 0.3, masks)
    masks = torch.where(kind == 4, uniform < 0.7, masks)
    return masks & ~masks.all(dim=1, keepdim=True)
