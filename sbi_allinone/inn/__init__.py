"""Invertible neural networks for inverse problems (Ardizzone et al., ICLR 2019).

``INN`` is an sbi NPE trainer and ``inn_nn`` a builder for
``NPE(density_estimator=...)``; three training modes: maximum likelihood (``ml``,
conditional INN) and that plus MMD terms (``hybrid``), both an
``INNDensityEstimator``, and the paper's bidirectional MMD training (``mmd``), a
``BidirectionalINN``: a sampler without a density.
"""

from sbi_allinone.inn.bidirectional import BidirectionalINN
from sbi_allinone.inn.calibration import calibration_error
from sbi_allinone.inn.estimator import INNDensityEstimator
from sbi_allinone.inn.trainer import INN, inn_nn

__all__ = [
    "INN",
    "BidirectionalINN",
    "INNDensityEstimator",
    "calibration_error",
    "inn_nn",
]
