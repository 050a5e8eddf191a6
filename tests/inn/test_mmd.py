"""The MMD estimator: unbiasedness, positivity, kernel, errors."""

import pytest
import torch

from sbi_allinone.inn.mmd import imq_kernel, mmd2


def _estimates(shift: float, unbiased: bool, repeats: int = 400, n: int = 20):
    a = torch.randn(repeats, n, 2)
    b = torch.randn(repeats, n, 2) + shift
    return torch.stack([mmd2(a[i], b[i], unbiased=unbiased) for i in range(repeats)])


def test_unbiased_estimator_averages_to_zero_for_equal_distributions():
    estimates = _estimates(0.0, unbiased=True)
    standard_error = estimates.std() / len(estimates) ** 0.5
    assert estimates.mean().abs() < 3 * standard_error
    # ... while the V-statistic is biased upwards at this sample size.
    biased = _estimates(0.0, unbiased=False)
    assert biased.mean() > 10 * biased.std() / len(biased) ** 0.5


def test_unbiased_estimator_matches_large_sample_value():
    torch.manual_seed(1)
    reference = mmd2(torch.randn(4000, 2), torch.randn(4000, 2) + 0.5)
    estimates = _estimates(0.5, unbiased=True)
    standard_error = estimates.std() / len(estimates) ** 0.5
    assert (estimates.mean() - reference).abs() < 3 * standard_error + 2e-3
    assert reference > 0.01


def test_mmd_grows_with_the_shift():
    a = torch.randn(500, 2)
    values = [mmd2(a, torch.randn(500, 2) + s) for s in (0.0, 0.5, 2.0)]
    assert values[0] < values[1] < values[2]


def test_imq_kernel_values():
    a = torch.zeros(1, 2)
    b = torch.tensor([[3.0, 4.0]])  # distance 5
    expected = sum(h**2 / (h**2 + 25.0) for h in (0.5, 1.0))
    torch.testing.assert_close(imq_kernel(a, b, (0.5, 1.0)), torch.tensor([[expected]]))
    torch.testing.assert_close(imq_kernel(a, a, (0.5, 1.0)), torch.tensor([[2.0]]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same dim"):
        mmd2(torch.randn(5, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(torch.randn(1, 2), torch.randn(5, 2))
