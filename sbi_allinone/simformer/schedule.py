"""The Simformer's default training schedule, chosen by measurement.

README, "Simformer: accuracy against training compute", has the table the defaults
come from. On two_moons at 1 000 simulations the previous (VE) version's 3 000 steps
of 1 000 examples reached MLP C2ST 0.613 in 951 s, these defaults 0.593 in 173 s
(observations 1-3, one thread on a shared machine).
:meth:`~sbi_allinone.simformer.trainer.Simformer.train` uses them when ``num_steps``
or ``training_batch_size`` is not given.
"""

from __future__ import annotations

__all__ = [
    "MIN_LEARNING_RATE",
    "TOKENS_PER_BATCH",
    "decay_start",
    "default_batch_size",
    "default_num_steps",
    "learning_rate_at",
]

#: Learning rate at the end of the linear decay (the paper's).
MIN_LEARNING_RATE = 1e-6

#: Tokens (examples x variables) per default training batch.
TOKENS_PER_BATCH = 4_000


def default_batch_size(num_nodes: int) -> int:
    """Default examples per step: about :data:`TOKENS_PER_BATCH` tokens, so that a
    step costs about the same for any number of variables; between 200 and 500.

    Example:
        >>> default_batch_size(4), default_batch_size(13), default_batch_size(20)
        (500, 307, 200)
    """
    return min(max(TOKENS_PER_BATCH // num_nodes, 200), 500)


def default_num_steps(num_simulations: int) -> int:
    """Default optimizer steps: ``clip(num_simulations / 2, 3000, 5000)``.

    Chosen by measurement: on two_moons at 1 000 simulations, 1 000 steps of 500
    gave MLP C2ST 0.690 and 3 000 steps 0.635 (observations 1-3).

    Example:
        >>> [default_num_steps(n) for n in (1_000, 8_000, 100_000)]
        [3000, 4000, 5000]
    """
    return min(max(num_simulations // 2, 3_000), 5_000)


def decay_start(num_epochs: int) -> float:
    """The epoch after which the learning rate decays: half of the run.

    Example:
        >>> decay_start(50)
        25.0
    """
    return num_epochs / 2


def learning_rate_at(epoch: int, base: float, num_epochs: int) -> float:
    """The paper's schedule: constant up to :func:`decay_start`, then linear
    decay to :data:`MIN_LEARNING_RATE` at the last epoch.

    Args:
        epoch: Current epoch, from 0.
        base: Initial learning rate.
        num_epochs: Epochs of the whole run.

    Returns:
        The learning rate of ``epoch``.

    Example:
        >>> learning_rate_at(0, 1e-3, 10), round(learning_rate_at(10, 1e-3, 10), 12)
        (0.001, 1e-06)
    """
    start = decay_start(num_epochs)
    decay = max(0.0, (epoch - start) / (num_epochs - start))
    return base + (MIN_LEARNING_RATE - base) * min(decay, 1.0)
