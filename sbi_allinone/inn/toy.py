"""The INN paper's multi-modal toy: several parameter modes, one measurement.

Parameters ``theta`` in 2-D come from a mixture of eight Gaussians on a circle with
unequal weights; the measurement is the one-hot colour of the mode ``theta`` belongs
to, and modes ``k``, ``k + 3``, ``k + 6`` share colour ``k mod 3``. The posterior
given a colour is the mixture restricted to that colour's modes, with weights
proportional to their prior weights: a posterior estimator must find every mode
*and* weigh them correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    Normal,
    constraints,
)

__all__ = ["MultimodalToy"]


class _GaussianMixture(MixtureSameFamily):
    """A mixture whose support sbi's parameter transforms understand (all of R^d)."""

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, 1)


@dataclass(frozen=True)
class MultimodalToy:
    """The toy problem.

    Args:
        num_modes: Number of mixture components on the circle.
        num_colours: Number of distinct measurements; mode ``k`` has colour
            ``k mod num_colours``.
        radius: Radius of the circle of mode centres.
        scale: Standard deviation of each mode.
    """

    num_modes: int = 8
    num_colours: int = 3
    radius: float = 3.0
    scale: float = 0.25

    @property
    def centres(self) -> Tensor:
        """Mode centres ``(num_modes, 2)``."""
        angles = 2 * math.pi * torch.arange(self.num_modes) / self.num_modes
        return self.radius * torch.stack([angles.cos(), angles.sin()], dim=-1)

    @property
    def weights(self) -> Tensor:
        """Prior mode weights ``(num_modes,)``, proportional to ``1, 2, ..., K``."""
        weights = torch.arange(1, self.num_modes + 1, dtype=torch.float32)
        return weights / weights.sum()

    @property
    def prior(self) -> MixtureSameFamily:
        """The prior over ``theta`` (2-D), a torch distribution sbi accepts."""
        components = Independent(
            Normal(self.centres, self.scale * torch.ones(self.num_modes, 2)), 1
        )
        return _GaussianMixture(Categorical(self.weights), components)

    def mode_of(self, theta: Tensor) -> Tensor:
        """Index ``(batch,)`` of the mode centre nearest each ``theta`` (batch, 2)."""
        return torch.cdist(theta, self.centres).argmin(-1)

    def simulator(self, theta: Tensor) -> Tensor:
        """One-hot colour ``(batch, num_colours)`` of each ``theta`` ``(batch, 2)``."""
        colour = self.mode_of(theta) % self.num_colours
        return torch.nn.functional.one_hot(colour, self.num_colours).float()

    def observation(self, colour: int) -> Tensor:
        """The measurement ``(1, num_colours)`` of colour ``colour``."""
        return torch.nn.functional.one_hot(
            torch.tensor([colour]), self.num_colours
        ).float()

    def true_mode_weights(self, colour: int) -> Tensor:
        """Posterior mode weights ``(num_modes,)`` given a colour (0 off-colour)."""
        on_colour = torch.arange(self.num_modes) % self.num_colours == colour
        weights = self.weights * on_colour
        return weights / weights.sum()

    def mode_weights(self, samples: Tensor) -> Tensor:
        """Fraction ``(num_modes,)`` of ``samples`` ``(n, 2)`` nearest each mode."""
        counts = torch.bincount(self.mode_of(samples), minlength=self.num_modes)
        return counts.float() / len(samples)
