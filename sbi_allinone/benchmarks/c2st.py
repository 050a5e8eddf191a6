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
whose weights are ``(members, fan_in, fan_out)`` tensors, so one batched matrix
product trains them all. Each member sees only its own data, has its own Adam moments
(Adam is element-wise) and its own early stopping; members that have stopped are
dropped from the stack. Scoring the ten observations of a benchmark cell together
(:func:`c2st_batch`) trains 50 members at once.

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
from dataclasses import dataclass, fields

import torch
from torch import Tensor

__all__ = ["SBIBM_SETTINGS", "MLPSettings", "c2st", "c2st_batch"]


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
    seed: int = 1,
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
    seed: int = 1,
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


class _Classifiers:
    """``G`` classifiers in one ``(G, P)`` parameter tensor, with gradients by hand.

    Each layer's bias is stored as the last row of its weight matrix and each layer's
    input carries a trailing column of ones, so one batched matrix product gives a
    layer's output and its weight-and-bias gradient. Writing the backward pass out
    saves autograd's bookkeeping, which would cost as much as the products here.

    Args:
        params: ``(G, P)`` parameters: ``[W1; b1]`` ``(dim+1, width)``,
            ``[W2; b2]`` ``(width+1, width)``, ``[w3; b3]`` ``(width+1,)``.
        dim: Input dimension.
        width: Hidden units per layer.
    """

    def __init__(self, params: Tensor, dim: int, width: int) -> None:
        self.params, self.dim, self.width = params, dim, width
        self.layers = self._views(params)
        self._buffers: dict[tuple, tuple[Tensor, Tensor]] = {}
        # scikit-learn penalizes the weights, not the biases (each block's last row).
        blocks = [(dim, width), (width, width), (width, 1)]
        self.decay = torch.cat(
            [torch.cat([torch.ones(i * o), torch.zeros(o)]) for i, o in blocks]
        ).to(params)

    @staticmethod
    def initial(
        count: int, dim: int, width: int, generator: torch.Generator, device
    ) -> Tensor:
        """Glorot-uniform weights and biases, as scikit-learn's for ReLU networks
        (bound ``sqrt(6 / (fan_in + fan_out))``, the output layer's too),
        ``(count, P)``."""
        chunks = []
        for fan_in, fan_out in ((dim, width), (width, width), (width, 1)):
            bound = math.sqrt(6 / (fan_in + fan_out))
            uniform = torch.rand(count, (fan_in + 1) * fan_out, generator=generator)
            chunks.append((2 * uniform - 1) * bound)
        return torch.cat(chunks, 1).to(device)

    def _views(self, flat: Tensor) -> list[Tensor]:
        """``(G, dim+1, width)``, ``(G, width+1, width)`` and ``(G, width+1, 1)``
        views of a ``(G, P)`` tensor laid out as the parameters."""
        shapes = [(self.dim + 1, self.width), (self.width + 1, self.width)]
        shapes.append((self.width + 1, 1))
        views, start = [], 0
        for rows, columns in shapes:
            views.append(
                flat[:, start : start + rows * columns].view(-1, rows, columns)
            )
            start += rows * columns
        return views

    def forward(self, inputs: Tensor, params: Tensor | None = None) -> list[Tensor]:
        """Hidden activations (each with its column of ones) and logits.

        Args:
            inputs: ``(G, B, dim+1)``, the last column ones.
            params: Parameters to use instead of the live ones.

        Returns:
            ``h1`` and ``h2`` ``(G, B, width+1)``, logits ``(G, B, 1)``.
        """
        first, second, third = self.layers if params is None else self._views(params)
        shape = (*inputs.shape[:2], self.width + 1)
        if shape not in self._buffers:  # their last columns stay ones
            self._buffers[shape] = (inputs.new_ones(shape), inputs.new_ones(shape))
        h1, h2 = self._buffers[shape]
        torch.clamp_min(torch.bmm(inputs, first), 0, out=h1[..., :-1])
        torch.clamp_min(torch.bmm(h1, second), 0, out=h2[..., :-1])
        # One output unit: a product and a sum beat a matrix product with one column.
        logits = (h2 * third.mT).sum(-1, keepdim=True)
        return [h1, h2, logits]

    def penalty(self, l2: Tensor | float) -> Tensor:
        """Per-parameter L2 coefficients: ``l2`` on weights, 0 on biases.

        Args:
            l2: A number, or one per classifier ``(G, 1)``.

        Returns:
            ``(P,)`` or ``(G, P)``.
        """
        return self.decay * l2

    def loss(
        self,
        inputs: Tensor,
        labels: Tensor,
        row_weight: Tensor | float,
        penalty: Tensor,
    ) -> Tensor:
        """A batch's mean loss times its size, per classifier ``(G,)``: the sum of
        the cross-entropies plus ``½ Σ_j penalty_j·θ_j²`` times the batch size
        (arguments as :meth:`gradients`). Costs a forward pass of its own; only
        training without early stopping needs it."""
        logits = self.forward(inputs)[-1]
        errors = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels, reduction="none"
        )
        if isinstance(row_weight, Tensor):
            errors = errors * (row_weight > 0)
            size = (row_weight > 0).sum((1, 2))
        else:
            size = inputs.shape[1]
        squares = (penalty * self.params.square()).sum(-1)
        return errors.sum((1, 2)) + 0.5 * squares * size

    def gradients(
        self,
        inputs: Tensor,
        labels: Tensor,
        row_weight: Tensor | float,
        penalty: Tensor,
    ) -> Tensor:
        """Gradient of ``Σ_i row_weight_i·BCE_i + ½ Σ_j penalty_j·θ_j²`` per
        classifier.

        Args:
            inputs: ``(G, B, dim+1)``, the last column ones.
            labels: ``(G, B, 1)``, 0 or 1.
            row_weight: ``(G, B, 1)`` or a number: 1/batch size, 0 for padding.
            penalty: ``(P,)`` or ``(G, P)``, from :meth:`penalty`.

        Returns:
            ``(G, P)``, laid out as the parameters.
        """
        _, second, third = self.layers
        h1, h2, logits = self.forward(inputs)
        d3 = torch.sigmoid(logits).sub_(labels).mul_(row_weight)
        d2 = torch.ops.aten.threshold_backward(d3 * third[:, :-1].mT, h2[..., :-1], 0)
        d1 = torch.bmm(d2, second[:, :-1].mT)
        d1 = torch.ops.aten.threshold_backward(d1, h1[..., :-1], 0)
        flat = torch.empty_like(self.params)
        grad1, grad2, grad3 = self._views(flat)
        torch.bmm(inputs.mT, d1, out=grad1)
        torch.bmm(h1.mT, d2, out=grad2)
        torch.sum(h2 * d3, 1, out=grad3.squeeze(-1))
        return flat.addcmul_(self.params, penalty)


@dataclass
class _Members:
    """The classifiers still training: parameters, Adam moments, and each member's
    rows (training rows padded with row 0 beyond ``train_size``)."""

    params: Tensor  # (G, P)
    first: Tensor  # Adam's moments, (G, P)
    second: Tensor
    steps: Tensor  # Adam steps per member, (G,)
    train: Tensor  # (G, max rows)
    train_size: Tensor  # (G,)
    validation_inputs: Tensor  # (G, max rows, dim + 1), padded
    validation_labels: Tensor  # (G, max rows, 1)
    validation_mask: Tensor  # (G, max rows), false for padding
    index: Tensor  # each member's position among all members
    pair: Tensor  # the pair each member tests

    def select(self, keep: Tensor) -> _Members:
        """The members where ``keep`` ``(G,)`` is true."""
        return _Members(*(getattr(self, f.name)[keep] for f in fields(self)))


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
    params = torch.cat([
        _Classifiers.initial(len(folds), dim, width, generator, data.device)
        for folds, generator in zip(splits, generators, strict=True)
    ])  # fmt: skip
    pair = torch.cat([torch.full((len(f),), i) for i, f in enumerate(splits)])
    splits = [split for folds in splits for split in folds]
    train, train_size = _padded([s.train for s in splits], data.device)
    validation, validation_size = _padded([s.validation for s in splits], data.device)
    positions = torch.arange(validation.shape[1], device=data.device)
    members = _Members(
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
    batches = math.ceil(
        int(train_size.max()) / min(settings.batch_size, int(train_size.min()))
    )
    step_sizes = _step_sizes(
        settings.max_epochs * batches, settings.learning_rate, device=data.device
    )
    best = params.clone()
    best_score = torch.full((len(splits),), -math.inf, device=data.device)
    stall = torch.zeros(len(splits), dtype=torch.long, device=data.device)
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


def _epoch(
    net: _Classifiers,
    members: _Members,
    data: Tensor,
    labels: Tensor,
    settings: MLPSettings,
    generators: list[torch.Generator],
    step_sizes: Tensor,
) -> Tensor | None:
    """One pass of Adam over each member's training rows in a fresh random order.

    Returns:
        Without early stopping, each member's training loss over the pass ``(G,)``,
        as scikit-learn computes it (each batch's mean loss before its step,
        weighted by the batch's size); else ``None``.
    """
    count, length = members.train.shape
    positions = torch.arange(length, device=data.device)
    keys = torch.full((count, length), 2.0)
    for i in members.pair.unique().tolist():
        mine = (members.pair == i).cpu()
        longest = int(members.train_size[mine].max())
        keys[mine, :longest] = torch.rand(
            int(mine.sum()), longest, generator=generators[i]
        )
    # Padding sorts last, so each member's real rows fill its first batches.
    keys = torch.where(
        positions < members.train_size[:, None], keys.to(data.device), 2.0
    )
    order = torch.gather(members.train, 1, keys.argsort(dim=1))
    inputs, targets = data[order], labels[order]
    shortest = int(members.train_size.min())
    size = min(settings.batch_size, shortest)
    full_penalty = net.penalty(settings.l2_penalty / size)
    total = None if settings.early_stopping else data.new_zeros(len(members.index))
    for first in range(0, length, size):
        rows = slice(first, first + size)
        if first + size <= shortest:
            row_weight, penalty, active = 1.0 / size, full_penalty, None
        else:  # the last batches, where members' row counts differ
            valid = positions[rows] < members.train_size[:, None]
            counts = valid.sum(1, keepdim=True).clamp(min=1)
            row_weight = (valid / counts).unsqueeze(-1)
            penalty = net.penalty(settings.l2_penalty / counts)
            # A member with no rows left sits this step out.
            active = None if bool(valid[:, 0].all()) else valid[:, 0]
        if total is not None:
            total += net.loss(inputs[:, rows], targets[:, rows], row_weight, penalty)
        gradients = net.gradients(
            inputs[:, rows], targets[:, rows], row_weight, penalty
        )
        _adam_step(members, gradients, step_sizes, active)
    return None if total is None else total / members.train_size


def _adam_step(
    members: _Members,
    gradients: Tensor,
    step_sizes: Tensor,
    active: Tensor | None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """One Adam step (Kingma and Ba, 2015) in scikit-learn's form, for the members
    where ``active`` is true (all if ``None``); torch's ``Adam`` cannot leave out part
    of a tensor, which a member whose rows ran out before the last batch needs.

    Args:
        members: The classifiers, with their moments and step counts.
        gradients: ``(G, P)``.
        step_sizes: :func:`_step_sizes`.
        active: ``(G,)`` booleans, or ``None``.
        betas: Decay rates of the moments.
        eps: Added to the root of the second moment.
    """
    beta1, beta2 = betas
    if active is None:
        members.steps += 1
        mix1, mix2 = 1 - beta1, 1 - beta2
        size = step_sizes[members.steps].unsqueeze(1)
    else:
        members.steps += active
        on = active.unsqueeze(1).to(gradients.dtype)
        mix1, mix2 = (1 - beta1) * on, (1 - beta2) * on
        size = step_sizes[members.steps].unsqueeze(1) * on
    # The same operations either way, so that a member's numbers do not depend on
    # the members trained beside it.
    members.first.lerp_(gradients, mix1)
    members.second.lerp_(gradients.square(), mix2)
    denominator = members.second.sqrt().add_(eps)
    members.params.addcdiv_(members.first * size, denominator, value=-1)


def _step_sizes(
    steps: int,
    learning_rate: float,
    betas: tuple[float, float] = (0.9, 0.999),
    device: str | torch.device = "cpu",
) -> Tensor:
    """Adam's step size after ``t`` steps, ``lr·√(1 − β2ᵗ)/(1 − β1ᵗ)`` (scikit-learn's
    bias corrections), for ``t = 0, …, steps`` (entry 0 unused)."""
    t = torch.arange(steps + 1, dtype=torch.float64).clamp(min=1)
    beta1, beta2 = betas
    sizes = learning_rate * (1 - beta2**t).sqrt() / (1 - beta1**t)
    return sizes.to(device, torch.float32)


def _accuracy(
    net: _Classifiers,
    inputs: Tensor,
    labels: Tensor,
    mask: Tensor,
    params: Tensor | None = None,
) -> Tensor:
    """Each member's accuracy on its rows where ``mask`` is true, ``(G,)``.

    Args:
        net: The classifiers.
        inputs: ``(G, B, dim + 1)``, the last column ones.
        labels: ``(G, B, 1)``.
        mask: ``(G, B)``, false for padding.
        params: Parameters to use instead of the live ones.
    """
    logits = net.forward(inputs, params)[-1]
    correct = ((logits > 0) == labels.bool()).squeeze(-1)
    return (correct & mask).sum(1) / mask.sum(1)
