"""Simformer (Gloeckler et al., ICML 2024): one score model for every conditional.

:class:`Simformer` is the trainer (sbi's ``NPE`` interface); its ``build_posterior``,
``build_likelihood`` and ``build_conditional`` return
:class:`~.posterior.SimformerPosterior` objects. Dependency graphs for attention
masks are built with :func:`~.masks.adjacency_from_parents`; interval observations
and constraints are :class:`~.constraints.Interval`,
:class:`~.constraints.LinearConstraint` and :class:`~.constraints.FunctionConstraint`
(nonlinear). :func:`~.vector_field.vector_field_posterior` puts a trained
Simformer conditional into sbi's ``VectorFieldPosterior`` (iid
observations, sbi's guidance methods). Data that are not one fixed-size vector
(series at per-simulation times, function-valued parameters) are described by
:class:`~.tokens.Variables`; such a Simformer's posterior is a
:class:`~.series.SeriesPosterior`.
"""

from sbi_allinone.simformer.constraints import (
    FunctionConstraint,
    Interval,
    LinearConstraint,
)
from sbi_allinone.simformer.masks import adjacency_from_parents
from sbi_allinone.simformer.posterior import SimformerPosterior
from sbi_allinone.simformer.series import SeriesPosterior
from sbi_allinone.simformer.tokens import Variables
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.simformer.vector_field import vector_field_posterior

__all__ = [
    "FunctionConstraint",
    "Interval",
    "LinearConstraint",
    "SeriesPosterior",
    "Simformer",
    "SimformerPosterior",
    "Variables",
    "adjacency_from_parents",
    "vector_field_posterior",
]
