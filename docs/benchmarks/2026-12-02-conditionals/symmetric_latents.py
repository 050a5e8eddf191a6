"""Experiment (not a package option): the directed mask with symmetric latent rows.

A latent variable also attends to the latent variables that attend to it (its
children in the faithful inverse), so that the denoiser of each latent sees the
noisy values of its inverse-children. Runs the all-conditional benchmark with
``simformer_directed`` patched this way; arguments are passed to ``sbi-allinone``::

    python docs/benchmarks/2026-12-02-conditionals/symmetric_latents.py bench \
        --target conditionals --tasks two_moons --methods simformer_directed \
        --budgets 1000 --masks-per-kind 3 --num-samples 2000 --classifier mlp,rf \
        --threads 1 --reference-cache docs/benchmarks/2026-12-02-conditionals/cache \
        --out docs/benchmarks/2026-12-02-conditionals/two_moons-directed-symmetric
"""

import sys

from torch import Tensor

from sbi_allinone.benchmarks.cli import main
from sbi_allinone.simformer import estimator, masks


def symmetric_latents(adjacency: Tensor, condition_masks: Tensor) -> Tensor:
    """``masks.directed_mask`` plus, between latents, the transposed edges."""
    mask = masks.directed_mask(adjacency, condition_masks)
    latent = ~condition_masks.bool()
    both = latent[:, :, None] & latent[:, None, :]
    return mask | (mask.transpose(1, 2) & both)


if __name__ == "__main__":
    estimator.directed_mask = symmetric_latents
    sys.exit(main(sys.argv[1:]))
