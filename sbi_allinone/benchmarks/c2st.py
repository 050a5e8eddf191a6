"""sbibm's MLP classifier two-sample test (C2ST), all folds trained as one model.

The test is the one ``sbi.utils.metrics.c2st(X, Y, classifier="mlp")`` runs through
scikit-learn, which is what sbibm's published numbers use (with early stopping added by
sbi): both sample sets are z-scored with the first set's mean and standard deviation;
a classifier with two hidden ReLU layers of ``10·D`` units is trained with Adam
(learning rate 1e-3, batches of 200, L2 penalty 1e-4, Glorot-uniform initialization)
on four fifths of the pooled samples, stopping when the accuracy on a held-out tenth
of them has not improved for 50 epochs (at most 1 000 epochs) and keeping the best
state; the test statistic is the accuracy on the remaining fifth, averaged over the
five folds of a shuffled split.

Here every (sample-set pair, fold) is one member of a stack of identical networks
(:mod:`sbi_allinone.benchmarks.c2st_mlp`), so one batched matrix product trains them
all. Each member sees only its own data and has its own early stopping; members that
have stopped are dropped from the stack. Scoring the ten observations of a benchmark
cell together (:func:`c2st_batch`) trains 50 members at once. This module holds the
test: its settings, the pooled data, the folds, early stopping and the scores.

References:
    Lopez-Paz and Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
    https://arxiv.org/abs/1610.06545.
    Lueckmann et al., "Benchmarking simulation-based inference", AISTATS 2021,
    https://arxiv.org/abs/2101.04653.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from sbi_allinone.benchmarks.c2st_mlp import (
    _accuracy,
    _Classifiers,
    _epoch,
    _Members,
    _step_sizes,
)

__all__ = ["C2ST_SEED", "SBIBM_SETTINGS", "MLPSettings", "c2st", "c2st_batch"]

# The seed every C2ST of the runner uses (torch and sklearn classifiers alike); a
# study outside the runner passes it too, so that its scores are the runner's.
C2ST_SEED = 1


@dataclass(frozen=True)
class MLPSettings:
    """The classifier and its training, as scikit-learn's ``MLPClassifier`` defaults
    with sbi's C2ST arguments (``early_stopping=True, n_iter_no_change=50,
    max_iter=1000``). :data:`SBIBM_SETTINGS` are sbibm's own (no early stopping).

    Args:
        width_per_dim: Hidden units per layer per data dimension (sbibm: 10).
        learning_rate: Adam's step size.
        batch_size: Training batch size (capped at the training-set size).
        l2_penalty: scikit-learn's ``alpha``: ``alpha/2·‖W‖²`` divided by the batch
            size is added to each batch's mean loss.
        early_stopping: Stop on the accuracy of held-out rows and keep the best
            state (sbi's C2ST); else stop on the training loss and keep the last
            state (scikit-learn's default, sbibm's C2ST).
        validation_fraction: Share of each training fold held out for early
            stopping.
        patience: Epochs without an improvement by more than ``tol`` (of the
            validation accuracy, or of the training loss) before training stops.
        tol: Smallest improvement that counts.
        max_epochs: Upper bound on the number of epochs.
    """

    width_per_dim: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 200
    l2_penalty: float = 1e-4
    early_stopping: bool = True
    validation_fraction: float = 0.1
    patience: int = 50
    tol: float = 1e-4
    max_epochs: int = 1000


# sbibm's C2ST (sbibm.metrics.c2st), which scored sbibm's published numbers:
# scikit-learn's defaults with max_iter=10000, so no validation rows, and training
# stops once the training loss has not improved by 1e-4 for 10 epochs.
SBIBM_SETTINGS = MLPSettings(early_stopping=False, patience=10, max_epochs=10_000)


def c2st(
    X: Tensor,
    Y: Tensor,
    seed: int = C2ST_SEED,
    n_folds: int = 5,
    device: str | torch.device = "cpu",
    settings: MLPSettings = MLPSettings(),
) -> float:
    """Classifier two-sample test accuracy of ``X`` against ``Y`` (sbibm's MLP).

    0.5 means the classifier cannot tell the sets apart; 1.0 that it always can.

    Args:
        X: Samples of one distribution, ``(num_x, dim)``; its mean and standard
            deviation z-score both sets.
        Y: Samples of the other distribution, ``(num_y, dim)``.
        seed: Seed of the folds, splits, initialization and batch order.
        n_folds: Number of cross-validation folds.
        device: Where to train (``"cpu"``, ``"cuda"``, ...).
        settings: Classifier and training settings.

    Returns:
        Mean test accuracy over the folds.

    Example:
        >>> X, Y = torch.randn(500, 2), torch.randn(500, 2) + 3.0
        >>> c2st(X, Y) > 0.95
        True
    """
    return c2st_batch([(X, Y)], seed, n_folds, device, settings)[0]


def c2st_batch(
    pairs: Sequence[tuple[Tensor, Tensor]],
    seed: int = C2ST_SEED,
    n_folds: int = 5,
    device: str | torch.device = "cpu",
    settings: MLPSettings = MLPSettings(),
) -> list[float]:
    """:func:`c2st` of several pairs of sample sets at once, one stack of classifiers.

    Each pair gets exactly the test :func:`c2st` runs on it alone, with the same seed;
    training them together only shares the matrix products.

    Args:
        pairs: ``(X, Y)`` pairs; all sets of all pairs have the same ``dim``.
        seed: Seed of the folds, splits, initialization and batch order.
        n_folds: Number of cross-validation folds (at least 2).
        device: Where to train.
        settings: Classifier and training settings.

    Returns:
        One accuracy per pair, in order.
    """
    data, labels, starts, sizes = _pooled_data(pairs, device)
    if n_folds < 2:
        raise ValueError(f"`n_folds` must be at least 2, got {n_folds}.")
    if min(sizes) < 2 * n_folds:
        raise ValueError(
            f"Each pair needs at least {2 * n_folds} samples in all, got {min(sizes)}."
        )
    # One generator per pair, seeded alike: a pair's test does not depend on the
    # other pairs it is trained with.
    generators = [torch.Generator().manual_seed(seed) for _ in pairs]
    splits = [
        _fold_splits(start, size, n_folds, settings, generator)
        for start, size, generator in zip(starts, sizes, generators, strict=True)
    ]
    with torch.no_grad(), _threads_for(settings.width_per_dim * (data.shape[1] - 1)):
        net, best = _fit(splits, data, labels, settings, generators)
        splits = [split for pair in splits for split in pair]
        tests, test_size = _padded([split.test for split in splits], data.device)
        mask = torch.arange(tests.shape[1], device=data.device) < test_size[:, None]
        accuracy = _accuracy(net, data[tests], labels[tests], mask, best).cpu()
    return [
        float(accuracy[i * n_folds : (i + 1) * n_folds].mean())
        for i in range(len(pairs))
    ]


@contextmanager
def _threads_for(width: int):
    """One torch thread for networks up to 100 hidden units (restored afterwards),
    else the caller's.

    Up to 10 dimensions a second thread buys nothing on the CPU: on a quiet machine
    (``docs/benchmarks/c2st_speed.md``) one thread took 9.0 s against 13.5 s in 5
    dimensions and 27.4 s against 29.9 s over four pairs in 10; where other
    processes load the cores, the second thread's synchronization at every small
    operation cost 8× (147 s against 19 s in 2 dimensions).
    """
    before = torch.get_num_threads()
    if width <= 100:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pooled_data(
    pairs: Sequence[tuple[Tensor, Tensor]], device: str | torch.device
) -> tuple[Tensor, Tensor, list[int], list[int]]:
    """All pairs' z-scored samples in one ``(total, dim + 1)`` tensor (the last
    column ones), labels ``(total, 1)`` (0 for X, 1 for Y), and each pair's first row
    and number of rows."""
    if not pairs:
        raise ValueError("`pairs` must hold at least one (X, Y) pair.")
    chunks, labels, starts, sizes, start = [], [], [], [], 0
    dim = pairs[0][0].shape[-1] if pairs[0][0].ndim == 2 else None
    for i, (X, Y) in enumerate(pairs):
        for name, s in (("X", X), ("Y", Y)):
            if s.ndim != 2 or s.shape[1] != dim or len(s) == 0:
                raise ValueError(
                    f"`{name}` of pair {i} must have shape (num_samples, {dim}), got "
                    f"{tuple(s.shape)}."
                )
            if not torch.isfinite(s).all():
                raise ValueError(f"`{name}` of pair {i} has NaN or infinite entries.")
        X, Y = (
            X.detach().to(device, torch.float32),
            Y.detach().to(device, torch.float32),
        )
        mean, std = X.mean(0), X.std(0)
        std = torch.where(std < 1e-14, torch.ones_like(std), std)
        chunks += [(X - mean) / std, (Y - mean) / std]
        labels += [X.new_zeros(len(X), 1), X.new_ones(len(Y), 1)]
        starts.append(start)
        sizes.append(len(X) + len(Y))
        start += sizes[-1]
    data = torch.cat(chunks)
    # A column of ones: each layer's bias is the last row of its weight matrix.
    data = torch.cat([data, data.new_ones(len(data), 1)], 1)
    return data, torch.cat(labels), starts, sizes


@dataclass(frozen=True)
class _Split:
    """Row indices into the pooled data of one member: train, validation, test."""

    train: Tensor
    validation: Tensor
    test: Tensor


def _fold_splits(
    start: int,
    size: int,
    n_folds: int,
    settings: MLPSettings,
    generator: torch.Generator,
) -> list[_Split]:
    """A shuffled k-fold split of one pair's rows (the first ``size % n_folds`` folds
    one row larger, as scikit-learn's ``KFold``), each training fold split again into
    training and validation rows (scikit-learn rounds the validation share up)."""
    order = start + torch.randperm(size, generator=generator)
    fold_sizes = [size // n_folds + (k < size % n_folds) for k in range(n_folds)]
    folds = list(torch.split(order, fold_sizes))
    splits = []
    for k, test in enumerate(folds):
        rest = torch.cat(folds[:k] + folds[k + 1 :])
        rest = rest[torch.randperm(len(rest), generator=generator)]
        share = settings.validation_fraction if settings.early_stopping else 0.0
        num_validation = math.ceil(share * len(rest))
        splits.append(_Split(rest[num_validation:], rest[:num_validation], test))
    return splits


def _padded(indices: list[Tensor], device) -> tuple[Tensor, Tensor]:
    """Index lists of varying lengths as a ``(G, max_len)`` tensor padded with 0,
    and their lengths ``(G,)``."""
    sizes = torch.tensor([len(i) for i in indices])
    padded = torch.zeros(len(indices), int(sizes.max()), dtype=torch.long)
    for row, i in enumerate(indices):
        padded[row, : len(i)] = i
    return padded.to(device), sizes.to(device)


def _fit(
    splits: list[list[_Split]],
    data: Tensor,
    labels: Tensor,
    settings: MLPSettings,
    generators: list[torch.Generator],
) -> tuple[_Classifiers, Tensor]:
    """Train one classifier per split with its own early stopping.

    Args:
        splits: Each pair's splits, one per fold.
        data: Pooled inputs ``(total, dim + 1)``.
        labels: Pooled labels ``(total, 1)``.
        settings: Classifier and training settings.
        generators: Each pair's random numbers.

    Returns:
        The network and each member's final parameters ``(G, P)``, pair by pair:
        the best on the validation rows with early stopping, else the last.
    """
    dim = data.shape[1] - 1
    width = settings.width_per_dim * dim
    params = _initial_params(splits, generators, dim, width, data.device)
    members = _new_members(params, splits, data, labels)
    count, train_size = len(members.index), members.train_size
    batches = math.ceil(
        int(train_size.max()) / min(settings.batch_size, int(train_size.min()))
    )
    step_sizes = _step_sizes(
        settings.max_epochs * batches, settings.learning_rate, device=data.device
    )
    best = members.params.clone()
    best_score = torch.full((count,), -math.inf, device=data.device)
    stall = torch.zeros(count, dtype=torch.long, device=data.device)
    for _ in range(settings.max_epochs):
        net = _Classifiers(members.params, dim, width)
        loss = _epoch(net, members, data, labels, settings, generators, step_sizes)
        i = members.index
        if settings.early_stopping:
            score = _accuracy(
                net,
                members.validation_inputs,
                members.validation_labels,
                members.validation_mask,
            )
            improved = score > best_score[i]
            best[i[improved]] = members.params[improved]
        else:  # higher is better, as for accuracy; the last state is kept
            score = -loss
            best[i] = members.params
        # scikit-learn counts an epoch as stalled unless it beats the best by tol.
        stall[i] = torch.where(score < best_score[i] + settings.tol, stall[i] + 1, 0)
        best_score[i] = torch.maximum(score, best_score[i])
        running = stall[i] <= settings.patience
        if not running.any():
            break
        if not running.all():
            members = members.select(running)
    return _Classifiers(best, dim, width), best


def _initial_params(
    splits: list[list[_Split]],
    generators: list[torch.Generator],
    dim: int,
    width: int,
    device: str | torch.device,
) -> Tensor:
    """Freshly initialized parameters ``(G, P)`` of one member per split, pair by
    pair, each pair's from its own generator."""
    return torch.cat([
        _Classifiers.initial(len(folds), dim, width, generator, device)
        for folds, generator in zip(splits, generators, strict=True)
    ])  # fmt: skip


def _new_members(
    params: Tensor, splits: list[list[_Split]], data: Tensor, labels: Tensor
) -> _Members:
    """The members of ``params`` ``(G, P)``, one per split, pair by pair: zero Adam
    moments and their training and validation rows."""
    pair = torch.cat([torch.full((len(f),), i) for i, f in enumerate(splits)])
    splits = [split for folds in splits for split in folds]
    train, train_size = _padded([s.train for s in splits], data.device)
    validation, validation_size = _padded([s.validation for s in splits], data.device)
    positions = torch.arange(validation.shape[1], device=data.device)
    return _Members(
        params,
        torch.zeros_like(params),
        torch.zeros_like(params),
        torch.zeros(len(splits), dtype=torch.long, device=data.device),
        train,
        train_size,
        data[validation],
        labels[validation],
        positions < validation_size[:, None],
        torch.arange(len(splits), device=data.device),
        pair.to(data.device),
    )
