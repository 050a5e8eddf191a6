"""Shared test set-up: every test starts from a fixed seed; parallel workers use one
thread each."""

import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, one thread per worker process (torch, BLAS, and the
    notebook kernels the tutorial tests start): workers that each spread over every
    core slow each other down more than parallelism gains."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
        threadpool_limits(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 -- sklearn (C2ST) draws from the global RNG


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module whose small batched ODE solves are slower
    with more (restored afterwards); use with ``pytest.mark.usefixtures``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
