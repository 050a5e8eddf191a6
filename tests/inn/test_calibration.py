"""The paper's calibration error on exact, over- and under-confident posteriors."""

import pytest
import torch

from sbi_allinone.inn.calibration import calibration_error


def _samples(width: float, n_obs: int = 2000, n_samples: int = 400):
    """theta ~ N(0,1), x = theta + N(0,1): posterior N(x/2, 1/2), scaled by width."""
    theta = torch.randn(n_obs, 2)
    x = theta + torch.randn(n_obs, 2)
    samples = x / 2 + width * 0.5**0.5 * torch.randn(n_samples, n_obs, 2)
    return samples, theta


def test_exact_posterior_is_calibrated():
    result = calibration_error(*_samples(1.0))
    assert result.error < 0.015
    assert result.coverage.shape == (19, 2)


def test_overconfident_posterior_undercovers():
    result = calibration_error(*_samples(0.5))
    assert result.error > 0.1
    assert (result.coverage < result.levels.unsqueeze(-1)).all()


def test_underconfident_posterior_overcovers():
    result = calibration_error(*_samples(2.0))
    assert (result.coverage > result.levels.unsqueeze(-1)).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="posterior_samples"):
        calibration_error(torch.randn(10, 3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="levels"):
        calibration_error(torch.randn(10, 3, 2), torch.randn(3, 2), torch.tensor([1.0]))
