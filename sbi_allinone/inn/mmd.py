"""Maximum mean discrepancy with inverse multiquadratic kernels.

``MMD²(P, Q) = E k(a, a') + E k(b, b') - 2 E k(a, b)`` for ``a, a' ~ P`` and
``b, b' ~ Q``. The INN paper uses the inverse multiquadratic kernel
``k_h(a, b) = h² / (h² + |a - b|²)`` summed over several widths ``h``: its heavy
tails keep gradients alive for samples far from the target, unlike a Gaussian kernel.
:class:`MMDSettings` holds the weights, kernels and noise of the INN's MMD loss terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_WIDTHS", "MMDSettings", "imq_kernel", "mmd2"]

#: Kernel widths in standardized units: small ones resolve modes, wide ones keep a
#: gradient on samples far from the target (the paper's (0.05, 0.2, 0.9) alone lose it).
DEFAULT_WIDTHS: tuple[float, ...] = (0.1, 0.5, 2.0, 8.0)


def imq_kernel(
    a: Tensor, b: Tensor, widths: Sequence[float] = DEFAULT_WIDTHS
) -> Tensor:
    """Sum of inverse multiquadratic kernels over ``widths``.

    Args:
        a: Points ``(n, dim)``.
        b: Points ``(m, dim)``.
        widths: Kernel widths ``h``.

    Returns:
        Kernel matrix ``(n, m)``.
    """
    squared_distances = torch.cdist(a, b).square()
    return sum(h**2 / (h**2 + squared_distances) for h in widths)


def mmd2(
    a: Tensor,
    b: Tensor,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    unbiased: bool = True,
) -> Tensor:
    """Squared MMD between the samples ``a`` and ``b``.

    Args:
        a: Samples ``(n, dim)`` of the first distribution, ``n >= 2``.
        b: Samples ``(m, dim)`` of the second distribution, ``m >= 2``.
        widths: Kernel widths ``h`` of the inverse multiquadratic kernels.
        unbiased: Leave out the ``k(a_i, a_i)`` terms (U-statistic, unbiased for
            ``MMD²``, can be negative); else the V-statistic (biased, ``>= 0``).

    Returns:
        Scalar estimate of ``MMD²``.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            "`a` and `b` must be (n, dim) and (m, dim) with the same dim, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {n} and {m}.")
    k_aa, k_bb = imq_kernel(a, a, widths), imq_kernel(b, b, widths)
    k_ab = imq_kernel(a, b, widths)
    if unbiased:
        within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
        within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    else:
        within_a, within_b = k_aa.mean(), k_bb.mean()
    return within_a + within_b - 2 * k_ab.mean()


class MMDSettings(nn.Module):
    """Weights, kernels and noise of the MMD terms (all in standardized units).

    Used by :class:`~sbi_allinone.inn.bidirectional.BidirectionalINN` (all of them)
    and by the ``hybrid`` mode of
    :class:`~sbi_allinone.inn.estimator.INNDensityEstimator` (``weight_z``,
    ``weight_x``, ``widths``). No defaults here: they are defined once, by
    :func:`sbi_allinone.inn_nn`, and differ from the paper's code where it failed on
    the multi-modal toy (:class:`~sbi_allinone.inn.toy.MultimodalToy`), as said for
    each below. The module's one buffer, ``steps``, counts training steps.

    Args:
        weight_y: ``lambda_y`` of the forward prediction loss (``mmd`` mode).
        weight_z: ``lambda_z`` of the latent MMD.
        weight_x: ``lambda_x`` of the inverse (parameter) MMD. The paper's code
            weighs ``(L_y, L_z, L_x)`` by about ``(1, 50, 500)`` with its own loss
            normalization; with ours (``L_y`` summed over entries, MMDs averaged
            over pairs) those weights leave ``y_hat`` too inexact and the latent
            unmatched, and the toy loses its mode weights.
        widths: Widths ``h`` of the inverse multiquadratic kernels; the default
            adds wide kernels to the paper's ``(0.05, 0.2, 0.9)``, which lose their
            gradient once latents stray a few units.
        ramp_steps: ``lambda_x`` grows linearly from 0 over this many training
            steps (``mmd`` mode; the paper ramps it in).
        y_noise: Standard deviation of noise added to ``y`` in training: the
            inverse must stay accurate where the observed ``y`` differs from the
            forward prediction; smaller values sample off-mode (measured on the toy).
        pad_noise: Standard deviation of noise in the zero padding in training.
        weight_reconstruction: Weight of the reconstruction loss (``mmd`` mode):
            the inverse applied to the forward output, with the exact ``y`` and
            perturbed ``z``, must return ``[theta, 0]``. Without it the inverse is
            free to be arbitrarily sensitive to the small gap between ``y_hat`` and
            ``y``, and sampling at the observed ``y`` fails.
        match_padding: Match the padding part of the inverse samples too (to the
            noisy zero padding) in ``L_x``; the paper matches the parameters only,
            and the discarded padding then carries the inverse's error (the toy's
            samples land in the wrong colour's modes).
        joint_inverse: Match inverse samples jointly with their ``y`` in ``L_x``
            (conditional), instead of marginally as in the paper. ``match_padding``
            and ``joint_inverse`` both ``False`` is the paper's ``L_x``.
    """

    def __init__(
        self,
        *,
        weight_y: float,
        weight_z: float,
        weight_x: float,
        widths: Sequence[float],
        ramp_steps: int,
        y_noise: float,
        pad_noise: float,
        weight_reconstruction: float,
        match_padding: bool,
        joint_inverse: bool,
    ) -> None:
        super().__init__()
        self.weight_reconstruction = weight_reconstruction
        self.match_padding, self.joint_inverse = match_padding, joint_inverse
        if ramp_steps < 0:
            raise ValueError(f"`ramp_steps` must be non-negative, got {ramp_steps}.")
        self.weight_y, self.weight_z, self.weight_x = weight_y, weight_z, weight_x
        self.widths = tuple(widths)
        self.ramp_steps, self.y_noise, self.pad_noise = ramp_steps, y_noise, pad_noise
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def ramp(self, training: bool) -> float:
        """Current factor on ``lambda_x``; validation always uses the full weight."""
        if not training or self.ramp_steps == 0:
            return 1.0
        return min(1.0, float(self.steps) / self.ramp_steps)
