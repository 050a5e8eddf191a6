"""``inn_nn`` (a builder like sbi's ``posterior_nn``) and the ``INN`` trainer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from sbi_allinone.inn.bidirectional import BidirectionalINN
from sbi_allinone.inn.blocks import CORE_DEFAULTS, build_core
from sbi_allinone.inn.estimator import INNDensityEstimator
from sbi_allinone.inn.mmd import DEFAULT_WIDTHS, MMDSettings
from sbi_allinone.npe_plugin import NPE_KEYWORDS, BuilderNPE, split_keywords
from sbi_allinone.standardized import Standardization, fit_standardization

__all__ = ["INN", "MAX_MMD_Y_DIM", "MODES", "inn_nn"]

Mode = Literal["ml", "mmd", "hybrid"]
#: Training modes: maximum likelihood, the paper's bidirectional (MMD) training, both.
MODES: tuple[str, ...] = ("ml", "mmd", "hybrid")

#: Largest data (summary) size the bidirectional ``mmd`` mode accepts: it matches
#: ``[z, y]`` by MMD, whose sample efficiency collapses with dimension.
MAX_MMD_Y_DIM = 16


def inn_nn(
    mode: Mode = "ml",
    num_blocks: int = CORE_DEFAULTS.num_blocks,
    hidden_features: int = CORE_DEFAULTS.hidden_features,
    num_layers: int = CORE_DEFAULTS.num_layers,
    clamp: float = CORE_DEFAULTS.clamp,
    mixing: str = CORE_DEFAULTS.mixing,
    embedding_net: nn.Module | None = None,
    z_score_theta: str | None = "independent",
    z_score_x: str | None = "independent",
    latent_dim: int | None = None,
    padded_dim: int | None = None,
    weight_y: float = 50.0,
    weight_z: float | None = None,
    weight_x: float = 500.0,
    kernel_widths: Sequence[float] = DEFAULT_WIDTHS,
    ramp_steps: int = 2000,
    y_noise: float = 0.2,
    pad_noise: float = 0.1,
    weight_reconstruction: float = 1.0,
    match_padding: bool = True,
    joint_inverse: bool = True,
    seed: int | None = None,
) -> Callable[[Tensor, Tensor], INNDensityEstimator | BidirectionalINN]:
    """Builder of an INN posterior estimator, for ``NPE(density_estimator=...)``.

    Args:
        mode: ``"ml"`` (maximum likelihood; default) or ``"hybrid"`` (plus MMD terms
            that keep its optimum): an :class:`INNDensityEstimator`. ``"mmd"`` (the
            paper's bidirectional training): a :class:`BidirectionalINN`, a sampler.
        num_blocks: Blocks of the invertible core (ActNorm, coupling, mixing); see
            :func:`~sbi_allinone.inn.blocks.build_core` for this and the next four.
        hidden_features: Width of the coupling subnets.
        num_layers: Hidden layers of the coupling subnets.
        clamp: Soft clamp of the couplings' log-scales.
        mixing: Mixing between blocks (``"rotation"``: a fixed random orthogonal
            matrix; or a permutation).
        embedding_net: As in sbi's ``posterior_nn``; see
            :func:`~sbi_allinone.standardized.fit_standardization`.
        z_score_theta: As in sbi's ``posterior_nn``.
        z_score_x: As in sbi's ``posterior_nn``.
        latent_dim: ``dim_z`` of the ``mmd`` core (default: ``dim_theta``).
        padded_dim: ``dim_total`` of the ``mmd`` core (default:
            ``2 * (dim_y + dim_z)``).
        weight_y: Weight of the forward-prediction loss ``L_y``. This and the
            next nine are the MMD terms of
            :class:`~sbi_allinone.inn.mmd.MMDSettings`.
        weight_z: Weight of the latent MMD ``L_z``; defaults to 500 (``mmd``), 50
            (``hybrid``).
        weight_x: Weight of the inverse-sample MMD ``L_x``.
        kernel_widths: Widths of the inverse multiquadratic kernels (the
            settings' ``widths``).
        ramp_steps: Optimizer steps over which ``L_x`` is ramped in.
        y_noise: Noise added to ``y`` in training.
        pad_noise: Noise added to the padding in training.
        weight_reconstruction: Weight of the paper's reconstruction loss.
        match_padding: Whether ``L_x`` also matches the padding of inverse samples.
        joint_inverse: Whether ``L_x`` conditions on ``y`` (``False``: the paper's
            marginal term).
        seed: Seed of the network initialization and fixed permutations.

    Returns:
        ``build(theta, x)``, called by sbi with the training data.
    """
    _check_mode(mode, latent_dim=latent_dim, padded_dim=padded_dim)
    return partial(
        _build_inn, mode=mode, seed=seed, latent_dim=latent_dim, padded_dim=padded_dim,
        embedding_net=embedding_net, z_score_theta=z_score_theta, z_score_x=z_score_x,
        core=dict(
            num_blocks=num_blocks, hidden_features=hidden_features,
            num_layers=num_layers, clamp=clamp, mixing=mixing,
        ),
        mmd=dict(
            weight_y=weight_y, weight_z=weight_z, weight_x=weight_x,
            widths=kernel_widths, ramp_steps=ramp_steps, y_noise=y_noise,
            pad_noise=pad_noise, weight_reconstruction=weight_reconstruction,
            match_padding=match_padding, joint_inverse=joint_inverse,
        ),
    )  # fmt: skip


def _check_mode(mode: str, **mmd_sizes: int | None) -> None:
    """Raise for an unknown mode, or sizes of the ``mmd`` core in another mode."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    for name, value in mmd_sizes.items():
        if value is not None and mode != "mmd":
            raise ValueError(f"`{name}` applies to mode='mmd' only.")


def _build_inn(
    theta: Tensor,
    x: Tensor,
    *,
    mode: Mode,
    seed: int | None,
    latent_dim: int | None,
    padded_dim: int | None,
    embedding_net: nn.Module | None,
    z_score_theta: str | None,
    z_score_x: str | None,
    core: dict[str, Any],
    mmd: dict[str, Any],
) -> INNDensityEstimator | BidirectionalINN:
    """``build(theta, x)`` of :func:`inn_nn`, whose other arguments these are
    (``core``: those of :func:`build_core`; ``mmd``: those of :class:`MMDSettings`)."""
    if seed is not None:
        torch.manual_seed(seed)
    standardization = fit_standardization(
        theta, x, z_score_theta=z_score_theta, z_score_x=z_score_x,
        embedding_net=embedding_net,
    )  # fmt: skip
    if mmd["weight_z"] is None:
        mmd = {**mmd, "weight_z": 500.0 if mode == "mmd" else 50.0}
    settings = MMDSettings(**mmd)
    core = {**core, "seed": 0 if seed is None else seed}
    if mode == "mmd":
        estimator = _bidirectional(
            standardization, settings, core, latent_dim, padded_dim
        )
    else:
        estimator = _conditional(standardization, settings, core, mode)
    _initialize_actnorm(estimator, theta, x)
    return estimator


def _conditional(
    standardization: Standardization,
    settings: MMDSettings,
    core: dict[str, Any],
    mode: Literal["ml", "hybrid"],
) -> INNDensityEstimator:
    """The conditional INN: a core over the parameters, conditioned on ``y``."""
    dim_theta, dim_y = standardization.dim_theta, standardization.dim_y
    if dim_theta == 1 and dim_y == 0:
        raise ValueError("The INN needs a non-empty embedding of `x`.")
    net = build_core(dim=dim_theta, context_dim=dim_y, **core)
    return INNDensityEstimator(net, standardization, mode, settings)


def _bidirectional(
    standardization: Standardization,
    settings: MMDSettings,
    core: dict[str, Any],
    latent_dim: int | None,
    padded_dim: int | None,
) -> BidirectionalINN:
    """The unconditional ``[theta, pad] -> [y, z, pad]`` core and its model."""
    dim_theta, dim_y = standardization.dim_theta, standardization.dim_y
    if dim_y > MAX_MMD_Y_DIM:
        raise ValueError(
            f"mode='mmd' predicts the data from the parameters and matches [z, y] by "
            f"MMD, so `x` (after the embedding net) must be low-dimensional: at most "
            f"{MAX_MMD_Y_DIM} entries, got {dim_y}. Pass a fixed summary as "
            "`embedding_net`, or use mode='ml'."
        )
    for parameter in standardization.embedding_net.parameters():
        parameter.requires_grad_(False)
    dim_z = dim_theta if latent_dim is None else latent_dim
    if dim_z < 1:
        raise ValueError(f"`latent_dim` must be at least 1, got {dim_z}.")
    minimum = max(dim_theta, dim_y + dim_z)
    if padded_dim is None:
        padded_dim = max(minimum, 2 * (dim_y + dim_z))
    if padded_dim < minimum:
        raise ValueError(
            f"`padded_dim` must be at least max(dim_theta, dim_y + latent_dim) = "
            f"{minimum}, got {padded_dim}."
        )
    net = build_core(dim=padded_dim, context_dim=0, **core)
    return BidirectionalINN(net, standardization, dim_z, padded_dim, settings)


@torch.no_grad()
def _initialize_actnorm(
    estimator: INNDensityEstimator | BidirectionalINN, theta: Tensor, x: Tensor
) -> None:
    """Run the training data (up to 2 000 rows) through the net once: Glow's
    data-dependent ActNorm initialization sees a representative batch, not sbi's
    two-sample shape check."""
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(-1)
    theta, x = theta[finite][:2000], x[finite][:2000]
    theta_std = estimator._standardize(theta)
    if isinstance(estimator, BidirectionalINN):
        estimator.net(estimator._pad(theta_std, estimator.mmd.pad_noise))
    else:
        estimator.net(theta_std, estimator._embed(x))


class INN(BuilderNPE):
    """Neural posterior estimation with an invertible network (see :func:`inn_nn`).

    ``INN(prior, mode="ml")`` is ``NPE(prior, density_estimator=inn_nn(mode="ml"))``:
    sbi's training loop, ``DirectPosterior`` and diagnostics, unchanged.

    Args:
        prior: Prior over the parameters.
        mode: ``"ml"``, ``"mmd"`` or ``"hybrid"``; see :func:`inn_nn`.
        **kwargs: sbi's ``NPE`` keywords
            (:data:`~sbi_allinone.npe_plugin.NPE_KEYWORDS`; pass a ``tracker`` to
            avoid TensorBoard's ``sbi-logs/``), as in sbi's ``NPE``, and further
            arguments of :func:`inn_nn` (``num_blocks``, ``embedding_net``, ...).
    """

    def __init__(
        self, prior: Distribution | None = None, mode: Mode = "ml", **kwargs: Any
    ) -> None:
        self.mode = mode
        npe_kwargs, inn_kwargs = split_keywords(kwargs, NPE_KEYWORDS)
        super().__init__(prior, inn_nn(mode=mode, **inn_kwargs), **npe_kwargs)

    def train(self, **kwargs: Any) -> INNDensityEstimator | BidirectionalINN:
        """Train as ``NPE.train`` (same arguments).

        In ``mmd`` mode the defaults change to ``training_batch_size=500`` and
        ``stop_after_epochs=50``: MMD needs larger batches than a likelihood, and its
        validation loss is noisy, so sbi's patience of 20 epochs stops it after a
        few hundred steps, far from converged. ``mmd`` supports a single round.
        """
        if self.mode == "mmd":
            self._refuse_proposals(
                "mode='mmd' has no density, which sequential NPE's loss needs; use "
                "mode='ml' for simulations from a proposal other than the prior."
            )
            kwargs.setdefault("training_batch_size", 500)
            kwargs.setdefault("stop_after_epochs", 50)
        return super().train(**kwargs)
