"""The torch C2ST's classifiers: a stack of identical MLPs trained as one.

Every (sample-set pair, fold) is one member of a stack of identical networks whose
weights are ``(members, fan_in, fan_out)`` tensors, so one batched matrix product
trains them all (:class:`_Classifiers`, with the backward pass written out). Each
member sees only its own data, has its own Adam moments (Adam is element-wise,
:func:`_adam_step`) and its own row order (:func:`_epoch`); the test itself, with
its early stopping, is :mod:`sbi_allinone.benchmarks.c2st`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from sbi_allinone.benchmarks.c2st import MLPSettings


class _Batch(NamedTuple):
    """One training batch of every classifier, and how it is weighted.

    Args:
        inputs: ``(G, B, dim+1)``, the last column ones.
        labels: ``(G, B, 1)``, 0 or 1.
        row_weight: ``(G, B, 1)`` or a number: 1/batch size, 0 for padding.
        penalty: L2 coefficients ``(P,)`` or ``(G, P)``, from
            :meth:`_Classifiers.penalty`.
    """

    inputs: Tensor
    labels: Tensor
    row_weight: Tensor | float
    penalty: Tensor


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

    def loss(self, batch: _Batch) -> Tensor:
        """A batch's mean loss times its size, per classifier ``(G,)``: the sum of
        the cross-entropies plus ``½ Σ_j penalty_j·θ_j²`` times the batch size.
        Costs a forward pass of its own; only training without early stopping
        needs it."""
        inputs, labels, row_weight, penalty = batch
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

    def gradients(self, batch: _Batch) -> Tensor:
        """Gradient of ``Σ_i row_weight_i·BCE_i + ½ Σ_j penalty_j·θ_j²`` per
        classifier, ``(G, P)``, laid out as the parameters."""
        inputs, labels, row_weight, penalty = batch
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
        batch = _Batch(inputs[:, rows], targets[:, rows], row_weight, penalty)
        if total is not None:
            total += net.loss(batch)
        _adam_step(members, net.gradients(batch), step_sizes, active)
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
