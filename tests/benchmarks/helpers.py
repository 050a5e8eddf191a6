"""A fast method for runner tests: NPE capped at a few epochs."""

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


def register_test_methods():
    if FAST not in available_methods():
        register_method(FAST, train_fast, "NPE, 5 epochs (tests only)")
        register_method("test_interrupted", train_interrupted, "raises Ctrl-C")
        register_method("test_broken", train_broken, "raises RuntimeError")
