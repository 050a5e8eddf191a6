"""Every use of sbi's private surface, in one place.

sbi 0.27 has no public way to do what these functions do: store simulations in a
trainer that bypasses ``NeuralInference.append_simulations`` (the Simformer keeps
NaN entries as missing data), configure its training loop (``TrainConfig``),
override the loop's hooks, or check a condition's shape as its density estimators
do. The rest of the package calls these functions and never touches an underscore
attribute of an sbi object (a subclass of an sbi class uses the names listed in
:data:`TRAINER_ATTRIBUTES` and :data:`VECTOR_FIELD_BUFFERS` on itself, as sbi's own
subclasses do), so that a new sbi release breaks one file, and
``tests/test_sbi_internals.py`` says which name moved. The supported sbi versions
are pinned in ``pyproject.toml``.
"""

from __future__ import annotations

from typing import Any

import torch
from sbi.inference.trainers._contracts import StartIndexContext, TrainConfig
from torch import Tensor

__all__ = [
    "ESTIMATOR_CHECKS",
    "NONFINITE_LOSS_MESSAGE",
    "ROUND_STORES",
    "TRAINER_ATTRIBUTES",
    "TRAINER_HOOKS",
    "VECTOR_FIELD_BUFFERS",
    "StartIndexContext",
    "TrainConfig",
    "check_condition_shape",
    "flatten_input_and_condition",
    "has_proposal_rounds",
    "num_stored_simulations",
    "restart_patience",
    "set_vector_field_base",
    "store_prior_round",
    "trained_network",
    "trainer_prior",
]

#: Lists of simulations per round kept by ``NeuralInference``.
ROUND_STORES = ("_theta_roundwise", "_x_roundwise", "_prior_masks", "_data_round_index")

#: ``NeuralInference`` methods a trainer here overrides (sbi's loop calls them).
TRAINER_HOOKS = (
    "_run_training_loop",
    "_train_epoch",
    "_validate_epoch",
    "_initialize_neural_network",
    "_get_start_index",
    "_get_losses",
    "_get_potential_function",
    "_summarize_epoch",
    "_converged",
)

#: Start of the ``ValueError`` message sbi's loss raises when it is NaN or inf
#: (``sbi.utils.torchutils.assert_all_finite``).
NONFINITE_LOSS_MESSAGE = "NaN/Inf present in"

#: ``ConditionalDensityEstimator`` shape checks used by the estimators here.
#: Attributes of ``NeuralInference`` that the Simformer trainer (a subclass) reads and
#: writes as sbi's own trainers do: the network, the prior and the device.
TRAINER_ATTRIBUTES = ("_neural_net", "_prior", "_device")

#: Buffers of sbi's ``ConditionalVectorFieldEstimator`` holding its Gaussian base.
VECTOR_FIELD_BUFFERS = ("_mean_base", "_std_base")

ESTIMATOR_CHECKS = (
    "_check_input_shape",
    "_check_condition_shape",
    "_broadcast_and_align",
)


def store_prior_round(trainer: Any, theta: Tensor, x: Tensor) -> None:
    """Append simulations from the prior to an sbi trainer, as round 0.

    Args:
        trainer: A ``NeuralInference``.
        theta: ``(num_simulations, num_parameters)``.
        x: ``(num_simulations, *x_shape)``, stored as given (NaN kept).
    """
    trainer._theta_roundwise.append(theta)
    trainer._x_roundwise.append(x)
    trainer._prior_masks.append(torch.ones(theta.shape[0], 1, dtype=torch.bool))
    trainer._data_round_index.append(0)


def num_stored_simulations(trainer: Any) -> int:
    """Number of simulations appended to an sbi trainer, all rounds."""
    return sum(len(theta) for theta in trainer._theta_roundwise)


def has_proposal_rounds(trainer: Any) -> bool:
    """Whether any of a trainer's simulations came from a proposal, not the prior."""
    return max(trainer._data_round_index, default=0) > 0


def check_condition_shape(estimator: Any, condition: Tensor) -> None:
    """Raise sbi's error if ``condition`` does not end in the estimator's
    ``condition_shape``."""
    estimator._check_condition_shape(condition)


def flatten_input_and_condition(
    estimator: Any, input: Tensor, condition: Tensor
) -> tuple[Tensor, Tensor, int]:
    """Check and broadcast ``(input, condition)`` as sbi's density estimators do.

    Args:
        estimator: An sbi ``ConditionalDensityEstimator`` with a flat input shape.
        input: ``(sample_dim, batch_dim, D)`` or ``(batch_dim, D)``.
        condition: ``(batch_dim, *x_shape)`` or ``(sample_dim, batch_dim, *x_shape)``.

    Returns:
        Flat ``(S * B, D)`` inputs, ``(S * B, *x_shape)`` conditions, and ``S``.
    """
    estimator._check_input_shape(input)
    estimator._check_condition_shape(condition)
    input, condition, _ = estimator._broadcast_and_align(input, condition)
    return (
        input.reshape(-1, *estimator.input_shape),
        condition.reshape(-1, *estimator.condition_shape),
        input.shape[0],
    )


def trained_network(trainer: Any) -> Any:
    """The network an sbi trainer trained (``None`` before ``train``)."""
    return trainer._neural_net


def trainer_prior(trainer: Any) -> Any:
    """The prior an sbi trainer was built with (``None`` if none)."""
    return trainer._prior


def restart_patience(trainer: Any) -> None:
    """Zero the fruitless-epoch count of sbi's early stopping
    (``NeuralInference._converged``), so that the patience starts again."""
    trainer._epochs_since_last_improvement = 0


def set_vector_field_base(field: Any, mean: Tensor, std: Tensor) -> None:
    """Set the Gaussian base of an sbi ``ConditionalVectorFieldEstimator``.

    Args:
        field: The estimator.
        mean: ``(1, *input_shape)`` mean of the base at the largest time.
        std: ``(1, *input_shape)`` standard deviation of the base.
    """
    field._mean_base = mean
    field._std_base = std
