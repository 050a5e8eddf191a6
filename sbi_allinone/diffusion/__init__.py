"""What the diffusion methods share: EDM preconditioning, training noise levels,
the weight average and the optimizer of the live weights, fixed validation draws,
the noise embedding, probability-flow ODE integration with divergences, a multistep
ODE solver, and a stochastic sampler.

Used by the Simformer (:mod:`sbi_allinone.simformer`) and the inflationary flow
(:mod:`sbi_allinone.inflationary`); each exists once, here.
"""

from sbi_allinone.diffusion.averaging import update_weight_average, weight_average
from sbi_allinone.diffusion.embedding import FourierEmbedding
from sbi_allinone.diffusion.multistep import multistep
from sbi_allinone.diffusion.noise import (
    LogNormalNoise,
    NoiseLevels,
    VENoise,
    VPNoise,
    make_noise,
    uniform_time,
)
from sbi_allinone.diffusion.ode import (
    edm_grid,
    field_and_divergence,
    gaussian_log_prob,
    heun,
    integrate_adaptive,
    integrate_with_divergence,
    log_grid,
    rademacher,
)
from sbi_allinone.diffusion.optimizer import flush_denormal, live_adam
from sbi_allinone.diffusion.preconditioning import (
    Preconditioning,
    edm_preconditioning,
)
from sbi_allinone.diffusion.stochastic import sample_stochastic
from sbi_allinone.diffusion.validation import fixed_draws

__all__ = [
    "FourierEmbedding",
    "LogNormalNoise",
    "NoiseLevels",
    "Preconditioning",
    "VENoise",
    "VPNoise",
    "edm_grid",
    "edm_preconditioning",
    "field_and_divergence",
    "fixed_draws",
    "flush_denormal",
    "gaussian_log_prob",
    "heun",
    "integrate_adaptive",
    "integrate_with_divergence",
    "live_adam",
    "log_grid",
    "make_noise",
    "multistep",
    "rademacher",
    "sample_stochastic",
    "uniform_time",
    "update_weight_average",
    "weight_average",
]
