"""An exponential moving average of a module's weights (used in eval mode)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage(nn.Module):
    """A frozen copy of a module whose weights track the live module's average.

    After ``n`` updates the decay is ``min(decay, (1 + n) / (10 + n))``, so the
    average forgets the initialization within the first steps.

    Args:
        module: The live module; copied at construction.
        decay: Decay per update, in ``[0, 1)``.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1) or None, got {decay}.")
        self.decay = decay
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        """Move the average towards ``live``'s current weights (one step)."""
        steps = int(self.steps)
        decay = min(self.decay, (1 + steps) / (10 + steps))
        averaged = list(self.module.parameters())
        if averaged:
            current = [p.detach() for p in live.parameters()]
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        self.steps += 1
