"""Shared test fixtures: every test starts from a fixed seed."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 -- sklearn (C2ST) draws from the global RNG
