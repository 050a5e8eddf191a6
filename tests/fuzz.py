"""Shared pieces of the fuzz tests of malformed input."""

import torch


def random_wrong_shapes(width: int, count: int = 24) -> list[tuple[str, torch.Tensor]]:
    """Random tensors of rank 1 to 3 whose last dimension is not ``width``.

    Args:
        width: The width a valid input has.
        count: Shapes drawn (those that happen to end in ``width`` are dropped).

    Returns:
        ``(label, tensor)`` pairs, the same for every call (seed 0).
    """
    generator = torch.Generator().manual_seed(0)
    cases = []
    for _ in range(count):
        rank = int(torch.randint(1, 4, (1,), generator=generator))
        shape = tuple(torch.randint(1, 6, (rank,), generator=generator).tolist())
        if shape[-1] != width:
            cases.append((f"shape {shape}", torch.randn(shape, generator=generator)))
    return cases
