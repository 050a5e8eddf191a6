"""An exponential moving average of a module's weights (used in eval mode)."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["AveragedNetwork", "update_weight_average", "weight_average"]


def _warmed_up_ema_(
    averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor, decay: float
) -> None:
    """One in-place EMA step at decay ``min(decay, (1 + n) / (10 + n))``.

    The warm-up lets the average forget the first steps' weights quickly.
    """
    n = int(num_averaged)
    weight = 1.0 - min(decay, (1 + n) / (10 + n))
    # One fused call for all tensors: a loop of lerp_ cost 4 % of a training step.
    torch._foreach_lerp_(averaged, current, weight)


def weight_average(module: nn.Module, decay: float) -> AveragedModel:
    """A frozen copy of ``module`` whose weights track its moving average.

    Torch's :class:`~torch.optim.swa_utils.AveragedModel` with a warmed-up
    exponential average: the first ``update_parameters`` call copies the live
    weights, the ``n``-th later one decays by ``min(decay, (1 + n) / (10 + n))``.

    Args:
        module: The live module; copied here.
        decay: Decay per update, in ``[0, 1)``.

    Returns:
        The average; the averaged copy is its ``.module``.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"`ema_decay` must be in [0, 1) or None, got {decay}.")
    # partial of a module-level function, so that trained estimators pickle.
    average = AveragedModel(module, multi_avg_fn=partial(_warmed_up_ema_, decay=decay))
    average.module.requires_grad_(False)
    return average


def update_weight_average(average: AveragedModel, module: nn.Module) -> None:
    """``average.update_parameters(module)`` for an average from
    :func:`weight_average`, in one fused update of the weight lists.

    torch's method regroups every tensor by device and type on each call: 240 us
    against 130 us here at width 64, 4 % of an inflationary-flow step.

    Args:
        average: The average (from :func:`weight_average`).
        module: The live module it tracks.
    """
    if average.multi_avg_fn is None or average.use_buffers or average.n_averaged == 0:
        average.update_parameters(module)
        return
    with torch.no_grad():
        average.multi_avg_fn(
            list(average.module.parameters()),
            list(module.parameters()),
            average.n_averaged,
        )
    average.n_averaged += 1


class AveragedNetwork:
    """Mixin for a module with a live network ``net`` and its average ``average``
    (from :func:`weight_average`, or ``None``): the average is used in eval mode."""

    net: nn.Module
    average: AveragedModel | None

    @property
    def network(self) -> nn.Module:
        """The network as used now: the weight average in eval mode, if one is kept."""
        if self.average is not None and not self.training:
            return self.average.module
        return self.net

    def update_average(self) -> None:
        """Move the weight average towards the live weights (one optimizer step)."""
        if self.average is not None:
            update_weight_average(self.average, self.net)
