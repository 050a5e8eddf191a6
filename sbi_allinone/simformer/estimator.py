r"""The Simformer's joint score estimator and its denoising score-matching loss.

All variables :math:`v = [\theta, x]` are z-scored with training statistics and
modelled jointly. For a training example with condition mask :math:`c` (``True`` =
conditioned, kept clean) and missing-entry mask :math:`o` (``True`` = missing, NaN in
the simulation), the loss is (Gloeckler et al. 2024, Eq. 4)

.. math::
    \ell = \lambda(t) \sum_{i:\, c_i = 0,\, o_i = 0}
        \big(s_\phi(v_t, t, c)_i + \epsilon_i / \sigma(t)\big)^2,
    \quad v_{t,i} = m(t) v_{0,i} + \sigma(t)\epsilon_i \text{ for latent } i,

with :math:`t \sim U[t_{min}, 1]`, :math:`\epsilon \sim \mathcal N(0, I)`. Missing
entries are neither targets nor conditions: no token attends to them, so the model
learns the distribution of the remaining variables, which is also how an observation
with missing entries is conditioned on at inference.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from sbi_allinone.simformer.masks import check_dag, directed_mask, undirected_mask
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.sde import SDE

__all__ = ["SimformerEstimator", "check_attention"]

MaskKind = Literal["dense", "undirected", "directed"]
SIGMA_FLOOR = 1e-3


def check_attention(attention: str, graph: Tensor | None) -> None:
    """Raise a ``ValueError`` unless ``attention`` is known and has its graph."""
    if attention not in ("dense", "undirected", "directed"):
        raise ValueError(
            "`attention` must be 'dense', 'undirected' or 'directed', "
            f"got {attention!r}."
        )
    if attention != "dense" and graph is None:
        raise ValueError(f"`attention={attention!r}` needs a dependency `graph`.")


class SimformerEstimator(nn.Module):
    """Score model of the joint of ``num_parameters`` parameters and ``num_data`` data.

    Args:
        net: The transformer (:class:`~.network.SimformerNet`) over all variables.
        sde: Forward SDE.
        num_parameters: Number of parameter variables (first in every tensor).
        mean: Per-variable mean for z-scoring, ``(num_nodes,)``.
        std: Per-variable std for z-scoring, ``(num_nodes,)``.
        graph: Dependency DAG ``(num_nodes, num_nodes)`` (row = child), or ``None``.
        attention: ``"dense"``, ``"undirected"`` (moralized graph) or ``"directed"``
            (faithful inversion per condition mask); graph masks need ``graph``.
    """

    def __init__(
        self,
        net: SimformerNet,
        sde: SDE,
        num_parameters: int,
        mean: Tensor,
        std: Tensor,
        graph: Tensor | None = None,
        attention: MaskKind = "dense",
    ) -> None:
        super().__init__()
        check_attention(attention, graph)
        self.net, self.sde = net, sde
        self.num_nodes = net.num_nodes
        self.num_parameters = num_parameters
        self.attention = attention
        self.register_buffer("mean", mean.reshape(self.num_nodes).float())
        self.register_buffer("std", std.reshape(self.num_nodes).float())
        graph = None if graph is None else check_dag(graph, self.num_nodes)
        self.register_buffer("graph", graph)
        undirected = None if graph is None else undirected_mask(graph)
        self.register_buffer("_undirected", undirected)

    def standardize(self, values: Tensor) -> Tensor:
        """Z-score ``(..., num_nodes)`` values with the training statistics."""
        return (values - self.mean) / self.std

    def unstandardize(self, values: Tensor) -> Tensor:
        """Undo :meth:`standardize`."""
        return values * self.std + self.mean

    def attention_mask(self, condition_mask: Tensor, missing: Tensor) -> Tensor | None:
        """Per-example attention masks ``(batch, n, n)``, or ``None`` for dense.

        Args:
            condition_mask: ``(batch, n)``, ``True`` = conditioned.
            missing: ``(batch, n)``, ``True`` = missing (nobody attends to it).
        """
        batch, n = condition_mask.shape
        if self.attention == "directed":
            mask = directed_mask(self.graph, condition_mask)
        elif self.attention == "undirected":
            mask = self._undirected.expand(batch, n, n)
        elif missing.any():
            mask = torch.ones(batch, n, n, dtype=torch.bool, device=missing.device)
        else:
            return None
        eye = torch.eye(n, dtype=torch.bool, device=condition_mask.device)
        return (mask & ~missing.unsqueeze(1)) | eye

    def score(
        self,
        values: Tensor,
        t: Tensor,
        condition_mask: Tensor,
        missing: Tensor | None = None,
    ) -> Tensor:
        """Score of the diffused joint in standardized coordinates.

        Args:
            values: ``(batch, n)`` standardized values: noisy latents, clean
                conditions (missing entries: any finite value).
            t: ``(batch, 1)`` diffusion times.
            condition_mask: ``(batch, n)``, ``True`` = conditioned.
            missing: ``(batch, n)``, ``True`` = missing; default none.

        Returns:
            ``(batch, n)`` score; entries of conditioned or missing variables are
            not meaningful.
        """
        if missing is None:
            missing = torch.zeros_like(condition_mask)
        mask = self.attention_mask(condition_mask, missing)
        # EDM-style input scaling: diffused standardized latents have variance
        # m^2 + sigma^2 (up to 226 for VE); the network sees them at unit scale.
        scale = torch.sqrt(self.sde.mean_factor(t) ** 2 + self.sde.std(t) ** 2)
        values = torch.where(condition_mask, values, values / scale)
        out = self.net(values, t, condition_mask, mask)
        return out / self.sde.std(t).clamp(min=SIGMA_FLOOR)

    def loss(
        self,
        values: Tensor,
        condition_mask: Tensor,
        times: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Denoising score-matching loss per example.

        Args:
            values: ``(batch, n)`` clean values in original units; NaN = missing.
            condition_mask: ``(batch, n)``, ``True`` = conditioned.
            times: ``(batch, 1)`` diffusion times; default uniform on
                ``[t_min, t_max]``. Fixed times and noise make validation losses
                comparable across epochs.
            noise: ``(batch, n)`` standard normal noise; default fresh draws.

        Returns:
            ``(batch,)`` losses.
        """
        missing = torch.isnan(values)
        condition_mask = condition_mask & ~missing
        clean = torch.where(missing, 0.0, self.standardize(values))
        if times is None:
            times = torch.rand(values.shape[0], 1, device=values.device)
            times = self.sde.t_min + (self.sde.t_max - self.sde.t_min) * times
        if noise is None:
            noise = torch.randn_like(clean)
        std = self.sde.std(times)
        noisy = torch.where(
            condition_mask, clean, self.sde.perturb(clean, times, noise)
        )
        score = self.score(noisy, times, condition_mask, missing)
        target = ~(condition_mask | missing)
        error = torch.where(target, score + noise / std, 0.0)
        return self.sde.loss_weight(times).squeeze(-1) * error.square().sum(dim=-1)
