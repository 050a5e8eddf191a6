"""The Hodgkin–Huxley task: shapes, seeds, physiology, energy, vectorisation, errors.

Short protocols (60 ms, step from 10 to 50 ms, dt 0.05 ms) keep the module fast.
"""

import itertools
from dataclasses import replace

import pytest
import torch

from sbi_allinone.benchmarks.hodgkin_huxley import (
    DEFAULT_THETA,
    HH_VARIABLES,
    PRIOR_HIGH,
    PRIOR_LOW,
    THETA_NAMES,
    X_NAMES,
    HHProtocol,
    energy,
    hh_prior,
    simulate_hh,
    simulate_task,
    simulator,
    summary_features,
)

SHORT = HHProtocol(t_max=60.0, t_on=10.0, t_off=50.0, amplitude=8.0, dt=0.05)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _default(num: int = 1) -> torch.Tensor:
    return torch.tensor([DEFAULT_THETA] * num)


def _feature(x: torch.Tensor, name: str) -> torch.Tensor:
    return x[:, X_NAMES.index(name)]


def test_shapes_and_names():
    theta = hh_prior().sample((3,))
    sim = simulate_hh(theta, SHORT, _gen())
    num_time = round(SHORT.t_max / SHORT.dt) + 1
    assert sim.v.shape == sim.i_na.shape == (3, num_time)
    assert sim.t.shape == (num_time,)
    assert sim.t[0] == 0.0 and sim.t[-1] == pytest.approx(SHORT.t_max)
    assert summary_features(sim.v, sim.t, SHORT).shape == (3, 7)
    assert simulate_hh(torch.tensor(DEFAULT_THETA), SHORT).v.shape == (1, num_time)
    theta, x = simulate_task(4, _gen(), SHORT, batch_size=3)
    assert theta.shape == (4, 7) and x.shape == (4, 8)
    assert HH_VARIABLES == (*THETA_NAMES, *X_NAMES) and len(HH_VARIABLES) == 15
    assert torch.isfinite(hh_prior().log_prob(theta)).all()
    assert torch.isfinite(hh_prior().log_prob(_default())).all()


def test_determinism_under_a_seed():
    theta_a, x_a = simulate_task(3, _gen(1), SHORT)
    theta_b, x_b = simulate_task(3, _gen(1), SHORT)
    assert torch.equal(theta_a, theta_b) and torch.equal(x_a, x_b)
    v_a = simulate_hh(_default(), SHORT, _gen(2)).v
    v_b = simulate_hh(_default(), SHORT, _gen(3)).v
    assert not torch.equal(v_a, v_b)


def test_rests_without_current():
    protocol = replace(SHORT, amplitude=0.0)
    sim = simulate_hh(_default(), protocol, _gen())
    x = summary_features(sim.v, sim.t, protocol)
    assert _feature(x, "spike_count").item() == 0
    late = sim.v[0, sim.t > 40.0]
    assert -80.0 < late.mean().item() < -68.0
    assert late.std().item() < 1.0


def test_spike_count_rises_with_current_and_gna():
    amplitudes = [2.0, 6.0, 12.0]
    counts = [
        _feature(
            simulator(_default(), replace(SHORT, amplitude=a), _gen()),
            "spike_count",
        ).item()
        for a in amplitudes
    ]
    assert counts[0] == 0 and counts[1] >= 2 and counts[2] > counts[1]
    theta = _default(2)
    theta[:, THETA_NAMES.index("g_Na")] = torch.tensor([60.0, 120.0])
    count = _feature(simulator(theta, SHORT, _gen()), "spike_count")
    assert count[1] > count[0]


def test_default_protocol_spikes():
    """The paper's protocol (200 ms, 4 uA/cm^2 from 50 to 150 ms) makes spikes
    (step 0.05 ms instead of the default 0.025 ms, for speed)."""
    protocol = HHProtocol(dt=0.05)
    sim = simulate_hh(_default(), protocol, _gen())
    x = summary_features(sim.v, sim.t, protocol)
    assert _feature(x, "spike_count").item() >= 1
    assert 0.0 < sim.v.max().item() < DEFAULT_THETA[THETA_NAMES.index("E_Na")]
    assert -80.0 < _feature(x, "rest_mean").item() < -65.0


def test_energy_positive_and_increasing_with_spikes():
    theta = _default(4)
    theta[:, THETA_NAMES.index("g_Na")] = torch.tensor([60.0, 80.0, 100.0, 120.0])
    x = simulator(theta, SHORT, _gen())
    count, spent = _feature(x, "spike_count"), _feature(x, "energy")
    assert (spent > 0).all()
    order = torch.argsort(count)
    assert count[order[-1]] > count[order[0]]
    assert spent[order[-1]] > spent[order[0]]
    t = torch.linspace(0.0, 10.0, 101)
    assert energy(-torch.ones(2, 101), t) == pytest.approx(torch.full((2,), 10.0))


def test_batch_equals_per_row():
    protocol = replace(SHORT, noise_sd=0.0)
    theta = torch.tensor([DEFAULT_THETA, PRIOR_LOW, PRIOR_HIGH])
    batch = simulator(theta, protocol)
    rows = torch.cat([simulator(row[None], protocol) for row in theta])
    assert torch.allclose(batch, rows, rtol=1e-5, atol=1e-4, equal_nan=True)


def test_prior_corners_are_finite():
    low, high = torch.tensor(PRIOR_LOW), torch.tensor(PRIOR_HIGH)
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=7)))
    theta = low + (high - low) * corners
    protocol = HHProtocol(30.0, 5.0, 25.0, amplitude=20.0, dt=0.05)
    x = simulator(theta, protocol, _gen())
    assert torch.isfinite(x).all()


def test_invalid_rows_are_nan():
    theta = _default(2)
    theta[1, 0] = float("nan")
    x = simulator(theta, SHORT, _gen())
    assert torch.isfinite(x[0]).all() and torch.isnan(x[1]).all()


@pytest.mark.parametrize("shape", [(3, 6), (7, 1), (2, 3, 7), ()])
def test_bad_theta_shape(shape):
    with pytest.raises(ValueError, match=r"theta.*\(batch, 7\)"):
        simulate_hh(torch.zeros(shape), SHORT)


def test_bad_inputs():
    with pytest.raises(ValueError, match="theta"):
        simulate_hh([list(DEFAULT_THETA)], SHORT)
    with pytest.raises(ValueError, match="t_on"):
        HHProtocol(t_on=100.0, t_off=50.0)
    with pytest.raises(ValueError, match="dt"):
        HHProtocol(dt=0.0)
    with pytest.raises(ValueError, match="v must have shape"):
        summary_features(torch.zeros(2, 5), torch.zeros(6))
    with pytest.raises(ValueError, match="num"):
        simulate_task(0)
