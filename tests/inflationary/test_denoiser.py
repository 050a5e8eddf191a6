"""Preconditioning: limits in t and unit-variance inputs and targets."""

import math

import pytest
import torch
from torch import Tensor

from sbi_allinone.diffusion import LogNormalNoise
from sbi_allinone.inflationary import (
    InflationarySchedule,
    builder,
    inflationary_flow_nn,
)
from sbi_allinone.inflationary.denoiser import (
    DENOISER_DEFAULTS,
    DenoiserResNet,
    PreconditionedDenoiser,
)

EIGENVALUES = torch.tensor([3.0, 1.0, 0.2])


def _denoiser():
    schedule = InflationarySchedule.preserving(EIGENVALUES)
    return PreconditionedDenoiser(DenoiserResNet(3, context_dim=2), schedule)


def test_small_noise_limit_is_the_identity():
    denoiser = _denoiser()
    c_in, c_skip, c_out = denoiser.coefficients(torch.zeros(1, 1))
    # At the schedule's default gamma(0) = 1e-6, D passes the input through and
    # the network barely contributes.
    torch.testing.assert_close(c_skip, torch.ones(1, 3), atol=3e-3, rtol=0)
    assert (c_out < 0.03).all()
    # The output layer starts at zero; give F an output of order one to check.
    torch.manual_seed(0)
    torch.nn.init.normal_(denoiser.net.output[1].weight, std=128**-0.5)
    denoiser.train()  # the live weights, not the average copied at construction
    x = torch.randn(8, 3)
    assert denoiser.net(x, torch.zeros(8, 1), torch.zeros(8, 2)).abs().mean() > 0.3
    assert (denoiser(x, torch.zeros(8, 1), torch.zeros(8, 2)) - x).abs().max() < 0.1


def test_large_noise_limit_ignores_the_input():
    denoiser = _denoiser()
    t = torch.full((1, 1), denoiser.schedule.t_max)
    c_in, c_skip, c_out = denoiser.coefficients(t)
    assert (c_skip < 1e-2).all()
    torch.testing.assert_close(
        c_out, EIGENVALUES.sqrt().unsqueeze(0), rtol=1e-2, atol=0
    )


def test_network_inputs_and_targets_have_unit_variance():
    denoiser = _denoiser()
    u = torch.randn(20000, 3) * EIGENVALUES.sqrt()
    for time in (2.0, 7.0, 12.0):
        t = torch.full((20000, 1), time)
        c_in, c_skip, c_out = denoiser.coefficients(t)
        noised = u + denoiser.schedule.gamma(t).sqrt() * torch.randn_like(u)
        torch.testing.assert_close(
            (c_in * noised).var(0), torch.ones(3), atol=0.05, rtol=0
        )
        target = (u - c_skip * noised) / c_out
        torch.testing.assert_close(target.var(0), torch.ones(3), atol=0.05, rtol=0)


def test_loss_is_the_weighted_denoising_error():
    denoiser = _denoiser()
    u, noise, context = torch.randn(16, 3), torch.randn(16, 3), torch.randn(16, 2)
    t = torch.rand(16, 1) * 15
    noised = u + denoiser.schedule.gamma(t).sqrt() * noise
    _, _, c_out = denoiser.coefficients(t)
    expected = ((denoiser(noised, t, context) - u) / c_out).square().sum(-1)
    torch.testing.assert_close(
        denoiser.loss(u, t, noise, context), expected, rtol=1e-4, atol=1e-4
    )


def test_weight_average_is_used_in_eval_mode_only():
    schedule = InflationarySchedule.preserving(EIGENVALUES)
    denoiser = PreconditionedDenoiser(DenoiserResNet(3, 2), schedule, ema_decay=0.9)
    start = [p.clone() for p in denoiser.net.parameters()]
    with torch.no_grad():
        for p in denoiser.net.parameters():
            p.add_(1.0)
    denoiser.update_average()
    # The first update copies the live weights, shifted here by one.
    averages = denoiser.average.module.parameters()
    for averaged, before in zip(averages, start, strict=True):
        torch.testing.assert_close(averaged, before + 1.0, atol=1e-6, rtol=0)
        assert not averaged.requires_grad
    assert denoiser.train().network is denoiser.net
    assert denoiser.eval().network is denoiser.average.module
    plain = PreconditionedDenoiser(DenoiserResNet(3, 2), schedule, ema_decay=None)
    plain.update_average()
    assert plain.eval().network is plain.net


def _shifted_average(decay: float, updates_before: int) -> PreconditionedDenoiser:
    """A denoiser whose live weights moved by +1 after ``updates_before`` average
    updates, followed by one more update."""
    schedule = InflationarySchedule.preserving(EIGENVALUES)
    denoiser = PreconditionedDenoiser(DenoiserResNet(3, 2), schedule, ema_decay=decay)
    for _ in range(updates_before):
        denoiser.update_average()
    with torch.no_grad():
        for p in denoiser.net.parameters():
            p.add_(1.0)
    denoiser.update_average()
    return denoiser


def _gap(denoiser: PreconditionedDenoiser) -> Tensor:
    """Live minus averaged weights of the first parameter."""
    return next(denoiser.net.parameters()) - next(denoiser.average.module.parameters())


def test_weight_average_warms_up():
    # After the first update (a copy), the next decays by (1 + 1) / (10 + 1), not 0.999.
    gap = _gap(_shifted_average(0.999, updates_before=1))
    torch.testing.assert_close(gap, torch.full_like(gap, 2 / 11))


def test_weight_average_lags_the_live_weights():
    # Past the warm-up, (1 + n) / (10 + n) > 0.99: one step at decay 0.99 moves the
    # average by 1 % of the shift.
    denoiser = _shifted_average(0.99, updates_before=1000)
    gap = _gap(denoiser)
    torch.testing.assert_close(gap, torch.full_like(gap, 0.99))
    assert int(denoiser.average.n_averaged) == 1001
    schedule = InflationarySchedule.preserving(EIGENVALUES)
    with pytest.raises(ValueError, match="ema_decay"):
        PreconditionedDenoiser(DenoiserResNet(3, 2), schedule, ema_decay=1.0)


def test_one_time_for_the_batch_gives_each_row_its_own_result():
    """The ODE solvers pass one (1, 1) time for the batch, embedded once and
    broadcast; each row must get what it gets with its own copy of the time."""
    torch.manual_seed(0)
    denoiser = _denoiser()
    net = denoiser.net
    torch.nn.init.normal_(net.output[1].weight, std=128**-0.5)
    x, context = torch.randn(6, 3), torch.randn(6, 2)
    one, each_row = torch.full((1, 1), 0.3), torch.full((6, 1), 0.3)
    torch.testing.assert_close(net(x, one, context), net(x, each_row, context))
    alone = torch.cat([net(x[i : i + 1], one, context[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(net(x, one, context), alone)
    denoiser.train()
    torch.testing.assert_close(
        denoiser(x, 4 * one, context), denoiser(x, 4 * each_row, context)
    )
    # Distinct times: each row its own.
    times = torch.linspace(0.1, 0.9, 6).reshape(6, 1)
    each = torch.cat(
        [net(x[i : i + 1], times[i : i + 1], context[i : i + 1]) for i in range(6)]
    )
    torch.testing.assert_close(net(x, times, context), each)


def test_network_without_autograd_computes_what_it_computes_with_it():
    # Without autograd the residual blocks write into their input and fold the
    # time into the bias; the result must be the differentiable path's.
    torch.manual_seed(0)
    net = DenoiserResNet(3, context_dim=2)
    torch.nn.init.normal_(net.output[1].weight, std=64**-0.5)
    x, context = torch.randn(50, 3), torch.randn(50, 2)
    for times in (torch.rand(50, 1), torch.full((1, 1), 0.3)):
        inputs = (x.clone(), times, context.clone())
        with torch.no_grad():
            fast = net(*inputs)
        torch.testing.assert_close(inputs[0], x)  # the caller's tensors untouched
        torch.testing.assert_close(fast, net(x, times, context))
        assert fast.abs().mean() > 0.1


def test_training_times_are_uniform_or_give_the_log_normal_noise_levels():
    uniforms = torch.rand(200_000, 1, generator=torch.Generator().manual_seed(0))
    uniform = _denoiser()
    schedule = uniform.schedule
    torch.testing.assert_close(
        uniform.training_times(uniforms),
        schedule.t_min + (schedule.t_max - schedule.t_min) * uniforms,
    )
    del uniform.__dict__["training_noise"]  # as in a model saved before the option
    assert uniform.training_noise is None
    log_normal = PreconditionedDenoiser(
        DenoiserResNet(3, context_dim=2), schedule, training_noise=LogNormalNoise()
    )
    times = log_normal.training_times(uniforms)
    assert times.min() >= schedule.t_min and times.max() <= schedule.t_max
    # Where no clipping applies, the base variance gamma0 exp(rho t) is sigma**2.
    log_sigma = 0.5 * (math.log(schedule.gamma0) + schedule.rho * times)
    inside = (times > schedule.t_min) & (times < schedule.t_max)
    assert inside.float().mean() > 0.99
    assert abs(log_sigma[inside].mean().item() - (-2.0)) < 0.02
    assert abs(log_sigma[inside].std().item() - 1.6) < 0.03


def test_training_noise_is_chosen_by_the_number_of_pairs_or_as_given(monkeypatch):
    with pytest.raises(ValueError, match="`training_noise` must be"):
        inflationary_flow_nn(training_noise="log-normal")
    theta, x = torch.randn(50, 2), torch.randn(50, 3)
    assert inflationary_flow_nn()(theta, x).net.training_noise is None
    monkeypatch.setattr(builder, "MANY_PAIRS", 50)
    assert isinstance(
        inflationary_flow_nn()(theta, x).net.training_noise, LogNormalNoise
    )
    uniform = inflationary_flow_nn(training_noise="log_uniform")(theta, x)
    assert uniform.net.training_noise is None
    given = LogNormalNoise(p_mean=-1.0)
    assert (
        inflationary_flow_nn(training_noise=given)(theta, x).net.training_noise is given
    )


def test_the_denoiser_is_narrower_with_few_pairs_unless_a_width_is_given(monkeypatch):
    theta, x = torch.randn(50, 2), torch.randn(50, 3)

    def width(**kwargs) -> int:
        return inflationary_flow_nn(**kwargs)(theta, x).net.net.input.out_features

    assert width() == builder.FEW_PAIRS_HIDDEN_FEATURES == 32
    assert width(hidden_features=48) == 48
    monkeypatch.setattr(builder, "MANY_PAIRS", 50)
    assert width() == DENOISER_DEFAULTS.hidden_features == 64
