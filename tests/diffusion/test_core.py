"""The shared diffusion core: preconditioning, noise levels, draws, ODE, sampler."""

import math

import pytest
import torch

from sbi_allinone.diffusion import (
    FourierEmbedding,
    LogNormalNoise,
    VENoise,
    VPNoise,
    edm_grid,
    edm_preconditioning,
    field_and_divergence,
    fixed_draws,
    gaussian_log_prob,
    heun,
    integrate_adaptive,
    integrate_with_divergence,
    log_grid,
    make_noise,
    multistep,
    rademacher,
    sample_stochastic,
    update_weight_average,
    weight_average,
)

# A 2-D Gaussian "data" distribution N(MEAN, COV) and its exact denoiser.
MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)


def exact_denoiser(x, sigma):
    """E[x0 | x0 + sigma eps = x] for x0 ~ N(MEAN, COV); sigma (batch, 1)."""
    noised = COV + sigma[..., None] ** 2 * torch.eye(2, dtype=COV.dtype)
    residual = (x - MEAN).unsqueeze(-1)
    return MEAN + (COV @ torch.linalg.solve(noised, residual)).squeeze(-1)


def ode_field(sigma, x):
    return (x - exact_denoiser(x, sigma.expand(x.shape[0], 1))) / sigma


def test_preconditioning_identities():
    sigma2 = torch.tensor([1e-4, 0.3, 4.0, 6400.0], dtype=torch.float64)
    data = torch.tensor([0.5, 1.0, 2.0, 1.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma2, data)
    # Unit-variance input: c_in^2 (sigma_d^2 + sigma^2) = 1.
    assert torch.allclose(c_in**2 * (data + sigma2), torch.ones(4, dtype=torch.float64))
    # Unit-variance target: (c_skip - 1)^2 sigma_d^2 + c_skip^2 sigma^2 = c_out^2.
    target = (c_skip - 1) ** 2 * data + c_skip**2 * sigma2
    assert torch.allclose(target, c_out**2)
    assert torch.allclose(c_noise, 0.25 * sigma2.sqrt().log())
    # The exact denoiser of N(0, sigma_d^2) is c_skip x: F = 0 is optimal.
    assert torch.allclose(c_skip, data / (data + sigma2))


@pytest.mark.parametrize("noise", [LogNormalNoise(), VENoise(), VPNoise()], ids=repr)
def test_noise_levels(noise):
    sigma = noise.sample((20_000,), torch.Generator().manual_seed(0))
    assert (sigma > 0).all()
    assert noise.weight(sigma).shape == sigma.shape
    if isinstance(noise, LogNormalNoise):
        assert (
            abs(sigma.log().mean() + 2.0) < 0.04 and abs(sigma.log().std() - 1.6) < 0.04
        )
        assert torch.equal(noise.weight(sigma), torch.ones_like(sigma))
    else:
        assert (
            noise.sigma_min <= sigma.min() and sigma.max() <= noise.sigma_max * 1.0001
        )
        # lambda = 1/sigma^2 on |D - x0|^2 is w = c_out^2 / sigma^2 = 1/(1+sigma^2).
        assert torch.allclose(noise.weight(sigma), 1 / (1 + sigma**2))
    u = torch.tensor([0.1, 0.5, 0.9])
    assert (noise.from_uniform(u).diff() > 0).all()  # monotone inverse CDF


def test_vp_noise_levels_match_the_vp_sde():
    # sigma(t) = sqrt(1 - m^2) / m with m = exp(-B(t)/2): the VP marginal, scaled.
    noise = VPNoise()
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    integral = 0.01 * t + 0.5 * (10 - 0.01) * t**2
    m = torch.exp(-0.5 * integral)
    assert torch.allclose(noise._sigma(t), torch.sqrt(1 - m**2) / m)


def test_make_noise_and_bad_arguments():
    assert isinstance(make_noise("edm"), LogNormalNoise)
    assert isinstance(make_noise("vp"), VPNoise)
    with pytest.raises(ValueError, match="`sde` must be 'edm'"):
        make_noise("cosine")
    with pytest.raises(ValueError, match="sigma_min"):
        LogNormalNoise(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="steps"):
        edm_grid(0.002, 80.0, 0)


def test_edm_grid():
    grid = edm_grid(0.002, 80.0, 10)
    assert (
        grid.shape == (11,)
        and grid[0] == pytest.approx(80)
        and grid[-1] == pytest.approx(0.002)
    )
    assert (grid.diff() < 0).all()
    uniform = edm_grid(1.0, 3.0, 4, rho=1.0)
    assert torch.allclose(
        uniform, torch.tensor([3.0, 2.5, 2.0, 1.5, 1.0], dtype=torch.float64)
    )


def test_log_grid():
    grid = log_grid(80.0, 0.002, 20, first_step_to=5.0)
    assert grid.shape == (20,) and grid.dtype == torch.float64
    assert grid[0] == pytest.approx(80) and grid[1] == pytest.approx(5)
    assert grid[-1] == pytest.approx(0.002) and (grid.diff() < 0).all()
    # Below the first step the levels are uniform in log noise.
    assert torch.allclose(grid[1:].log().diff(), grid[1:].log().diff()[0].expand(18))
    # One long step per 16 levels; none without first_step_to.
    assert (log_grid(80.0, 0.002, 40, 5.0) >= 5 - 1e-9).sum() == 3
    assert torch.allclose(
        log_grid(100.0, 0.01, 5), torch.logspace(2, -2, 5, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="levels"):
        log_grid(80.0, 0.002, 1)
    with pytest.raises(ValueError, match="sigma_min"):
        log_grid(0.002, 80.0, 8)
    with pytest.raises(ValueError, match="first_step_to"):
        log_grid(80.0, 0.002, 8, first_step_to=0.001)


def mixture_denoiser(x, sigma, means=(-0.3, 0.3), scale=0.05):
    """The exact denoiser of an equal mixture of N(mean, scale^2), per dimension."""
    means = torch.tensor(means, dtype=x.dtype)
    variance = (scale**2 + sigma**2).unsqueeze(-1)
    residual = x.unsqueeze(-1) - means
    weights = (-(residual**2) / (2 * variance)).softmax(-1)
    return (weights * (means + scale**2 / variance * residual)).sum(-1)


def test_log_grid_beats_the_edm_grid_per_network_call():
    # A narrow bimodal target (the hard case for few steps); the error is against
    # the same flow at 3 000 calls, where both grids agree to 1e-6.
    torch.manual_seed(4)
    n = 2_000
    start = torch.randn(n, 1, dtype=torch.float64) * math.sqrt(1 + 80.0**2)
    start = start + mixture_denoiser(start, torch.full((n, 1), 80.0, dtype=start.dtype))
    fine = multistep(mixture_denoiser, start, log_grid(80.0, 0.002, 3000, 5.0))
    assert (
        multistep(mixture_denoiser, start, edm_grid(0.002, 80.0, 2999)) - fine
    ).abs().max() < 1e-4

    def error(grid):
        return (multistep(mixture_denoiser, start, grid) - fine).abs().mean()

    edm_32 = error(edm_grid(0.002, 80.0, 31))
    assert error(log_grid(80.0, 0.002, 24, first_step_to=5.0)) < 0.7 * edm_32
    assert error(log_grid(80.0, 0.002, 20, first_step_to=5.0)) < edm_32


def test_fixed_draws_are_functions_of_the_rows():
    rows = torch.randn(500, 3)
    uniforms, normals = fixed_draws(rows, 2, 4)
    again_u, again_n = fixed_draws(rows.flip(0), 2, 4)
    assert torch.equal(again_u.flip(0), uniforms) and torch.equal(
        again_n.flip(0), normals
    )
    other_u, _ = fixed_draws(rows, 2, 4, draw=1)
    assert not torch.equal(other_u, uniforms)
    assert uniforms.shape == (500, 2) and normals.shape == (500, 4)
    assert ((uniforms > 0) & (uniforms < 1)).all()
    assert abs(normals.mean()) < 0.1 and abs(normals.std() - 1) < 0.1


def test_fourier_embedding():
    geometric = FourierEmbedding(8, "geometric")
    c = torch.tensor([[0.0], [0.5]])
    out = geometric(c)
    assert out.shape == (2, 8)
    assert torch.allclose(out[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(geometric.frequencies, math.pi * 2.0 ** torch.arange(4) / 2)
    with pytest.raises(ValueError, match="even"):
        FourierEmbedding(5)


def test_weight_average_warms_up_then_decays():
    module = torch.nn.Linear(1, 1, bias=False)
    average = weight_average(module, decay=0.9)
    with torch.no_grad():
        module.weight.fill_(1.0)
    average.update_parameters(module)  # the first update copies
    assert average.module.weight.item() == pytest.approx(1.0)
    with torch.no_grad():
        module.weight.fill_(3.0)
    average.update_parameters(module)  # n = 1: decay min(0.9, 2/11)
    assert average.module.weight.item() == pytest.approx(1.0 + 2.0 * (1 - 2 / 11))
    assert not any(p.requires_grad for p in average.module.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        weight_average(module, 1.0)


def test_divergence_against_autograd():
    torch.manual_seed(0)
    weight = torch.randn(3, 3, dtype=torch.float64)

    def field(t, x):
        return torch.tanh(x @ weight) * t

    x, t = (
        torch.randn(5, 3, dtype=torch.float64),
        torch.tensor(0.7, dtype=torch.float64),
    )
    jacobians = torch.stack(
        [torch.autograd.functional.jacobian(lambda r: field(t, r), row) for row in x]
    )
    trace = jacobians.diagonal(dim1=-2, dim2=-1).sum(-1)
    f, exact = field_and_divergence(field, t, x)
    assert torch.allclose(f, field(t, x)) and torch.allclose(exact, trace)
    _, partial = field_and_divergence(field, t, x, dims=[0, 2])
    assert torch.allclose(partial, trace - jacobians[:, 1, 1])
    # Hutchinson is unbiased: the mean over many probes approaches the trace.
    many = x.repeat(4000, 1)
    _, estimate = field_and_divergence(field, t, many, probe=rademacher(many))
    assert torch.allclose(estimate.reshape(4000, 5).mean(0), trace, atol=0.05)


def test_heun_and_adaptive_solve_a_linear_ode():
    x0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)

    def field(t, x):
        return -x

    exact = x0 * math.exp(-1.0)
    times = torch.linspace(0, 1, 33, dtype=torch.float64)
    assert torch.allclose(heun(field, x0, times), exact, atol=5e-4)
    assert torch.allclose(
        integrate_adaptive(field, x0, 0.0, 1.0, 1e-8, 1e-8), exact, atol=1e-6
    )
    _, integral = integrate_with_divergence(field, x0, times)
    assert integral.item() == pytest.approx(-2.0, abs=1e-6)
    _, integral = integrate_with_divergence(field, x0, adaptive=(0.0, 1.0, 1e-8, 1e-8))
    assert integral.item() == pytest.approx(-2.0, abs=1e-6)


def test_exact_denoiser_through_the_ode_and_the_sampler():
    torch.manual_seed(1)
    noise = LogNormalNoise()
    start = torch.randn(20_000, 2, dtype=torch.float64) * math.sqrt(
        1 + noise.sigma_max**2
    )
    grid = torch.cat(
        [
            edm_grid(noise.sigma_min, noise.sigma_max, 31),
            torch.zeros(1, dtype=torch.float64),
        ]
    )
    for samples in (
        heun(ode_field, start, grid),
        # As many network calls as Heun's 63.
        multistep(
            exact_denoiser, start, edm_grid(noise.sigma_min, noise.sigma_max, 62)
        ),
        sample_stochastic(
            exact_denoiser, start, edm_grid(noise.sigma_min, noise.sigma_max, 200)
        ),
    ):
        assert torch.allclose(samples.mean(0), MEAN, atol=0.03)
        assert torch.allclose(torch.cov(samples.T), COV, atol=0.04)


def test_multistep_is_second_order_and_beats_heun_per_network_call():
    torch.manual_seed(2)
    noise = LogNormalNoise()
    start = torch.randn(500, 2, dtype=torch.float64) * math.sqrt(1 + noise.sigma_max**2)

    def grid(levels):
        return edm_grid(noise.sigma_min, noise.sigma_max, levels - 1)

    def with_zero(levels):
        return torch.cat([grid(levels), torch.zeros(1, dtype=torch.float64)])

    reference = heun(ode_field, start, with_zero(1000))
    errors = [
        (multistep(exact_denoiser, start, grid(calls)) - reference).abs().max()
        for calls in (16, 32, 64)
    ]
    # Second order: doubling the steps divides the error by about four.
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3
    heun_error = (heun(ode_field, start, with_zero(16)) - reference).abs().max()
    assert errors[1] < heun_error  # 32 calls against Heun's 31
    latent = torch.tensor([[True, False]]).expand(500, 2)
    kept = multistep(exact_denoiser, start, grid(8), latent)
    assert torch.equal(kept[:, 1], start[:, 1])
    with pytest.raises(ValueError, match="sigmas"):
        multistep(exact_denoiser, start, torch.tensor([1.0, 0.0]))


def test_log_density_through_the_ode():
    noise = LogNormalNoise()
    points = torch.tensor([[0.5, -1.0], [1.5, 0.0], [-0.5, -2.0]], dtype=torch.float64)
    times = edm_grid(noise.sigma_min, noise.sigma_max, 128).flip(0)
    end, integral = integrate_with_divergence(ode_field, points, times)
    sigma_max = torch.full((3, 1), noise.sigma_max, dtype=torch.float64)
    base = gaussian_log_prob(
        end - exact_denoiser(end, sigma_max),
        torch.tensor(1 + noise.sigma_max**2, dtype=torch.float64),
    )
    expected = torch.distributions.MultivariateNormal(MEAN, COV).log_prob(points)
    assert torch.allclose(base + integral, expected, atol=0.01)


def test_gaussian_log_prob_with_a_mask():
    z = torch.tensor([[0.3, -1.0]])
    variance = torch.tensor([2.0, 0.5])
    full = torch.distributions.Normal(0, variance.sqrt()).log_prob(z)
    assert torch.allclose(gaussian_log_prob(z, variance), full.sum(-1))
    mask = torch.tensor([[True, False]])
    assert torch.allclose(gaussian_log_prob(z, variance, mask), full[:, 0])


def test_guidance_correction_and_recurrence_reach_the_sampler():
    torch.manual_seed(2)
    grid = edm_grid(0.002, 80.0, 100)
    start = torch.randn(4000, 2, dtype=torch.float64) * 80

    def push_right(x, denoised, sigma, step_variance):
        # A constant pull of the first coordinate: shifts its mean.
        out = torch.zeros_like(x)
        out[:, 0] = 1.0 / (1.0 + sigma[:, 0] ** 2)
        return out

    free = sample_stochastic(exact_denoiser, start, grid)
    pushed = sample_stochastic(
        exact_denoiser, start, grid, correction=push_right, recurrence=2
    )
    assert pushed[:, 0].mean() > free[:, 0].mean() + 0.1
    latent = torch.tensor([True, False]).expand(4000, 2)
    clamped = sample_stochastic(exact_denoiser, start, grid, latent)
    assert torch.equal(clamped[:, 1], start[:, 1])
    with pytest.raises(ValueError, match="recurrence"):
        sample_stochastic(exact_denoiser, start, grid, recurrence=0)


def test_third_order_multistep_converges_faster_on_a_log_uniform_grid():
    # The inflationary flow's grid: uniform in log sigma over ten units.
    torch.manual_seed(3)
    start = torch.randn(500, 2, dtype=torch.float64) * math.sqrt(1 + 40.0**2)

    def grid(levels):
        return torch.logspace(math.log10(40.0), -3, levels, dtype=torch.float64)

    reference = multistep(exact_denoiser, start, grid(4000), order=3)
    errors = {
        order: [
            (multistep(exact_denoiser, start, grid(n), order=order) - reference)
            .abs()
            .max()
            for n in (16, 32)
        ]
        for order in (2, 3)
    }
    # Third order: doubling the steps divides the error by about eight.
    assert errors[3][1] < errors[3][0] / 5, errors
    assert errors[3][1] < errors[2][1] / 2, errors
    with pytest.raises(ValueError, match="order"):
        multistep(exact_denoiser, start, grid(8), order=4)


def test_update_weight_average_matches_torchs_update_and_follows_new_weights():
    torch.manual_seed(0)
    live = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    ours, torchs = weight_average(live, 0.9), weight_average(live, 0.9)
    for _ in range(5):
        with torch.no_grad():
            for parameter in live.parameters():
                parameter.add_(torch.randn_like(parameter))
        update_weight_average(ours, live)
        torchs.update_parameters(live)
    for mine, reference in zip(
        ours.module.parameters(), torchs.module.parameters(), strict=True
    ):
        torch.testing.assert_close(mine, reference)
    assert int(ours.n_averaged) == int(torchs.n_averaged) == 5
    # Weights replaced (not updated in place) are followed.
    live[1].bias = torch.nn.Parameter(torch.full((2,), 7.0))
    update_weight_average(ours, live)
    torchs.update_parameters(live)
    torch.testing.assert_close(ours.module[1].bias, torchs.module[1].bias)
