"""``inn_nn`` (a builder like sbi's ``posterior_nn``) and the ``INN`` trainer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from sbi_allinone.inn.blocks import CORE_DEFAULTS, build_core
from sbi_allinone.inn.estimator import MODES, INNDensityEstimator, MMDSettings, Mode
from sbi_allinone.inn.mmd import DEFAULT_WIDTHS
from sbi_allinone.npe_plugin import BuilderNPE, check_theta, z_score

__all__ = ["INN", "MAX_MMD_Y_DIM", "inn_nn"]

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
) -> Callable[[Tensor, Tensor], INNDensityEstimator]:
    """Builder of an INN posterior estimator, for ``NPE(density_estimator=...)``.

    Args:
        mode: ``"ml"`` (conditional INN, maximum likelihood; default), ``"mmd"`` (the
            INN paper's bidirectional training) or ``"hybrid"`` (maximum likelihood
            plus MMD terms that keep its optimum).
        num_blocks: Number of coupling blocks (each: ActNorm, two-sided affine
            coupling, mixing).
        hidden_features: Width of the coupling subnets.
        num_layers: Hidden layers per coupling subnet.
        clamp: Soft clamp of the coupling log-scales.
        mixing: ``"permutation"`` or ``"rotation"`` (fixed random orthogonal).
        embedding_net: Network from z-scored ``x`` to a flat summary ``y``; as in
            ``posterior_nn``. In ``mmd`` mode it is a fixed summary (not trained).
        z_score_theta: ``"independent"``, ``"structured"`` or ``"none"``.
        z_score_x: ``"independent"``, ``"structured"`` or ``"none"``.
        latent_dim: Latent size in ``mmd`` mode (default: the number of parameters).
        padded_dim: Size of the space the ``mmd`` core acts on, ``>= dim_theta`` and
            ``>= dim_y + latent_dim``; both sides are zero-padded up to it (default:
            ``2 * (dim_y + latent_dim)``, as the paper pads well beyond the minimum
            to give the couplings room).
        weight_y, weight_z, weight_x: Loss weights of the MMD terms (``mmd``:
            ``lambda_y``, ``lambda_z``, ``lambda_x``; ``hybrid``: the latter two).
            ``weight_z`` defaults to 500 in ``mmd`` mode and 50 in ``hybrid`` mode.
            The paper's code uses about ``(1, 50, 500)`` with its own loss
            normalization; with ours (``L_y`` summed over entries, MMDs averaged
            over pairs) the paper's weights leave ``y_hat`` too inexact and the
            latent unmatched, and the multi-modal toy loses its mode weights.
        kernel_widths: Widths of the inverse multiquadratic MMD kernels; the
            default adds wide kernels to the paper's ``(0.05, 0.2, 0.9)``, which
            lose their gradient once latents stray a few units.
        ramp_steps: ``lambda_x`` grows linearly over this many steps (``mmd``).
        y_noise: Noise added to ``y`` in ``mmd`` training (standardized units): the
            inverse must stay accurate where the observed ``y`` differs from the
            forward prediction; smaller values sample off-mode (measured on the toy).
        pad_noise: Noise in the zero padding in ``mmd`` training.
        weight_reconstruction: Weight of the reconstruction loss (``mmd`` mode).
        match_padding: In ``L_x`` (``mmd`` mode), match the padding part of the
            inverse samples to the (noisy) zero padding as well; the paper matches
            the parameter part only, and the discarded padding then carries the
            inverse's error (the toy's samples land in the wrong colour's modes).
        joint_inverse: In ``L_x`` (``mmd`` mode), match inverse samples jointly
            with their ``y`` (the paper: marginally). Both default to ``True``;
            ``False, False`` is the paper's ``L_x``.
        seed: Seed of the network initialization and fixed permutations.

    Returns:
        ``build(theta, x) -> INNDensityEstimator``, called by sbi with the training
        data (used for z-scoring and the ActNorm initialization).
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    for name, value in (("latent_dim", latent_dim), ("padded_dim", padded_dim)):
        if value is not None and mode != "mmd":
            raise ValueError(f"`{name}` applies to mode='mmd' only.")

    def build(theta: Tensor, x: Tensor) -> INNDensityEstimator:
        if seed is not None:
            torch.manual_seed(seed)
        check_theta(theta)
        theta_mean, theta_std = z_score(theta, z_score_theta, "z_score_theta")
        x_mean, x_std = z_score(x, z_score_x, "z_score_x")
        embedding = embedding_net if embedding_net is not None else nn.Identity()
        with torch.no_grad():
            y = embedding((x[:2] - x_mean) / x_std)
        if y.ndim != 2:
            raise ValueError(
                "The embedding of `x` must be flat (batch, dim_y); got shape "
                f"{tuple(y.shape)}. Pass an `embedding_net` that flattens `x`."
            )
        dim_theta, dim_y = theta.shape[1], y.shape[1]
        latent_weight = weight_z
        if latent_weight is None:
            latent_weight = 500.0 if mode == "mmd" else 50.0
        settings = MMDSettings(
            weight_y=weight_y,
            weight_z=latent_weight,
            weight_x=weight_x, widths=kernel_widths, ramp_steps=ramp_steps,
            y_noise=y_noise, pad_noise=pad_noise,
            weight_reconstruction=weight_reconstruction,
            match_padding=match_padding, joint_inverse=joint_inverse,
        )  # fmt: skip
        if mode == "mmd":
            core, dim_z = _mmd_core(dim_theta, dim_y, latent_dim, padded_dim, embedding)
        else:
            if dim_theta == 1 and dim_y == 0:
                raise ValueError("The INN needs a non-empty embedding of `x`.")
            dim_z = dim_theta
            core = dict(dim=dim_theta, context_dim=dim_y)
        net = build_core(
            **core,
            num_blocks=num_blocks,
            hidden_features=hidden_features,
            num_layers=num_layers,
            clamp=clamp,
            mixing=mixing,
            seed=0 if seed is None else seed,
        )
        estimator = INNDensityEstimator(
            net, mode, embedding, theta_mean, theta_std, x_mean, x_std,
            x.shape[1:], dim_y, dim_z, settings,
        )  # fmt: skip
        _initialize_actnorm(estimator, theta, x)
        return estimator

    return build


def _mmd_core(
    dim_theta: int,
    dim_y: int,
    latent_dim: int | None,
    padded_dim: int | None,
    embedding: nn.Module,
) -> tuple[dict[str, int], int]:
    """Sizes of the unconditional ``[theta, pad] -> [y, z, pad]`` core."""
    if dim_y > MAX_MMD_Y_DIM:
        raise ValueError(
            f"mode='mmd' predicts the data from the parameters and matches [z, y] by "
            f"MMD, so `x` (after the embedding net) must be low-dimensional: at most "
            f"{MAX_MMD_Y_DIM} entries, got {dim_y}. Pass a fixed summary as "
            "`embedding_net`, or use mode='ml'."
        )
    for parameter in embedding.parameters():
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
    return dict(dim=padded_dim, context_dim=0), dim_z


@torch.no_grad()
def _initialize_actnorm(
    estimator: INNDensityEstimator, theta: Tensor, x: Tensor
) -> None:
    """Run the training data (up to 2 000 rows) through the net once: Glow's
    data-dependent ActNorm initialization sees a representative batch, not sbi's
    two-sample shape check."""
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(-1)
    theta, x = theta[finite][:2000], x[finite][:2000]
    theta_std = estimator._standardize(theta)
    if estimator.mode == "mmd":
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
        device: Training device.
        logging_level: As in sbi.
        summary_writer: As in sbi.
        tracker: As in sbi (pass one to avoid TensorBoard's ``sbi-logs/``).
        show_progress_bars: Whether to show progress while training.
        **inn_kwargs: Further arguments of :func:`inn_nn` (``num_blocks``,
            ``embedding_net``, ...).
    """

    def __init__(
        self,
        prior: Distribution | None = None,
        mode: Mode = "ml",
        device: str = "cpu",
        logging_level: int | str = "WARNING",
        summary_writer: Any = None,
        tracker: Any = None,
        show_progress_bars: bool = True,
        **inn_kwargs: Any,
    ) -> None:
        self.mode = mode
        super().__init__(
            prior, inn_nn(mode=mode, **inn_kwargs), device, logging_level,
            summary_writer, tracker, show_progress_bars,
        )  # fmt: skip

    def train(self, **kwargs: Any) -> INNDensityEstimator:
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
