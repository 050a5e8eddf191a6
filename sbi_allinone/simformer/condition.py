"""Condition masks: which variables a training example conditions on.

The Simformer learns every conditional of the joint by drawing, per training example,
one of five condition masks with probability 1/5 each (Gloeckler et al. 2024, Sec. 3.3):
joint (nothing conditioned), posterior (all data conditioned), likelihood (all
parameters conditioned), Bernoulli(0.3) and Bernoulli(0.7) over all variables. A mask
that conditions on everything leaves nothing to learn and becomes the joint mask. The
official code draws the Bernoulli masks once per batch; here they are drawn per example.
``mask_weights`` reweights the five kinds, e.g. towards the posterior mask when the
posterior is the conditional that matters most.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = [
    "MASK_KINDS",
    "condition_masks",
    "mask_kind_cdf",
    "sample_condition_masks",
]

MASK_KINDS = ("joint", "posterior", "likelihood", "bernoulli_0.3", "bernoulli_0.7")


def sample_condition_masks(
    batch_size: int,
    num_parameters: int,
    num_data: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    kind_cdf: Tensor | None = None,
) -> Tensor:
    """Draw one condition mask per example from the paper's five-way mixture.

    Args:
        batch_size: Number of masks.
        num_parameters: Number of parameter variables (first in every mask).
        num_data: Number of data variables (after the parameters).
        generator: Random generator, for reproducible masks.
        device: Device of the masks; default the generator's, else torch's
            default device. A training step passes its batch's.
        kind_cdf: Cumulative probabilities of :data:`MASK_KINDS`
            (:func:`mask_kind_cdf`); ``None``: 1/5 each.

    Returns:
        Boolean masks ``(batch_size, num_parameters + num_data)``, ``True`` where the
        variable is conditioned on.
    """
    n = num_parameters + num_data
    if device is None and generator is not None:
        device = generator.device
    uniforms = torch.rand(batch_size, 1 + n, generator=generator, device=device)
    return condition_masks(uniforms, num_parameters, kind_cdf)


def mask_kind_cdf(mask_weights: Mapping[str, float] | None) -> Tensor | None:
    """Check relative weights of the mask kinds and return their cumulative
    probabilities.

    Args:
        mask_weights: Kind (one of :data:`MASK_KINDS`) to a non-negative weight;
            kinds not named get weight 0. ``None``: the paper's 1/5 each.

    Returns:
        ``(5,)`` cumulative probabilities in the order of :data:`MASK_KINDS`, or
        ``None`` for the paper's mixture.
    """
    if mask_weights is None:
        return None
    unknown = set(mask_weights) - set(MASK_KINDS)
    if unknown:
        raise ValueError(
            f"`mask_weights` has unknown kinds {sorted(unknown)}; "
            f"kinds are {list(MASK_KINDS)}."
        )
    weights = torch.tensor(
        [float(mask_weights.get(kind, 0.0)) for kind in MASK_KINDS],
        dtype=torch.float64,
    )
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() == 0:
        raise ValueError(
            "`mask_weights` must be finite and non-negative with a positive sum, "
            f"got {dict(mask_weights)}."
        )
    return (weights.cumsum(0) / weights.sum()).float()


def _kinds(uniform: Tensor, kind_cdf: Tensor | None) -> Tensor:
    if kind_cdf is None:
        return (uniform * len(MASK_KINDS)).long().clamp(max=len(MASK_KINDS) - 1)
    cdf = kind_cdf.to(uniform.device, uniform.dtype)
    kind = torch.searchsorted(cdf, uniform.contiguous(), right=True)
    return kind.clamp(max=len(MASK_KINDS) - 1)


def condition_masks(
    uniforms: Tensor, num_parameters: int, kind_cdf: Tensor | None = None
) -> Tensor:
    """The five-way mixture of condition masks as a function of uniforms.

    Args:
        uniforms: ``(batch, 1 + n)`` uniforms on ``[0, 1)``: the first picks the
            kind of mask, the others the Bernoulli draws of each variable.
        num_parameters: Number of parameter variables (first of the ``n``).
        kind_cdf: Cumulative probabilities of the kinds (:func:`mask_kind_cdf`);
            ``None``: 1/5 each.

    Returns:
        Boolean masks ``(batch, n)``, ``True`` where the variable is conditioned on.
    """
    n = uniforms.shape[1] - 1
    kind = _kinds(uniforms[:, :1], kind_cdf)
    is_data = torch.arange(n, device=uniforms.device) >= num_parameters
    uniform = uniforms[:, 1:]
    masks = torch.where(kind == 1, is_data, False)
    masks = torch.where(kind == 2, ~is_data, masks)
    masks = torch.where(kind == 3, uniform < 0.3, masks)
    masks = torch.where(kind == 4, uniform < 0.7, masks)
    return masks & ~masks.all(dim=1, keepdim=True)
