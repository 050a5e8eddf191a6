"""The batched torch C2ST: its math, its statistic, and agreement with sbi's sklearn."""

import math

import pytest
import torch
from sbi.utils.metrics import c2st as sklearn_c2st

from sbi_allinone.benchmarks.c2st import SBIBM_SETTINGS, MLPSettings, c2st, c2st_batch
from sbi_allinone.benchmarks.c2st_mlp import (
    _adam_step,
    _Batch,
    _Classifiers,
    _Members,
    _step_sizes,
)


def _manual_network(params, inputs, dim, width):
    """The classifier written with autograd-friendly ops, for comparison."""
    count, batch = inputs.shape[:2]
    ones = inputs.new_ones(count, batch, 1)
    blocks = [(dim + 1, width), (width + 1, width), (width + 1, 1)]
    start, weights = 0, []
    for rows, columns in blocks:
        weights.append(
            params[:, start : start + rows * columns].view(-1, rows, columns)
        )
        start += rows * columns
    h1 = torch.cat([torch.relu(inputs @ weights[0]), ones], -1)
    h2 = torch.cat([torch.relu(h1 @ weights[1]), ones], -1)
    return h2 @ weights[2]


def test_gradients_equal_autograd_float64():
    count, batch, dim, width = 3, 7, 2, 5
    generator = torch.Generator().manual_seed(0)
    params = _Classifiers.initial(count, dim, width, generator, "cpu").double()
    inputs = torch.cat(
        [torch.randn(count, batch, dim), torch.ones(count, batch, 1)], -1
    ).double()
    labels = (torch.rand(count, batch, 1) > 0.5).double()
    row_weight = torch.rand(count, batch, 1).double()
    decay = torch.rand(count, 1).double()
    net = _Classifiers(params, dim, width)

    leaf = params.clone().requires_grad_()
    logits = _manual_network(leaf, inputs, dim, width)
    assert torch.allclose(net.forward(inputs)[-1], logits, atol=1e-12)
    errors = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels, reduction="none"
    )
    penalty = 0.5 * decay.squeeze(1) * (leaf * net.decay).square().sum(1)
    ((errors * row_weight).sum((1, 2)) + penalty).sum().backward()
    gradients = net.gradients(_Batch(inputs, labels, row_weight, net.penalty(decay)))
    assert torch.allclose(gradients, leaf.grad, atol=1e-12)
    # Only weights are penalized: dim*width + width*width + width of them.
    assert int(net.decay.sum()) == dim * width + width * width + width


def _members(params):
    count = len(params)
    empty = torch.zeros(count, 1)
    return _Members(
        params.clone(), torch.zeros_like(params), torch.zeros_like(params),
        torch.zeros(count, dtype=torch.long), empty, empty, empty, empty, empty,
        torch.arange(count), torch.zeros(count),
    )  # fmt: skip


def test_adam_is_sklearns_and_a_member_can_sit_out_a_step():
    params = torch.randn(3, 4, dtype=torch.float64)
    grads = [torch.randn(3, 4, dtype=torch.float64) for _ in range(3)]
    members = _members(params)
    sizes = _step_sizes(10, 1e-3).double()
    active = [None, torch.tensor([True, False, True]), None]
    for g, a in zip(grads, active, strict=True):
        _adam_step(members, g, sizes, a)

    # scikit-learn's form, member by member; member 1 skipped the second step.
    for member, used in ((0, (0, 1, 2)), (1, (0, 2)), (2, (0, 1, 2))):
        p, m, v = params[member].clone(), 0.0, 0.0
        for t, k in enumerate(used, start=1):
            m = 0.9 * m + 0.1 * grads[k][member]
            v = 0.999 * v + 0.001 * grads[k][member] ** 2
            size = 1e-3 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
            p = p - size * m / (v.sqrt() + 1e-8)
        # The step sizes are tabulated in float32.
        assert torch.allclose(members.params[member], p, rtol=1e-6, atol=1e-9)
    assert members.steps.tolist() == [3, 2, 3]


def test_statistic_is_the_bayes_accuracy_of_two_gaussians():
    # N(0, 1) against N(1, 1): the best classifier is right with probability Φ(1/2).
    X, Y = torch.randn(4000, 1), torch.randn(4000, 1) + 1.0
    expected = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))  # 0.6915
    assert abs(c2st(X, Y) - expected) < 0.02


def test_same_distribution_near_chance_and_disjoint_near_one():
    X, Y = torch.randn(2000, 3), torch.randn(2000, 3)
    assert 0.45 < c2st(X, Y) < 0.55
    assert c2st(X, torch.randn(2000, 3) + 4.0) > 0.99


def test_batched_pairs_score_as_alone():
    # 1 112 rows: folds of 223 and 222 leave 800 training rows to two members and
    # 801 to three, so two sit out the last step of every epoch (a batch of one).
    pairs = [
        (torch.randn(557, 3), torch.randn(555, 3) * 1.2 + 0.1),
        (torch.randn(601, 3), torch.randn(599, 3) * 1.2 + 0.3),
    ]
    assert c2st_batch(pairs) == [c2st(X, Y) for X, Y in pairs]


def test_seeded():
    X, Y = torch.randn(600, 2), torch.randn(600, 2) + 0.5
    assert c2st(X, Y, seed=3) == c2st(X, Y, seed=3)


def test_agrees_with_sbis_sklearn_mlp():
    # The validation in docs/benchmarks/c2st_validation.md covers 40 pairs at 10 000
    # samples; here one quick pair must land within the seed-to-seed spread.
    X = torch.randn(3000, 2)
    Y = torch.randn(3000, 2) * torch.tensor([1.0, 1.4]) + torch.tensor([0.3, 0.0])
    ours = c2st(X, Y)
    theirs = float(sklearn_c2st(X, Y, classifier="mlp"))
    assert abs(ours - theirs) < 0.02, (ours, theirs)


def test_sbibm_variant_agrees_with_sklearn_without_early_stopping():
    # sbibm.metrics.c2st: scikit-learn's defaults and max_iter=10000.
    X = torch.randn(2000, 2)
    Y = torch.randn(2000, 2) * torch.tensor([1.0, 1.4]) + torch.tensor([0.3, 0.0])
    sbibm_kwargs = {
        "activation": "relu", "hidden_layer_sizes": (20, 20), "max_iter": 10000,
        "solver": "adam",
    }  # fmt: skip
    theirs = float(sklearn_c2st(X, Y, classifier="mlp", classifier_kwargs=sbibm_kwargs))
    assert abs(c2st(X, Y, settings=SBIBM_SETTINGS) - theirs) < 0.02


def test_loss_is_sklearns_batch_loss_times_size():
    count, batch, dim, width = 2, 6, 3, 4
    generator = torch.Generator().manual_seed(0)
    params = _Classifiers.initial(count, dim, width, generator, "cpu").double()
    net = _Classifiers(params, dim, width)
    inputs = torch.cat(
        [torch.randn(count, batch, dim), torch.ones(count, batch, 1)], -1
    ).double()
    labels = (torch.rand(count, batch, 1) > 0.5).double()
    alpha = 1e-2
    loss = net.loss(_Batch(inputs, labels, 1.0 / batch, net.penalty(alpha / batch)))
    p = torch.sigmoid(_manual_network(params, inputs, dim, width))
    cross_entropy = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean((1, 2))
    squares = (params * net.decay).square().sum(1)
    expected = (cross_entropy + 0.5 * alpha * squares / batch) * batch
    assert torch.allclose(loss, expected, atol=1e-12)


def test_settings_change_the_test():
    X, Y = torch.randn(800, 2), torch.randn(800, 2) + 0.3
    one_epoch = MLPSettings(max_epochs=1)
    assert c2st(X, Y, settings=one_epoch) != c2st(X, Y)


@pytest.mark.parametrize(
    "pairs, message",
    [
        ([], "at least one"),
        ([(torch.randn(10, 2), torch.randn(10, 3))], r"shape \(num_samples, 2\)"),
        ([(torch.randn(10), torch.randn(10))], "shape"),
        ([(torch.randn(10, 2), torch.full((10, 2), math.nan))], "NaN"),
        ([(torch.randn(3, 2), torch.randn(3, 2))], "at least 10 samples"),
    ],
)
def test_bad_input(pairs, message):
    with pytest.raises(ValueError, match=message):
        c2st_batch(pairs)
