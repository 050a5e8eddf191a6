"""sbi's private surface that ``sbi_allinone.sbi_internals`` relies on.

A failure here means the installed sbi moved a private name: fix the adapter (one
file) and the version range in ``pyproject.toml``.
"""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch
from sbi.inference import NPE
from sbi.inference.trainers.base import NeuralInference
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator

import sbi_allinone
from sbi_allinone import sbi_internals
from sbi_allinone.sbi_internals import (
    ESTIMATOR_CHECKS,
    NONFINITE_LOSS_MESSAGE,
    ROUND_STORES,
    TRAINER_ATTRIBUTES,
    TRAINER_HOOKS,
    VECTOR_FIELD_BUFFERS,
    TrainConfig,
    has_proposal_rounds,
    num_stored_simulations,
    restart_patience,
    set_vector_field_base,
    store_prior_round,
    trained_network,
    trainer_prior,
)
from sbi_allinone.tracking import NullTracker

PACKAGE = Path(sbi_allinone.__file__).parent
STUDIES = PACKAGE.parent / "docs" / "benchmarks"


def test_trainer_hooks_keep_their_signatures():
    expected = {
        "_run_training_loop": [
            "self",
            "train_loader",
            "val_loader",
            "train_config",
            "loss_args",
            "summarization_kwargs",
        ],
        "_train_epoch": ["self", "train_loader", "clip_max_norm", "loss_args"],
        "_validate_epoch": ["self", "val_loader", "loss_args"],
        "_initialize_neural_network": ["self", "retrain_from_scratch", "start_idx"],
        "_get_start_index": ["self", "context"],
        "_get_losses": ["self", "batch", "loss_args"],
        "_get_potential_function": ["self", "prior", "estimator"],
        "_summarize_epoch": [
            "self",
            "train_loss",
            "val_loss",
            "epoch_start_time",
            "summarization_kwargs",
        ],
        "_converged": ["self", "epoch", "stop_after_epochs"],
    }
    assert set(expected) == set(TRAINER_HOOKS)
    for name, parameters in expected.items():
        hook = getattr(NeuralInference, name)
        assert list(inspect.signature(hook).parameters) == parameters, name


def test_train_config_has_the_fields_the_trainers_set():
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    assert {
        "training_batch_size",
        "learning_rate",
        "validation_fraction",
        "stop_after_epochs",
        "max_num_epochs",
        "resume_training",
        "retrain_from_scratch",
        "show_train_summary",
        "clip_max_norm",
    } <= fields


def test_nonfinite_loss_message_is_sbis():
    from sbi.utils.torchutils import assert_all_finite

    with pytest.raises(ValueError) as error:
        assert_all_finite(torch.tensor([1.0, float("nan")]), "NPE loss")
    assert str(error.value).startswith(NONFINITE_LOSS_MESSAGE)


def test_estimator_checks_exist():
    for name in ESTIMATOR_CHECKS:
        assert callable(getattr(ConditionalDensityEstimator, name)), name


def test_round_stores_round_trip_through_sbi():
    trainer = NPE(show_progress_bars=False)
    for name in ROUND_STORES:
        assert getattr(trainer, name) == [], name
    theta, x = torch.randn(5, 2), torch.randn(5, 3)
    store_prior_round(trainer, theta, x)
    stored_theta, stored_x, from_prior = trainer.get_simulations()
    assert torch.equal(stored_theta, theta) and torch.equal(stored_x, x)
    assert from_prior.all()
    assert num_stored_simulations(trainer) == 5
    assert not has_proposal_rounds(trainer)


def test_trainer_attributes_exist_and_read_through_the_adapter():
    prior = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    trainer = NPE(prior, show_progress_bars=False)
    for name in TRAINER_ATTRIBUTES:
        assert hasattr(trainer, name), name
    assert trained_network(trainer) is None
    assert trainer_prior(trainer) is prior
    trainer.append_simulations(torch.randn(50, 2), torch.randn(50, 2))
    estimator = trainer.train(max_num_epochs=1)
    assert trained_network(trainer) is estimator


def test_restart_patience_resets_the_early_stopping_count():
    trainer = NPE(show_progress_bars=False, tracker=NullTracker())
    trainer.append_simulations(torch.randn(50, 2), torch.randn(50, 2))
    trainer.train(max_num_epochs=1)
    trainer._val_loss = trainer._best_val_loss + 1.0
    restart_patience(trainer)
    assert not trainer._converged(epoch=1, stop_after_epochs=2)
    assert trainer._converged(epoch=2, stop_after_epochs=2)
    restart_patience(trainer)
    assert not trainer._converged(epoch=3, stop_after_epochs=2)


def test_vector_field_base_buffers_exist_and_are_set():
    from sbi.neural_nets import posterior_score_nn

    field = posterior_score_nn("mlp")(torch.randn(50, 2), torch.randn(50, 3))
    buffers = dict(field.named_buffers())
    for name in VECTOR_FIELD_BUFFERS:
        assert name in buffers, name
    set_vector_field_base(field, torch.full((1, 2), 3.0), torch.full((1, 2), 2.0))
    assert torch.equal(field.mean_base, torch.full((1, 2), 3.0))
    assert torch.equal(field.std_base, torch.full((1, 2), 2.0))


def test_no_other_module_touches_sbi_private_names():
    private = (*ROUND_STORES, *ESTIMATOR_CHECKS, "_summary", "_x_o", "_contracts")
    # Attributes a subclass may use on itself (``self._neural_net``), nothing else.
    own = (*TRAINER_ATTRIBUTES, *VECTOR_FIELD_BUFFERS)
    names = "|".join(re.escape(n) for n in (*private, *own))
    pattern = re.compile(r"(\w*)\.(" + names + r")\b")
    adapter = Path(sbi_internals.__file__).resolve()
    # The package and the benchmark studies, which run on the same sbi.
    files = [*PACKAGE.rglob("*.py"), *STUDIES.glob("*.py")]
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: {match.group(0)}"
        for path in files
        if path.resolve() != adapter
        for match in pattern.finditer(path.read_text())
        if not (match.group(1) == "self" and match.group(2) in own)
    ]
    assert not offenders, offenders
