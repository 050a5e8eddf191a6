"""Inflationary flows (de Albuquerque and Pearson, NeurIPS 2024) as a conditional
posterior estimator: an inflating noise schedule whose probability-flow ODE maps
parameters invertibly to a Gaussian latent, for each observation."""

from sbi_allinone.inflationary.builder import inflationary_flow_nn
from sbi_allinone.inflationary.estimator import InflationaryFlowEstimator
from sbi_allinone.inflationary.schedule import InflationarySchedule
from sbi_allinone.inflationary.trainer import InflationaryFlow

__all__ = [
    "InflationaryFlow",
    "InflationaryFlowEstimator",
    "InflationarySchedule",
    "inflationary_flow_nn",
]
