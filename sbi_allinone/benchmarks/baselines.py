"""sbi's own estimators as benchmark methods, at sbi's default settings.

NPE with a masked autoregressive flow and with a neural spline flow, NPE with
sbibm's settings (the sbibm paper's NPE), NLE with slice-sampling MCMC (and its
likelihood, :class:`LikelihoodSampler`), NPSE and FMPE: the baselines the package's
estimators are measured against. :mod:`sbi_allinone.benchmarks.methods` registers
them, first, under ``npe``, ``npe_nsf``, ``npe_sbibm``, ``nle``, ``npse`` and
``fmpe``.
"""

from __future__ import annotations

import torch
from sbi.inference import FMPE, NLE, NPE, NPSE
from sbi.neural_nets import posterior_nn
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.benchmarks.methods import TrainedPosterior, _epochs, _train_default
from sbi_allinone.tracking import NullTracker

__all__ = [
    "SBIBM_NPE_BATCH_SIZE",
    "LikelihoodSampler",
    "train_fmpe",
    "train_nle",
    "train_npe_maf",
    "train_npe_nsf",
    "train_npe_sbibm",
    "train_npse",
]


def _train_npe(theta, x, prior, show_progress_bars, density_estimator):
    return _train_default(
        NPE, theta, x, prior, show_progress_bars, density_estimator=density_estimator
    )


def train_npe_maf(
    theta: Tensor, x: Tensor, prior: Distribution, show_progress_bars: bool = False
) -> TrainedPosterior:
    """sbi's NPE with a masked autoregressive flow (sbi's default estimator)."""
    return _train_npe(theta, x, prior, show_progress_bars, "maf")


def train_npe_nsf(
    theta: Tensor, x: Tensor, prior: Distribution, show_progress_bars: bool = False
) -> TrainedPosterior:
    """sbi's NPE with a neural spline flow."""
    return _train_npe(theta, x, prior, show_progress_bars, "nsf")


# sbibm's NPE (sbibm/algorithms/sbi/snpe.py with num_rounds=1; the NPE of the sbibm
# paper's tables): a neural spline flow with 50 hidden features, both sides z-scored
# dimension by dimension, training batches of 10 000 (all simulations, below that),
# the rest at sbi's training defaults, which are those sbibm ran with.
SBIBM_NPE_BATCH_SIZE = 10_000


def train_npe_sbibm(
    theta: Tensor, x: Tensor, prior: Distribution, show_progress_bars: bool = False
) -> TrainedPosterior:
    """NPE with sbibm's settings, to reproduce the sbibm paper's NPE."""
    estimator = posterior_nn(
        model="nsf",
        hidden_features=50,
        z_score_x="independent",
        z_score_theta="independent",
    )
    inference = NPE(
        prior,
        density_estimator=estimator,
        tracker=NullTracker(),
        show_progress_bars=show_progress_bars,
    )
    inference.append_simulations(theta, x).train(
        training_batch_size=SBIBM_NPE_BATCH_SIZE
    )
    return TrainedPosterior(inference.build_posterior(), _epochs(inference))


class LikelihoodSampler:
    """Samples ``x ~ q(x | theta)`` of a trained sbi likelihood estimator.

    Gives an NLE likelihood the ``sample((n,), x=theta)`` interface of the
    posteriors, so the runner's ``--target likelihood`` scores it.

    Args:
        estimator: sbi ``ConditionalDensityEstimator`` of ``x`` given ``theta``.
    """

    def __init__(self, estimator) -> None:  # noqa: ANN001
        self.estimator = estimator

    def sample(
        self, sample_shape: tuple, x: Tensor, show_progress_bars: bool = False
    ) -> Tensor:
        """``(*sample_shape, dim_x)`` data at one parameter set ``x`` ``(1, dim)``."""
        with torch.no_grad():
            samples = self.estimator.sample(torch.Size(sample_shape), condition=x)
        return samples.reshape(*sample_shape, -1)


def train_nle(
    theta: Tensor, x: Tensor, prior: Distribution, show_progress_bars: bool = False
) -> TrainedPosterior:
    """sbi's NLE (MAF likelihood) with vectorized slice-sampling MCMC."""
    inference = NLE(prior, tracker=NullTracker(), show_progress_bars=show_progress_bars)
    estimator = inference.append_simulations(theta, x).train()
    posterior = inference.build_posterior(
        mcmc_method="slice_np_vectorized",
        # Many short vectorized chains: as fast per sample as slice sampling gets.
        mcmc_parameters={"num_chains": 100, "thin": 1, "warmup_steps": 200},
    )
    return TrainedPosterior(
        posterior, _epochs(inference), likelihood=LikelihoodSampler(estimator)
    )


def train_npse(
    theta: Tensor, x: Tensor, prior: Distribution, show_progress_bars: bool = False
) -> TrainedPosterior:
    """sbi's NPSE (score matching, VE SDE) at sbi's defaults."""
    return _train_default(NPSE, theta, x, prior, show_progress_bars)


def train_fmpe(
    theta: Tensor, x: Tensor, prior: Distribution, show_progress_bars: bool = False
) -> TrainedPosterior:
    """sbi's FMPE (flow matching) at sbi's defaults."""
    return _train_default(FMPE, theta, x, prior, show_progress_bars)
