r"""Attention masks of the Simformer from a dependency graph.

A dependency graph over the ``n`` variables (parameters first, then data) is a boolean
adjacency matrix ``A`` of shape ``(n, n)`` with ``A[i, j] = True`` when ``j`` is a
parent of ``i`` (row = child, column = parent), no self-loops and no cycles. An
attention mask ``M`` has the same layout: token ``i`` attends to token ``j`` when
``M[i, j]``; every token attends to itself.

- ``dense``: all ones.
- ``undirected``: the moral graph :math:`A \lor A^T \lor (A^T A > 0)`, i.e. edges in
  both directions plus edges between co-parents.
- ``directed``: the minimal faithful inverse of the DAG for the condition mask in use
  (NaMI, Webb et al. 2018): latent variables are eliminated from the moral graph in
  reverse topological order (ties: fewest fill-in edges, then lowest index); each
  eliminated latent gets its current neighbours as parents, and its neighbours are
  then joined pairwise. Conditioned variables are never eliminated; their outputs
  are not used, but latent tokens read their hidden states in later layers. By
  default (``conditioned="parents"``, as the Simformer's official code keeps
  conditioned rows of the graph unchanged) a conditioned variable attends to its
  parents in the DAG: this is the only path by which a latent variable sees the noisy
  values of its children in the inverse (e.g. a chain's ``theta_i`` those of
  ``theta_{i+1}`` through ``x_{i+1}``), which the denoiser needs although the clean
  posterior does not. ``conditioned="self"`` (the plain inverse) measured worse.

An ``l``-layer transformer can only enforce :math:`\mathbb{1}(M^l > 0)`; the mask
removes paths that the graph says are not needed, it does not make layers independent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "adjacency_from_parents",
    "check_dag",
    "directed_mask",
    "faithful_inversion",
    "moralize",
    "undirected_mask",
]


def adjacency_from_parents(
    parents: Mapping[int, Sequence[int]], num_nodes: int
) -> Tensor:
    """Build a DAG adjacency matrix from parent lists.

    Args:
        parents: ``{child: [parent, ...]}`` over node indices ``0..num_nodes-1``
            (parameters first, then data); nodes without parents may be left out.
        num_nodes: Number of variables.

    Returns:
        Boolean adjacency ``(num_nodes, num_nodes)``, row = child, column = parent.

    Example:
        >>> # linear Gaussian with 2 parameters: x_i <- theta_i
        >>> adjacency_from_parents({2: [0], 3: [1]}, 4).int().tolist()
        [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]
    """
    adjacency = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    for child, child_parents in parents.items():
        for parent in child_parents:
            if not (0 <= child < num_nodes and 0 <= parent < num_nodes):
                raise ValueError(
                    f"`parents` names node {max(child, parent)}, but there are only "
                    f"{num_nodes} nodes (indices 0..{num_nodes - 1})."
                )
            adjacency[child, parent] = True
    check_dag(adjacency)
    return adjacency


def check_dag(adjacency: Tensor, num_nodes: int | None = None) -> Tensor:
    """Validate a dependency graph and return it as a boolean tensor.

    Args:
        adjacency: ``(n, n)`` adjacency, row = child, column = parent.
        num_nodes: Expected ``n``, if known.

    Raises:
        ValueError: Wrong shape, self-loops, or a cycle (named in the message).
    """
    adjacency = torch.as_tensor(adjacency).bool()
    n = adjacency.shape[0] if adjacency.ndim == 2 else -1
    if adjacency.ndim != 2 or adjacency.shape[1] != n:
        raise ValueError(
            f"The dependency graph must be a square (n, n) adjacency, got shape "
            f"{tuple(adjacency.shape)}."
        )
    if num_nodes is not None and n != num_nodes:
        raise ValueError(
            f"The dependency graph must be ({num_nodes}, {num_nodes}) for "
            f"{num_nodes} variables (parameters then data), got ({n}, {n})."
        )
    if adjacency.diagonal().any():
        node = int(adjacency.diagonal().nonzero()[0])
        raise ValueError(f"The dependency graph has a self-loop at node {node}.")
    cycle = _find_cycle(adjacency)
    if cycle:
        path = " -> ".join(str(node) for node in cycle)
        raise ValueError(f"The dependency graph has a cycle: {path}.")
    return adjacency


def _find_cycle(adjacency: Tensor) -> list[int]:
    children = [
        adjacency[:, j].nonzero().flatten().tolist() for j in range(len(adjacency))
    ]
    state = [0] * len(adjacency)  # 0 new, 1 on the stack, 2 done
    stack: list[int] = []

    def visit(node: int) -> list[int]:
        state[node] = 1
        stack.append(node)
        for child in children[node]:
            if state[child] == 1:
                return [*stack[stack.index(child) :], child]
            if state[child] == 0 and (cycle := visit(child)):
                return cycle
        state[node] = 2
        stack.pop()
        return []

    for node in range(len(adjacency)):
        if state[node] == 0 and (cycle := visit(node)):
            return cycle
    return []


def moralize(adjacency: Tensor) -> Tensor:
    """Moral graph :math:`A \\lor A^T \\lor (A^T A > 0)`, without the diagonal."""
    a = adjacency.float()
    moral = adjacency | adjacency.T | ((a.T @ a) > 0)
    return moral & ~torch.eye(len(adjacency), dtype=torch.bool, device=adjacency.device)


def undirected_mask(adjacency: Tensor) -> Tensor:
    """Attention mask ``(n, n)`` of the moral graph, with self-attention."""
    eye = torch.eye(len(adjacency), dtype=torch.bool, device=adjacency.device)
    return moralize(adjacency) | eye


def faithful_inversion(adjacency: Tensor, condition_mask: Tensor) -> Tensor:
    """Minimal faithful inverse of a DAG given which variables are conditioned on.

    Args:
        adjacency: DAG ``(n, n)``, row = child, column = parent.
        condition_mask: ``(n,)`` booleans, ``True`` for conditioned (observed) nodes.

    Returns:
        Inverse DAG ``(n, n)`` (row = child, column = parent) over which
        :math:`p(\\text{latent} \\mid \\text{observed})` factorizes; conditioned
        nodes have no parents.
    """
    n = len(adjacency)
    observed = condition_mask.bool().tolist()
    neighbours = [set(row.nonzero().flatten().tolist()) for row in moralize(adjacency)]
    latent_children = [
        {c for c in adjacency[:, j].nonzero().flatten().tolist() if not observed[c]}
        for j in range(n)
    ]
    remaining = {i for i in range(n) if not observed[i]}
    inverse = torch.zeros(n, n, dtype=torch.bool, device=adjacency.device)
    while remaining:
        frontier = [z for z in remaining if not latent_children[z] & remaining]
        node = min(frontier, key=lambda z: (_fill_in(neighbours, z), z))
        inverse[node, sorted(neighbours[node])] = True
        for a in neighbours[node]:
            neighbours[a] |= neighbours[node] - {a}
            neighbours[a].discard(node)
        remaining.remove(node)
    return inverse


def _fill_in(neighbours: list[set[int]], node: int) -> int:
    around = sorted(neighbours[node])
    return sum(
        b not in neighbours[a] for i, a in enumerate(around) for b in around[i + 1 :]
    )


def directed_mask(
    adjacency: Tensor, condition_masks: Tensor, conditioned: str = "parents"
) -> Tensor:
    """Attention masks of the faithful inverse for a batch of condition masks.

    The elimination of :func:`faithful_inversion` runs for all rows at once, on
    ``(batch, n, n)`` neighbour tensors: ``n`` vectorized steps instead of a Python
    loop per distinct mask, so a training step's masks cost a few milliseconds at
    20 variables.

    Args:
        adjacency: DAG ``(n, n)``.
        condition_masks: ``(batch, n)`` booleans, ``True`` for conditioned nodes.
        conditioned: What conditioned nodes attend to besides themselves:
            ``"parents"`` (their parents in ``adjacency``) or ``"self"`` (nothing).

    Returns:
        ``(batch, n, n)`` attention masks with self-attention: the rows of latent
        nodes equal :func:`faithful_inversion`'s.
    """
    if conditioned not in ("parents", "self"):
        raise ValueError(
            f"`conditioned` must be 'parents' or 'self', got {conditioned!r}."
        )
    # Training batches repeat the joint, posterior and likelihood masks.
    unique, index = torch.unique(condition_masks.bool(), dim=0, return_inverse=True)
    adjacency = adjacency.bool().to(unique.device)
    masks = _inverse_masks(adjacency, unique)
    if conditioned == "parents":
        masks = masks | (adjacency & unique[:, :, None])
    return masks[index]


def _inverse_masks(adjacency: Tensor, observed: Tensor) -> Tensor:
    batch, n = observed.shape
    eye = torch.eye(n, dtype=torch.bool, device=observed.device)
    neighbours = moralize(adjacency).expand(batch, n, n).clone()
    remaining = ~observed
    inverse = torch.zeros(batch, n, n, dtype=torch.bool, device=observed.device)
    rows = torch.arange(batch, device=observed.device)
    for _ in range(n):
        active = remaining.any(dim=1)
        if not active.any():
            break
        node = _next_to_eliminate(adjacency, neighbours, remaining)
        around = neighbours[rows, node] & active[:, None]
        inverse[rows, node] |= around
        joined = around[:, :, None] & around[:, None, :] & ~eye
        neighbours |= joined
        neighbours[rows, :, node] &= ~active[:, None]
        remaining[rows, node] &= ~active
    return inverse | eye


def _next_to_eliminate(
    adjacency: Tensor, neighbours: Tensor, remaining: Tensor
) -> Tensor:
    """``(batch,)`` index of the next latent to eliminate in each row: no remaining
    latent child, then fewest fill-in edges, then lowest index."""
    n = remaining.shape[1]
    has_child = (adjacency.T.float() @ remaining.T.float()).T > 0
    frontier = remaining & ~has_child
    links = neighbours.float()
    missing_links = (~neighbours).float() - torch.eye(n, device=links.device)
    fill = (torch.bmm(links, missing_links) * links).sum(dim=2) / 2
    index = torch.arange(n, device=links.device, dtype=links.dtype)
    score = torch.where(frontier, fill * (n + 1) + index, torch.inf)
    return score.argmin(dim=1)
