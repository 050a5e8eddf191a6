"""Schedule math: gamma, alpha and their derivatives; PR-preserving and reducing."""

import math

import pytest
import torch

from sbi_allinone.inflationary import InflationarySchedule

EIGENVALUES = torch.tensor([2.0, 0.7, 0.1], dtype=torch.float64)


@pytest.mark.parametrize(
    "schedule",
    [
        InflationarySchedule.preserving(EIGENVALUES),
        InflationarySchedule.reducing(EIGENVALUES, latent_dim=1, rho=2.0, t_max=7.0),
    ],
)
def test_derivatives_match_autograd(schedule):
    t = torch.linspace(0.0, schedule.t_max, 9, dtype=torch.float64).reshape(-1, 1)
    t.requires_grad_(True)
    gamma = schedule.gamma(t)
    for i in range(3):
        (grad,) = torch.autograd.grad(gamma[:, i].sum(), t, retain_graph=True)
        torch.testing.assert_close(grad, schedule.gamma_dot(t)[:, i : i + 1].detach())
    (grad,) = torch.autograd.grad(schedule.alpha(t).sum(), t)
    torch.testing.assert_close(grad, schedule.alpha_dot(t).detach())


def test_values_follow_the_paper():
    schedule = InflationarySchedule.preserving(EIGENVALUES, gamma0=5e-4, rho=1.0)
    t = torch.tensor([[3.0]], dtype=torch.float64)
    expected = 5e-4 * math.exp(3.0)
    torch.testing.assert_close(
        schedule.gamma(t), torch.full((1, 3), expected, dtype=torch.float64)
    )
    torch.testing.assert_close(
        schedule.alpha(t),
        torch.tensor([[1 / math.sqrt(2.0 + expected)]], dtype=torch.float64),
    )


def test_reducing_schedule_compresses_the_dropped_directions():
    schedule = InflationarySchedule.reducing(EIGENVALUES, latent_dim=1, gap=1.02)
    torch.testing.assert_close(
        schedule.g, torch.tensor([1.0, -0.02, -0.02], dtype=torch.float64)
    )
    shrink = schedule.compression()
    # Kept direction: O(1) latent variance; compressed: exp(-rho * gap * T / 2) or so.
    assert schedule.latent_variance()[0] == pytest.approx(1.0, rel=1e-3)
    assert shrink[1] < 10 * math.exp(-1.02 * 15 / 2) and shrink[2] < shrink[1] * 10
    preserving = InflationarySchedule.preserving(EIGENVALUES)
    # PR-P: every direction ends with the same latent variance (noise dominates).
    variance = preserving.latent_variance()
    torch.testing.assert_close(variance, variance[0].expand(3), rtol=2e-3, atol=0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="latent_dim"):
        InflationarySchedule.reducing(EIGENVALUES, latent_dim=3)
    with pytest.raises(ValueError, match="gap"):
        InflationarySchedule.reducing(EIGENVALUES, latent_dim=1, gap=0.0)
    with pytest.raises(ValueError, match="t_min < t_max"):
        InflationarySchedule.preserving(EIGENVALUES, t_max=0.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        InflationarySchedule(EIGENVALUES, torch.zeros(2))
