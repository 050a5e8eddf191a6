r"""One conditional of a trained Simformer as an sbi vector-field estimator.

:class:`SimformerVectorField` wraps a trained
:class:`~sbi_allinone.simformer.estimator.SimformerEstimator` and a fixed condition
mask as sbi's ``ConditionalVectorFieldEstimator``; :func:`vector_field_posterior`
puts it in sbi's ``VectorFieldPosterior``. What that adds to
:class:`~.posterior.SimformerPosterior` is sbi's iid methods (``x`` with several
rows is treated as iid observations) and sbi's guidance methods; the package's own
posterior stays the faster sampler and density (``docs/benchmarks/
simformer_vector_field.md``: 33 network calls per sample for its ODE against 127-499
for sbi's Euler-Maruyama and ~1 300 for sbi's adaptive ODE).

The Simformer's noise is the VE process :math:`v_\sigma = v_0 + \sigma\epsilon` in
standardized units; in sbi's time :math:`t \in [0, 1]`,
:math:`\sigma(t) = \sigma_{min} (\sigma_{max}/\sigma_{min})^t` over the estimator's
range, :math:`f = 0`, :math:`g(t) = \sigma(t)\sqrt{2 \log(\sigma_{max}/\sigma_{min})}`.
Inputs and conditions here are in user units, :math:`\theta = \mu + s\, v`, so the
noise of latent :math:`i` is :math:`s_i \sigma(t)` (``std_fn`` is per dimension)
and the score is the standardized one divided by :math:`s`.

Limits, all from sbi's side:

- iid ``"gauss"``/``"auto_gauss"`` need an elementwise prior (``Independent``,
  ``BoxUniform``): sbi denoises a ``MultivariateNormal`` prior with a scalar noise
  level, which the per-dimension ``std_fn`` breaks (a shape error).
- ``"auto_gauss"`` is accurate with ``iid_params={"precision_est_only_diag": True}``;
  its full-matrix default inverts an uncentred second moment, not a covariance.
- ``"fnpe"`` diverges at EDM's :math:`\sigma_{max} = 80`, even with an exact
  denoiser: its :math:`(1 - t)`-weighted clean-prior score outgrows the summed
  scores at large :math:`\sigma` (at :math:`\sigma_{max} = 10` it runs, at half
  the posterior variance).
- ``"jac_gauss"`` fails: ``torch.func.vmap`` cannot trace the estimator's
  data-dependent attention mask.
- A NaN (missing) entry of ``x`` is rejected by sbi before the estimator sees it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from sbi.inference.posteriors.vector_field_posterior import VectorFieldPosterior
from sbi.inference.trainers.base import NeuralInference
from sbi.neural_nets.estimators.base import ConditionalVectorFieldEstimator
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.sbi_internals import (
    set_vector_field_base,
    trained_network,
    trainer_prior,
)
from sbi_allinone.simformer.estimator import SimformerEstimator

__all__ = ["SimformerVectorField", "vector_field_posterior"]


class SimformerVectorField(ConditionalVectorFieldEstimator):
    """A trained Simformer's score for one condition mask, in sbi's VE-SDE form.

    sbi's ``input`` is the latent variables, its ``condition`` the conditioned ones
    (both in user units, in ``[theta, x]`` order). Training stays with the
    Simformer: ``loss`` raises.

    Args:
        estimator: Trained Simformer denoiser.
        condition_mask: ``(num_nodes,)`` booleans, ``True`` = conditioned; default
            the posterior mask (all data conditioned).
    """

    SCORE_DEFINED = True
    SDE_DEFINED = True
    MARGINALS_DEFINED = True

    def __init__(
        self, estimator: SimformerEstimator, condition_mask: Tensor | None = None
    ) -> None:
        n, device = estimator.num_nodes, estimator.mean.device
        if condition_mask is None:
            condition_mask = torch.arange(n, device=device) >= estimator.num_parameters
        condition_mask = torch.as_tensor(condition_mask, device=device)
        condition_mask = condition_mask.bool().flatten()
        if condition_mask.shape != (n,) or condition_mask.all():
            raise ValueError(
                f"`condition_mask` must have {n} entries, not all True; got "
                f"{condition_mask.tolist()}."
            )
        latent = ~condition_mask
        super().__init__(
            estimator,
            torch.Size([int(latent.sum())]),
            torch.Size([int(condition_mask.sum())]),
            t_min=0.0,
            t_max=1.0,
        )
        self.sigma_min = float(estimator.noise.sigma_min)
        self.sigma_max = float(estimator.noise.sigma_max)
        self.register_buffer("condition_mask", condition_mask)
        scale = estimator.std[latent].detach().clone()
        self.register_buffer("scale", scale)
        # Base of the VE SDE at t = 1: the data spread plus sigma_max noise, centred
        # on the training mean.
        std_base = scale * math.sqrt(1.0 + self.sigma_max**2)
        mean_base = estimator.mean[latent].detach().clone()
        set_vector_field_base(self, mean_base.reshape(1, -1), std_base.reshape(1, -1))

    @property
    def estimator(self) -> SimformerEstimator:
        """The wrapped Simformer denoiser."""
        return self.net

    def sigma(self, times: Tensor) -> Tensor:
        """Standardized noise level :math:`\\sigma(t)`; shape of ``times``."""
        times = torch.as_tensor(times, dtype=torch.float32, device=self.scale.device)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** times

    def mean_t_fn(self, times: Tensor) -> Tensor:
        """Mean factor of the VE kernel: ones of shape ``(*times.shape, 1)``."""
        times = torch.as_tensor(times, dtype=torch.float32, device=self.scale.device)
        return torch.ones_like(times)[..., None]

    def std_fn(self, times: Tensor) -> Tensor:
        """Noise std of each latent in user units, ``(*times.shape, num_latent)``."""
        return self.sigma(times)[..., None] * self.scale

    def drift_fn(self, input: Tensor, times: Tensor) -> Tensor:
        """Zero drift of the VE SDE (``(1,)``, broadcasts)."""
        return torch.zeros(1, device=input.device)

    def diffusion_fn(self, input: Tensor, times: Tensor) -> Tensor:
        """:math:`g(t)` per latent in user units, ``(*times.shape, num_latent)``."""
        rate = math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))
        return (rate * self.std_fn(times)).to(input.device)

    def score(self, input: Tensor, condition: Tensor, t: Tensor) -> Tensor:
        """Score of the noised latents given the condition, in user units.

        Args:
            input: Noised latents ``(*batch, num_latent)``.
            condition: Conditions ``(*batch, num_condition)``, broadcast against
                ``input``'s batch shape (e.g. ``(num_samples, 1, d)`` with
                ``(num_iid, c)``); NaN entries are missing.
            t: Times in ``[0, 1]``, scalar or broadcastable to the batch shape.

        Returns:
            ``(*batch, num_latent)`` scores.
        """
        batch = torch.broadcast_shapes(input.shape[:-1], condition.shape[:-1])
        rows = batch.numel()
        latent, mask = ~self.condition_mask, self.condition_mask
        estimator = self.estimator
        values = input.new_zeros(rows, estimator.num_nodes)
        values[:, latent] = input.expand(*batch, -1).reshape(rows, -1)
        values[:, mask] = condition.to(input).expand(*batch, -1).reshape(rows, -1)
        missing = torch.isnan(values) & mask
        values = torch.where(missing, 0.0, estimator.standardize(values))
        t = torch.as_tensor(t, device=input.device)
        sigma = self.sigma(t.expand(batch)).reshape(rows, 1).to(input)
        score = estimator.score(values, sigma, mask.expand(rows, -1), missing=missing)
        return (score[:, latent] / self.scale).reshape(*batch, -1)

    def forward(self, input: Tensor, condition: Tensor, time: Tensor) -> Tensor:
        """The score (sbi's guidance methods call the estimator for it)."""
        return self.score(input, condition, time)

    def ode_fn(self, input: Tensor, condition: Tensor, times: Tensor) -> Tensor:
        """Probability-flow ODE :math:`d\\theta/dt = -g(t)^2 s / 2` (user units)."""
        g = self.diffusion_fn(input, times)
        return -0.5 * g**2 * self.score(input, condition, times)

    def loss(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:
        raise NotImplementedError(
            "Train the Simformer (`Simformer.train`); this adapter only evaluates it."
        )


def vector_field_posterior(
    trainer_or_estimator: Any,
    prior: Distribution | None = None,
    condition_mask: Tensor | None = None,
    sample_with: str = "sde",
    **kwargs: Any,
) -> VectorFieldPosterior:
    """sbi's ``VectorFieldPosterior`` over one conditional of a trained Simformer.

    Args:
        trainer_or_estimator: A trained :class:`~.trainer.Simformer` or its
            :class:`~.estimator.SimformerEstimator`.
        prior: Prior over the latents (sbi rejects samples outside its support
            and the iid methods use it); default the trainer's prior. Use an
            elementwise one (``Independent``, ``BoxUniform``) for iid data.
        condition_mask: ``(num_nodes,)``; default the posterior mask.
        sample_with: ``"sde"`` (sbi's Euler-Maruyama) or ``"ode"`` (zuko).
        **kwargs: Passed to ``VectorFieldPosterior``.

    Returns:
        The posterior. ``sample((n,), x=x_iid, iid_method="auto_gauss",
        iid_params={"precision_est_only_diag": True})`` with ``x_iid`` of shape
        ``(num_iid, num_condition)`` samples the posterior given all ``num_iid``
        observations.
    """
    trainer = trainer_or_estimator
    is_trainer = isinstance(trainer, NeuralInference)
    estimator = trained_network(trainer) if is_trainer else trainer
    if not isinstance(estimator, SimformerEstimator):
        raise ValueError("Pass a trained Simformer or a SimformerEstimator.")
    if prior is None and is_trainer:
        prior = trainer_prior(trainer)
    if prior is None:
        raise ValueError("sbi's VectorFieldPosterior needs a `prior`.")
    field = SimformerVectorField(estimator.eval(), condition_mask)
    return VectorFieldPosterior(field, prior, sample_with=sample_with, **kwargs)
