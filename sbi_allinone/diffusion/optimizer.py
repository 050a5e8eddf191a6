"""The optimizer of a diffusion model's training: a fused Adam over the weights that
learn (not the frozen weight average), with denormal numbers flushed to zero."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["LiveAdam", "flush_denormal", "live_adam"]


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal numbers to zero inside the block.

    Adam's second moments of rarely used parameters decay into denormal numbers, on
    which the CPU's sqrt and division are ~100x slower.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class LiveAdam(torch.optim.Adam):
    """The Adam :func:`live_adam` builds (its type says it was replaced already)."""


def live_adam(
    optimizer: torch.optim.Optimizer, module: nn.Module, device: str
) -> torch.optim.Optimizer:
    """sbi's Adam replaced by one over ``module``'s trainable parameters, fused into
    one kernel per step on the CPU; an optimizer it built already is returned as
    it is (a resumed run keeps its moments).

    sbi's loop builds a plain Adam over every parameter, the frozen weight average
    included (which Adam then visits every step for nothing). The new optimizer
    starts at the old one's learning rate, without its moments: call this before
    each epoch, and it replaces sbi's before the first step of a new run.

    Args:
        optimizer: The trainer's optimizer.
        module: The estimator; parameters with ``requires_grad=False`` are left out.
        device: Training device; ``"cpu"`` fuses.

    Returns:
        The optimizer to train with.
    """
    if isinstance(optimizer, LiveAdam):
        return optimizer
    learning_rate = optimizer.param_groups[0]["lr"]
    parameters = [p for p in module.parameters() if p.requires_grad]
    return LiveAdam(parameters, lr=learning_rate, fused=device == "cpu")
