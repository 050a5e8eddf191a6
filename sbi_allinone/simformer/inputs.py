"""Checks of what users pass to the Simformer's trainer, and the arrangement of
simulations with :class:`~.tokens.Variables` into tokens."""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.simformer.network import SMALL_ATTENTION, SimformerNet
from sbi_allinone.simformer.shapes import as_tensor
from sbi_allinone.simformer.tokens import Tokens, Variables, arrange
from sbi_allinone.training_checks import check_prior_shape, check_simulation_shapes

__all__ = [
    "SimulationTokens",
    "device_memory",
    "training_memory",
    "warn_if_too_large",
    "arranged_simulations",
    "check_schedule",
    "check_variables",
    "checked_draws",
    "checked_simulations",
    "kind_statistics",
    "warn_unused_graph",
]


def checked_simulations(
    theta: Tensor, x: Tensor, prior: Distribution | None = None
) -> tuple[Tensor, Tensor, tuple[int, ...] | None]:
    """``theta`` as ``(N, num_parameters)``, ``x`` flattened to ``(N, num_data)``
    with non-finite entries as NaN (missing), after checking their shapes (as the
    other trainers do, :mod:`sbi_allinone.training_checks`) and the prior's.

    Args:
        theta: ``(N, num_parameters)`` real numbers (cast to float32).
        x: ``(N, num_data)`` or ``(N, *x_shape)`` real numbers (or booleans).
        prior: The trainer's prior, of event shape ``(num_parameters,)``.

    Returns:
        ``theta``, the flat ``x`` and ``x_shape`` if it has more than one
        dimension (else ``None``).
    """
    theta = as_tensor(theta, "`theta`", torch.float32)
    x = as_tensor(x, "`x`", torch.float32, bool_ok=True)
    check_simulation_shapes(theta, x)
    check_prior_shape(prior, theta.shape[1])
    x_shape = tuple(x.shape[1:]) if x.ndim > 2 else None
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] != theta.shape[0]:
        raise ValueError(
            f"`theta` has {theta.shape[0]} rows but `x` has {x.shape[0]} (of "
            f"{x.shape[1]} values): pass one simulation per parameter set."
        )
    if not torch.isfinite(theta).all():
        raise ValueError("`theta` contains NaN or inf values.")
    missing = ~torch.isfinite(x)
    if missing.all(dim=0).any():
        columns = torch.nonzero(missing.all(dim=0)).flatten().tolist()
        raise ValueError(
            f"Columns {columns[:10]} of `x` (flattened) are NaN or inf in every "
            "simulation: nothing can be learned about them. Drop them."
        )
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} entries of `x` ({int(missing.any(1).sum())} "
            "simulations) are NaN or inf; they are treated as missing: never "
            "targets nor conditions.",
            UserWarning,
            stacklevel=3,
        )
    return theta, torch.where(missing, torch.nan, x), x_shape


def warn_unused_graph(attention: str, graph: Tensor | None) -> None:
    """Warn that ``graph`` has no effect with ``attention='dense'``."""
    if graph is not None and attention == "dense":
        warnings.warn(
            "`graph` is ignored with `attention='dense'`: pass "
            "`attention='undirected'` or `attention='directed'` to use it.",
            UserWarning,
            stacklevel=3,
        )


def checked_draws(validation_draws: int) -> int:
    """``validation_draws``, after checking that it is positive."""
    if validation_draws < 1:
        raise ValueError(
            f"`validation_draws` must be at least 1, got {validation_draws}."
        )
    return validation_draws


def check_schedule(num_steps: int, steps_per_epoch: int, batch_size: int) -> None:
    """Raise a ``ValueError`` for a training schedule sbi's loop cannot run."""
    if num_steps < 2 or steps_per_epoch < 1 or batch_size < 1:
        raise ValueError(
            "`num_steps` must be at least 2 (sbi's loop runs two epochs or more), "
            "`steps_per_epoch` and `training_batch_size` positive; got "
            f"{num_steps}, {steps_per_epoch} and {batch_size}."
        )


def check_variables(variables: Variables | None, attention: str) -> Variables | None:
    """``variables``, after checking that the attention can use them."""
    if variables is not None and attention != "dense":
        raise ValueError(
            "`variables` need `attention='dense'` (graph masks are over one token "
            f"per variable), got {attention!r}."
        )
    return variables


def arranged_simulations(
    spec: Variables,
    theta: Tensor | dict[str, Tensor],
    x: Tensor | dict[str, Tensor],
    metadata: dict[str, dict[str, Tensor]] | None,
    channels: tuple[str, ...],
) -> tuple[Tensor, Tensor, Tokens]:
    """Simulations of variables with series, as tokens.

    Args:
        spec: The variables.
        theta, x, metadata, channels: As :func:`~.tokens.arrange`; series are
            NaN-padded, their metadata NaN exactly where padded.

    Returns:
        Parameter tokens ``(N, n_theta)``, data tokens ``(N, n_x)`` (NaN = padding
        or missing) and their :class:`~.tokens.Tokens` (metadata ``(N, n, c)``).
    """
    layout = arrange(spec, theta, x, metadata, channels)
    values, tokens = layout.values, layout.tokens
    if tokens.metadata is not None:
        series = _series_columns(spec, layout.columns, values.shape[1])
        timeless = (
            series & torch.isfinite(values) & ~torch.isfinite(tokens.metadata).any(-1)
        )
        if timeless.any():
            raise ValueError(
                f"{int(timeless.sum())} series values have no `metadata` (NaN in "
                "every channel): give each observed point its metadata."
            )
    fixed_theta = ~_series_columns(spec, layout.columns, values.shape[1])
    fixed_theta &= layout.is_theta
    if not torch.isfinite(values[:, fixed_theta]).all():
        raise ValueError("`theta` contains NaN or inf values outside series padding.")
    return values[:, layout.is_theta], values[:, ~layout.is_theta], tokens


def _series_columns(spec: Variables, columns: dict[str, slice], n: int) -> Tensor:
    """``(n,)``, ``True`` for the tokens of series."""
    series = torch.zeros(n, dtype=torch.bool)
    for name, size in (*spec.theta.items(), *spec.x.items()):
        if size == "series":
            series[columns[name]] = True
    return series


def kind_statistics(
    values: Tensor, node_ids: Tensor, num_kinds: int
) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of each variable kind over all its tokens.

    Args:
        values: ``(N, n)``; NaN entries are ignored.
        node_ids: ``(n,)`` kind of each token.
        num_kinds: Number of kinds.

    Returns:
        Mean and standard deviation, each ``(num_kinds,)`` (0 and 1 for a kind with
        no finite value; a zero spread becomes 1).
    """
    mean, std = torch.zeros(num_kinds), torch.ones(num_kinds)
    for kind in range(num_kinds):
        entries = values[:, node_ids == kind].flatten()
        entries = entries[torch.isfinite(entries)]
        if entries.numel():
            mean[kind] = entries.mean()
            spread = entries.std(correction=0) if entries.numel() > 1 else 0.0
            std[kind] = spread if spread > 1e-8 else 1.0
    return mean, std


class SimulationTokens:
    """Mixin for :class:`~sbi_allinone.simformer.trainer.Simformer`: simulations of
    :class:`~.tokens.Variables` as tokens, and the statistics that standardize
    them.

    Expects ``_variables``, ``_channels`` and ``_tokens`` (set in ``__init__``),
    and ``_train_tokens`` (set when the data are split).
    """

    def _arranged(
        self,
        theta: Tensor | dict[str, Tensor],
        x: Tensor | dict[str, Tensor],
        metadata: dict[str, dict[str, Tensor]] | None,
    ) -> tuple[Tensor, Tensor]:
        """Tokens of simulations with ``variables``; their kinds and metadata are
        kept for training (appended to earlier rounds')."""
        channels = self._channels
        if channels is None:
            channels = tuple(sorted(metadata or {}))
        theta, x, tokens = arranged_simulations(
            self._variables, theta, x, metadata, channels
        )
        if self._tokens is not None:
            if not torch.equal(tokens.node_ids, self._tokens.node_ids):
                raise ValueError(
                    "New simulations have other series lengths than earlier ones: "
                    "pad every series to the same number of points (NaN)."
                )
            if tokens.metadata is not None:
                stacked = torch.cat([self._tokens.metadata, tokens.metadata])
                tokens = Tokens(tokens.node_ids, stacked)
        self._tokens, self._channels = tokens, channels
        return theta, x

    def _statistics(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std ``(num_nodes,)`` per variable (per kind with
        ``variables``) of the training values, ignoring NaN."""
        if self._variables is not None:
            num_kinds = self._variables.num_kinds
            node_ids = self._tokens.node_ids
            return kind_statistics(values.cpu(), node_ids, num_kinds)
        mean = torch.nanmean(values, dim=0)
        std = torch.sqrt(torch.nanmean((values - mean) ** 2, dim=0))
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        return torch.nan_to_num(mean), std

    def _meta_statistics(self) -> tuple[Tensor, Tensor] | None:
        """Mean and std per metadata channel of the training tokens, or ``None``."""
        if self._train_tokens is None or self._train_tokens.metadata is None:
            return None
        metadata = self._train_tokens.metadata.cpu().flatten(0, 1)
        mean, std = kind_statistics(
            metadata, torch.arange(metadata.shape[1]), metadata.shape[1]
        )
        return mean, std


def training_memory(
    num_tokens: int, batch_size: int, net_kwargs: dict[str, Any]
) -> int:
    """Bytes of activations one training step keeps for the backward pass
    (float32), estimated from the network's shapes.

    Per block: the token states, norms, projections and the MLP's hidden layer,
    ``batch * n * (6 W + 4 H K + 2 w W)`` floats; attention scores and weights,
    ``2 * batch * H * n**2``, only up to
    :data:`~.network.SMALL_ATTENTION` tokens (beyond, the fused kernel keeps no
    ``n x n`` matrices; its time still grows with ``n**2``). Measured peak
    increase of one step with the default network (resident memory, CPU),
    against this estimate: 20 tokens x 1 000 examples 367 MB (348), 100 x 200
    372 MB (348), 400 x 200 1 470 MB (1 392), 1 000 x 20 357 MB (348).

    Args:
        num_tokens: Tokens per example ``n``.
        batch_size: Examples per step.
        net_kwargs: Options of :class:`~.network.SimformerNet` (defaults for the
            rest).

    Returns:
        The estimated bytes.
    """
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(SimformerNet).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    options = {**defaults, **net_kwargs}
    width = options["id_dim"] + options["value_dim"] + options["condition_dim"]
    heads, key = options["num_heads"], options["key_size"]
    rows = batch_size * num_tokens
    per_block = rows * (6 * width + 4 * heads * key + 2 * options["widening"] * width)
    if num_tokens <= SMALL_ATTENTION:
        per_block += 2 * batch_size * heads * num_tokens**2
    return 4 * options["num_layers"] * per_block


def device_memory(device: str | torch.device) -> int | None:
    """Total memory of ``device`` in bytes (physical memory for the CPU), or
    ``None`` where unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    return None


def warn_if_too_large(
    num_tokens: int,
    batch_size: int,
    net_kwargs: dict[str, Any],
    device: str | torch.device,
    fraction: float = 0.5,
) -> None:
    """Warn when a training step's activations would take more than ``fraction``
    of the device's memory (arguments as :func:`training_memory`)."""
    needed, available = training_memory(num_tokens, batch_size, net_kwargs), None
    available = device_memory(device)
    if available is None or needed <= fraction * available:
        return
    warnings.warn(
        f"Training on {num_tokens} tokens per example with batches of {batch_size} "
        f"needs about {needed / 2**30:.1f} GiB of activations per step, "
        f"{needed / available:.0%} of the {available / 2**30:.1f} GiB of {device}; "
        "the time per step grows with the square of the token count. Pass a smaller "
        "`training_batch_size`, or fewer tokens (e.g. summarize x before the "
        "Simformer).",
        UserWarning,
        stacklevel=4,
    )
