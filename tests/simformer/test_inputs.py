"""The Simformer's training-memory estimate and its warning."""

import pytest
import torch

from sbi_allinone import Simformer
from sbi_allinone.simformer import inputs
from sbi_allinone.simformer.inputs import training_memory, warn_if_too_large


def test_memory_grows_with_tokens_times_batch():
    assert training_memory(100, 200, {}) == training_memory(200, 100, {})
    assert training_memory(100, 400, {}) == 2 * training_memory(100, 200, {})
    wider = training_memory(100, 200, {"value_dim": 60})
    assert wider > training_memory(100, 200, {})
    # ~18 KB per token and example for the default network (measured 18.6).
    assert 15e3 < training_memory(100, 1, {}) / 100 < 20e3


@pytest.mark.filterwarnings("error::UserWarning")
def test_warning_names_the_memory_and_what_to_do(monkeypatch):
    monkeypatch.setattr(inputs, "device_memory", lambda device: 2**30)
    with pytest.warns(UserWarning, match=r"GiB.*training_batch_size"):
        warn_if_too_large(1000, 500, {}, "cpu")
    monkeypatch.setattr(inputs, "device_memory", lambda device: 2**40)
    warn_if_too_large(1000, 500, {}, "cpu")  # fits: no warning


@pytest.mark.filterwarnings("error::UserWarning")
def test_training_warns_before_it_starts(monkeypatch):
    monkeypatch.setattr(inputs, "device_memory", lambda device: 2**20)
    inference = Simformer(show_progress_bars=False)
    inference.append_simulations(torch.randn(50, 2), torch.randn(50, 30))
    with pytest.raises(UserWarning, match="32 tokens"):
        inference.train(num_steps=2)
