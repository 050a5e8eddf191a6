"""Methods for runner tests: NPE capped at a few epochs, and others that fail, are
interrupted, or sleep (for killing workers mid-cell)."""

import os
import time
import warnings

from sbi.inference import NPE

from sbi_allinone.benchmarks import TrainedPosterior, available_methods, register_method
from sbi_allinone.tracking import NullTracker

FAST = "test_npe_fast"


def train_fast(theta, x, prior, show_progress_bars=False):
    inference = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
    with warnings.catch_warnings():  # "not yet converged" is the point here
        warnings.simplefilter("ignore", UserWarning)
        # sbi runs max_num_epochs + 1 epochs: 5 here.
        inference.append_simulations(theta, x).train(max_num_epochs=4)
    return TrainedPosterior(inference.build_posterior(), epochs=inference.epoch)


def train_interrupted(theta, x, prior, show_progress_bars=False):
    raise KeyboardInterrupt  # what Ctrl-C or a killed job looks like to the runner


def train_broken(theta, x, prior, show_progress_bars=False):
    raise RuntimeError("this method always fails")


class PriorSampler:
    """A "posterior" that returns prior samples: no training, for plumbing tests."""

    def __init__(self, prior):
        self.prior = prior

    def sample(self, sample_shape, x=None, show_progress_bars=False):
        return self.prior.sample(sample_shape)


# Seconds a slow cell sleeps, and a file each start of one is logged to (if set), as
# "budget process-id".
SLOW_SECONDS = 1.5
STARTS_LOG = "SBI_ALLINONE_TEST_STARTS"


def train_slow_prior(theta, x, prior, show_progress_bars=False):
    log = os.environ.get(STARTS_LOG)
    if log:
        with open(log, "a") as f:
            f.write(f"{len(theta)} {os.getpid()}\n")
    time.sleep(SLOW_SECONDS)
    return TrainedPosterior(PriorSampler(prior), epochs=0)


# Budgets from which a stuck cell sleeps (for interrupting a sweep mid-cell).
STUCK_FROM = 60


def train_prior_or_stuck(theta, x, prior, show_progress_bars=False):
    """The prior at once below ``STUCK_FROM`` simulations, else a two-minute sleep;
    each start is logged as :func:`train_slow_prior` does."""
    log = os.environ.get(STARTS_LOG)
    if log:
        with open(log, "a") as f:
            f.write(f"{len(theta)} {os.getpid()}\n")
    if len(theta) >= STUCK_FROM:
        time.sleep(120)
    return TrainedPosterior(PriorSampler(prior), epochs=0)


def register_test_methods():
    if "test_slow_prior" not in available_methods():
        register_method("test_slow_prior", train_slow_prior, "prior, after a sleep")
    if "test_prior_or_stuck" not in available_methods():
        register_method("test_prior_or_stuck", train_prior_or_stuck, "prior, or stuck")
    if FAST not in available_methods():
        register_method(FAST, train_fast, "NPE, 5 epochs (tests only)")
        register_method("test_interrupted", train_interrupted, "raises Ctrl-C")
        register_method("test_broken", train_broken, "raises RuntimeError")
