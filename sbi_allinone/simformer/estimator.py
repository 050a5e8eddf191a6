r"""The Simformer's joint denoiser and its denoising loss, on the EDM recipe.

All variables :math:`v = [\theta, x]` are z-scored with training statistics
(:math:`\sigma_d = 1`) and modelled jointly. For a training example with condition
mask :math:`c` (``True`` = conditioned, kept clean) and missing-entry mask :math:`o`
(``True`` = missing, NaN in the simulation), latent entries are noised,
:math:`v_\sigma = v_0 + \sigma\epsilon`, and the transformer's output is the ``F`` of
EDM's preconditioned denoiser (:mod:`sbi_allinone.diffusion.preconditioning`):

.. math::
    D(v_\sigma; \sigma, c) = c_{skip}(\sigma)\, v_\sigma
        + c_{out}(\sigma)\, F\big(c_{in}(\sigma)\, v_\sigma \text{ (latent)},
        v_0 \text{ (conditioned)}, c_{noise}(\sigma), c\big),

trained on :math:`w(\sigma) \sum_{i:\,c_i = 0,\,o_i = 0} \big(F_i - (v_{0,i} -
c_{skip} v_{\sigma,i}) / c_{out}\big)^2` with :math:`\sigma` from the noise levels
(:mod:`sbi_allinone.diffusion.noise`: EDM's log-normal, or the paper's VE / VP).
The score is :math:`(D - v_\sigma)/\sigma^2` (Tweedie). Missing entries are neither
targets nor conditions: no token attends to them, so the model learns the
distribution of the remaining variables, which is also how an observation with
missing entries is conditioned on at inference. The same mechanism pads
simulations with different numbers of tokens (:class:`~.tokens.Tokens`: tokens of
one variable kind share an identifier and a standardization, and differ by their
metadata).

With ``ema_decay``, a weight average of the transformer is kept and used in eval
mode (validation, sampling, densities); training steps use the live weights.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from sbi_allinone.diffusion.averaging import AveragedNetwork, weight_average
from sbi_allinone.diffusion.noise import NoiseLevels
from sbi_allinone.diffusion.preconditioning import edm_preconditioning
from sbi_allinone.simformer.masks import check_dag, directed_mask, undirected_mask
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.tokens import Tokens

__all__ = ["SimformerEstimator", "check_attention"]

MaskKind = Literal["dense", "undirected", "directed"]


def check_attention(attention: str, graph: Tensor | None) -> None:
    """Raise a ``ValueError`` unless ``attention`` is known and has its graph."""
    if attention not in ("dense", "undirected", "directed"):
        raise ValueError(
            "`attention` must be 'dense', 'undirected' or 'directed', "
            f"got {attention!r}."
        )
    if attention != "dense" and graph is None:
        raise ValueError(f"`attention={attention!r}` needs a dependency `graph`.")


class SimformerEstimator(AveragedNetwork, nn.Module):
    """Denoiser of the joint of ``num_parameters`` parameters and the data.

    Args:
        net: The transformer (:class:`~.network.SimformerNet`) over all variables.
        noise: Training noise levels (their range also bounds the samplers).
        num_parameters: Number of parameter variables (first in every tensor).
        mean: Per-variable (per-kind) mean for z-scoring, ``(num_nodes,)``.
        std: Per-variable (per-kind) std for z-scoring, ``(num_nodes,)``.
        graph: Dependency DAG ``(num_nodes, num_nodes)`` (row = child), or ``None``.
        attention: ``"dense"``, ``"undirected"`` (moralized graph) or ``"directed"``
            (faithful inversion per condition mask); graph masks need ``graph``.
        ema_decay: Decay per optimizer step of the weight average used in eval
            mode, in ``[0, 1)``; ``None``: the live weights everywhere.
    """

    def __init__(
        self,
        net: SimformerNet,
        noise: NoiseLevels,
        num_parameters: int,
        mean: Tensor,
        std: Tensor,
        graph: Tensor | None = None,
        attention: MaskKind = "dense",
        ema_decay: float | None = 0.999,
    ) -> None:
        super().__init__()
        check_attention(attention, graph)
        self.net, self.noise = net, noise
        self.average = None if ema_decay is None else weight_average(net, ema_decay)
        self.num_nodes = net.num_nodes
        self.num_parameters = num_parameters
        self.attention = attention
        self.register_buffer("mean", mean.reshape(self.num_nodes).float())
        self.register_buffer("std", std.reshape(self.num_nodes).float())
        graph = None if graph is None else check_dag(graph, self.num_nodes)
        self.register_buffer("graph", graph)
        undirected = None if graph is None else undirected_mask(graph)
        self.register_buffer("_undirected", undirected)

    def statistics(self, tokens: Tokens | None = None) -> tuple[Tensor, Tensor]:
        """Training mean and std of each token's variable, ``(..., n)`` each
        (``(num_nodes,)`` without ``tokens``)."""
        if tokens is None:
            return self.mean, self.std
        return self.mean[tokens.node_ids], self.std[tokens.node_ids]

    def standardize(self, values: Tensor, tokens: Tokens | None = None) -> Tensor:
        """Z-score ``(..., n)`` values with the training statistics of each token's
        variable (``n = num_nodes`` without ``tokens``)."""
        mean, std = self.statistics(tokens)
        return (values - mean) / std

    def unstandardize(self, values: Tensor, tokens: Tokens | None = None) -> Tensor:
        """Undo :meth:`standardize`."""
        mean, std = self.statistics(tokens)
        return values * std + mean

    def attention_mask(
        self, condition_mask: Tensor, missing: Tensor, tokens: Tokens | None = None
    ) -> Tensor | None:
        """Attention masks, ``(n, n)`` when shared by the batch, else ``(batch, n, n)``;
        ``None`` for dense attention without missing entries.

        Args:
            condition_mask: ``(batch, n)``, ``True`` = conditioned.
            missing: ``(batch, n)``, ``True`` = missing (nobody attends to it).
            tokens: Token kinds; graph masks need one token per variable.
        """
        if tokens is not None and self.attention != "dense":
            raise ValueError(
                f"`attention={self.attention!r}` needs one token per variable of "
                "the graph; tokens with kinds and metadata need 'dense'."
            )
        n = condition_mask.shape[1]
        any_missing = bool(missing.any())
        if self.attention == "directed":
            mask = directed_mask(self.graph, condition_mask)
        elif self.attention == "undirected":
            mask = self._undirected
        elif any_missing:
            mask = torch.ones(n, n, dtype=torch.bool, device=missing.device)
        else:
            return None
        if not any_missing:
            return mask
        eye = torch.eye(n, dtype=torch.bool, device=condition_mask.device)
        return (mask & ~missing.unsqueeze(1)) | eye

    def _output(
        self,
        values: Tensor,
        sigma: Tensor,
        condition_mask: Tensor,
        missing: Tensor,
        tokens: Tokens | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``F``, ``c_skip`` and ``c_out`` for standardized ``values``."""
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma**2)
        inputs = torch.where(condition_mask, values, c_in * values)
        inputs = torch.where(missing, 0.0, inputs)
        mask = self.attention_mask(condition_mask, missing, tokens)
        out = self.network(inputs, c_noise, condition_mask, mask, tokens)
        return out, c_skip, c_out

    def denoise(
        self,
        values: Tensor,
        sigma: Tensor,
        condition_mask: Tensor,
        missing: Tensor | None = None,
        tokens: Tokens | None = None,
    ) -> Tensor:
        """Denoised values :math:`D` in standardized coordinates.

        Args:
            values: ``(batch, n)`` standardized values: noisy latents, clean
                conditions (missing entries: any finite value).
            sigma: ``(batch, 1)`` noise levels of the latents.
            condition_mask: ``(batch, n)``, ``True`` = conditioned.
            missing: ``(batch, n)``, ``True`` = missing (or padding); default none.
            tokens: Kind and metadata of each token; default one token per
                variable.

        Returns:
            ``(batch, n)``: the denoised latents; conditioned and missing entries
            as given.
        """
        if missing is None:
            missing = torch.zeros_like(condition_mask)
        out, c_skip, c_out = self._output(
            values, sigma, condition_mask, missing, tokens
        )
        latent = ~(condition_mask | missing)
        return torch.where(latent, c_skip * values + c_out * out, values)

    def score(
        self,
        values: Tensor,
        sigma: Tensor,
        condition_mask: Tensor,
        **denoise_kwargs: Any,
    ) -> Tensor:
        """Score :math:`(D - v)/\\sigma^2` of the noised joint (arguments as
        :meth:`denoise`); zero on conditioned and missing entries."""
        denoised = self.denoise(values, sigma, condition_mask, **denoise_kwargs)
        return (denoised - values) / sigma**2

    def loss(
        self,
        values: Tensor,
        condition_mask: Tensor,
        *,
        fixed: tuple[Tensor, Tensor] | None = None,
        tokens: Tokens | None = None,
    ) -> Tensor:
        """Preconditioned denoising loss per example.

        Args:
            values: ``(batch, n)`` clean values in original units; NaN = missing.
            condition_mask: ``(batch, n)``, ``True`` = conditioned.
            fixed: ``(sigma, noise)``: ``(batch, 1)`` noise levels and ``(batch, n)``
                standard normal noise; default fresh draws. Fixed draws make
                validation losses comparable across epochs.
            tokens: Kind and metadata of each token (padding: NaN values);
                default one token per variable.

        Returns:
            ``(batch,)`` losses.
        """
        missing = torch.isnan(values)
        condition_mask = condition_mask & ~missing
        clean = torch.where(missing, 0.0, self.standardize(values, tokens))
        if fixed is None:
            sigma = self.noise.sample((values.shape[0], 1), device=values.device)
            fixed = sigma.to(values), torch.randn_like(clean)
        sigma, noise = fixed
        noisy = torch.where(condition_mask, clean, clean + sigma * noise)
        out, c_skip, c_out = self._output(noisy, sigma, condition_mask, missing, tokens)
        target = (clean - c_skip * noisy) / c_out
        latent = ~(condition_mask | missing)
        error = torch.where(latent, out - target, 0.0)
        return self.noise.weight(sigma).squeeze(-1) * error.square().sum(dim=-1)
