"""Dependency graphs, moralization and faithful inversion."""

import pytest
import torch

from sbi_allinone.simformer.masks import (
    adjacency_from_parents,
    check_dag,
    directed_mask,
    faithful_inversion,
    moralize,
    undirected_mask,
)

# The paper's Tree: t1 -> t2, t3; t2 -> x1, x2; t3 -> x3, x4 (nodes 0..6).
T1, T2, T3, X1, X2, X3, X4 = range(7)
TREE = {T2: [T1], T3: [T1], X1: [T2], X2: [T2], X3: [T3], X4: [T3]}


def _parents(matrix, node):
    return set(matrix[node].nonzero().flatten().tolist())


def test_adjacency_layout_row_child_column_parent():
    a = adjacency_from_parents(TREE, 7)
    assert a[T2, T1] and not a[T1, T2]
    assert a.sum() == 6


def test_moralization_joins_co_parents():
    # x <- t1, x <- t2 (a collider): moralizing must join t1 and t2.
    a = adjacency_from_parents({2: [0, 1]}, 3)
    moral = moralize(a)
    assert moral[0, 1] and moral[1, 0]
    assert (moral == moral.T).all() and not moral.diagonal().any()
    assert undirected_mask(a).diagonal().all()


def test_faithful_inversion_of_the_tree_posterior():
    a = adjacency_from_parents(TREE, 7)
    observed = torch.tensor([False] * 3 + [True] * 4)
    inverse = faithful_inversion(a, observed)
    assert _parents(inverse, T1) == {X1, X2, X3, X4}
    assert _parents(inverse, T2) == {T1, X1, X2}
    assert _parents(inverse, T3) == {T1, X3, X4}
    for x in (X1, X2, X3, X4):
        assert _parents(inverse, x) == set()
    check_dag(inverse)  # the inverse is itself acyclic


def test_faithful_inversion_of_the_likelihood_is_the_forward_model():
    a = adjacency_from_parents(TREE, 7)
    observed = torch.tensor([True] * 3 + [False] * 4)
    inverse = faithful_inversion(a, observed)
    assert torch.equal(inverse[3:], a[3:])


def test_faithful_inversion_of_a_collider_adds_the_moral_edge():
    # t1 -> x <- t2, x observed: t1 and t2 become dependent.
    a = adjacency_from_parents({2: [0, 1]}, 3)
    inverse = faithful_inversion(a, torch.tensor([False, False, True]))
    assert inverse[0, 1] ^ inverse[1, 0]
    assert inverse[0, 2] and inverse[1, 2]


def test_directed_masks_for_a_batch():
    a = adjacency_from_parents(TREE, 7)
    conditions = torch.tensor([[0] * 3 + [1] * 4, [1] * 3 + [0] * 4, [0] * 3 + [1] * 4])
    masks = directed_mask(a, conditions.bool())
    assert masks.shape == (3, 7, 7)
    assert torch.equal(masks[0], masks[2])
    assert masks.diagonal(dim1=1, dim2=2).all()


def test_conditioned_nodes_attend_to_their_parents():
    """Tree posterior: theta_1's only path to the noisy theta_2, theta_3 (its children
    in the forward model, not its parents in the inverse) runs through the
    conditioned x, which attend to their parents by default."""
    a = adjacency_from_parents(TREE, 7)
    posterior = torch.tensor([[False] * 3 + [True] * 4])
    mask = directed_mask(a, posterior)[0]
    plain = directed_mask(a, posterior, conditioned="self")[0]
    assert torch.equal(plain[3:], torch.eye(7, dtype=torch.bool)[3:])
    assert mask[3, 1] and mask[4, 1] and mask[5, 2] and mask[6, 2]
    two_layers = (mask.float() @ mask.float()) > 0
    assert two_layers[0, 1] and two_layers[0, 2]
    assert not ((plain.float() @ plain.float()) > 0)[0, 1]
    with pytest.raises(ValueError, match="`conditioned`"):
        directed_mask(a, posterior, conditioned="children")


def test_bad_graphs():
    with pytest.raises(ValueError, match="cycle: 0 -> 1 -> 0|cycle: 1 -> 0 -> 1"):
        adjacency_from_parents({0: [1], 1: [0]}, 2)
    with pytest.raises(ValueError, match="square"):
        check_dag(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for 3 variables"):
        check_dag(torch.zeros(2, 2), num_nodes=3)
    with pytest.raises(ValueError, match="self-loop at node 1"):
        check_dag(torch.tensor([[0, 0], [0, 1]]))
    with pytest.raises(ValueError, match="only 2 nodes"):
        adjacency_from_parents({1: [5]}, 2)


def _random_dag(n: int, generator: torch.Generator) -> torch.Tensor:
    # Edges only from lower to higher index (a DAG), in a random order of nodes.
    lower = torch.rand(n, n, generator=generator) < 0.25
    dag = torch.tril(lower, diagonal=-1)
    order = torch.randperm(n, generator=generator)
    return dag[order][:, order]


@pytest.mark.parametrize("n", [3, 7, 12, 20])
def test_batched_directed_masks_equal_the_reference_inversion(n):
    generator = torch.Generator().manual_seed(n)
    for _ in range(5):
        dag = _random_dag(n, generator)
        conditions = torch.rand(40, n, generator=generator) < 0.4
        plain = directed_mask(dag, conditions, conditioned="self")
        masks = directed_mask(dag, conditions)
        eye = torch.eye(n, dtype=torch.bool)
        for row, mask, condition in zip(plain, masks, conditions, strict=True):
            assert torch.equal(row, faithful_inversion(dag, condition) | eye)
            # Conditioned rows add their DAG parents; latent rows are the inverse.
            observed = condition[:, None]
            assert torch.equal(mask, row | (dag & observed))
            assert torch.equal(mask[~condition], row[~condition])
