"""Condition-mask sampler: the paper's five-way mixture, drawn per example."""

import pytest
import torch

from sbi_allinone.simformer.condition import (
    MASK_KINDS,
    condition_masks,
    mask_kind_cdf,
    sample_condition_masks,
)


def test_mixture_frequencies():
    generator = torch.Generator().manual_seed(0)
    masks = sample_condition_masks(50_000, 2, 3, generator)
    assert masks.shape == (50_000, 5) and masks.dtype == torch.bool
    posterior = (masks == torch.tensor([0, 0, 1, 1, 1]).bool()).all(1).float().mean()
    likelihood = (masks == torch.tensor([1, 1, 0, 0, 0]).bool()).all(1).float().mean()
    joint = (~masks).all(1).float().mean()
    # Bernoulli masks hit these patterns too: 0.2 + 0.2 * (0.3^3 0.7^2 + 0.7^3 0.3^2)
    bern = 0.3**3 * 0.7**2 + 0.7**3 * 0.3**2
    assert abs(posterior - (0.2 + 0.2 * bern)) < 0.01
    assert abs(likelihood - (0.2 + 0.2 * bern)) < 0.01
    # joint: its own 0.2, all-False Bernoulli draws, and all-True masks turned joint
    bern_joint = 0.7**5 + 0.3**5 + 0.3**5 + 0.7**5
    assert abs(joint - (0.2 + 0.2 * bern_joint)) < 0.01
    assert not masks.all(1).any()
    # conditioned fraction: (0 + 3/5 + 2/5 + 0.3 + 0.7) / 5 minus all-True removed
    expected = (0 + 0.6 + 0.4 + 0.3 + 0.7) / 5 - 0.2 * (0.3**5 + 0.7**5)
    assert abs(masks.float().mean() - expected) < 0.01


def test_bernoulli_masks_differ_within_a_batch():
    masks = sample_condition_masks(1000, 3, 7, torch.Generator().manual_seed(1))
    assert len(torch.unique(masks, dim=0)) > 100


def test_generator_reproducibility():
    a = sample_condition_masks(10, 2, 2, torch.Generator().manual_seed(5))
    b = sample_condition_masks(10, 2, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_mask_weights_reweight_the_kinds():
    cdf = mask_kind_cdf({"posterior": 3, "likelihood": 1})
    masks = sample_condition_masks(
        20_000, 2, 3, torch.Generator().manual_seed(2), None, cdf
    )
    posterior = (masks == torch.tensor([0, 0, 1, 1, 1]).bool()).all(1).float().mean()
    likelihood = (masks == torch.tensor([1, 1, 0, 0, 0]).bool()).all(1).float().mean()
    assert abs(posterior - 0.75) < 0.01 and abs(likelihood - 0.25) < 0.01


def test_uniform_weights_match_the_default_mixture():
    uniforms = torch.rand(5000, 6, generator=torch.Generator().manual_seed(3))
    cdf = mask_kind_cdf(dict.fromkeys(MASK_KINDS, 1.0))
    assert torch.equal(condition_masks(uniforms, 2, cdf), condition_masks(uniforms, 2))


@pytest.mark.parametrize(
    "weights", [{"posterior": -1.0}, {"joint": 0.0}, {"posteriors": 1.0}]
)
def test_bad_mask_weights_are_named(weights):
    with pytest.raises(ValueError, match="mask_weights"):
        mask_kind_cdf(weights)
