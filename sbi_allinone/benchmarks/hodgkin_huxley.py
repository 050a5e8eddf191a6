r"""Single-compartment Hodgkin–Huxley neuron under a step current, for the Simformer.

The Hodgkin–Huxley task of the Simformer paper (Gloeckler et al., ICML 2024,
appendix), with facts read from its official task code (``mackelab/simformer``,
``src/scoresbibm/scoresbibm/tasks/hhtask.py``), which follows the HH setting of
sbi's tutorial / ``delfi`` (Gonçalves et al. 2020) and adds the energy of Deistler
et al. (2022):

- **Parameters** (7, uniform prior, :func:`hh_prior`): membrane capacitance
  :math:`C_m \sim U(1, 2)` µF/cm², conductances :math:`g_{Na} \sim U(60, 120)`,
  :math:`g_K \sim U(10, 30)`, :math:`g_L \sim U(0.1, 0.5)` mS/cm², reversal
  potentials :math:`E_{Na} \sim U(40, 70)`, :math:`E_K \sim U(-100, -60)`,
  :math:`E_L \sim U(-90, -60)` mV.
- **Model**: :math:`C_m \dot V = I(t) - g_{Na} m^3 h (V - E_{Na})
  - g_K n^4 (V - E_K) - g_L (V - E_L) + C_m \sigma \xi(t)`, Traub–Miles gating
  kinetics shifted by :math:`V_T = -65` mV (rates in 1/ms, :func:`gating_rates`),
  additive voltage noise :math:`\sigma = 0.05` mV/√ms, :math:`V(0) = -65` mV, gates
  at their steady state for -65 mV.
- **Protocol** (:class:`HHProtocol`): 200 ms, step current of 4 µA/cm² from 50 to
  150 ms.
- **Data** (8): the 7 summary features of sbi's tutorial (:func:`summary_features`)
  and the metabolic energy (:func:`energy`), the sodium charge
  :math:`\int g_{Na} m^3 h (E_{Na} - V)\,dt` in nC/cm² (µA/cm² · ms).

Choices that differ from the official code:

- Integration: exponential Euler with a fixed step (0.025 ms): the gates and the
  voltage are linear given the others, so each step solves them exactly for frozen
  coefficients (unconditionally stable), plus the Euler–Maruyama noise increment.
  The official code uses an SDE solver on 5 000 points (step 0.04 ms).
- The official ``efun`` returns :math:`1 - x/2` for every :math:`x < 10^{-4}` (also
  large negative :math:`x`) and swaps the initial values of :math:`m` and
  :math:`n`; here :math:`x / (e^x - 1)` is used everywhere (Taylor only for
  :math:`|x| < 10^{-4}`) and the gates start at their own steady states.
- Energy sign: the official code integrates :math:`i_{Na}` (negative, inward); here
  its negative, so that energy is positive and grows with every spike.
- Spikes are upward crossings of -10 mV (the official code detects jumps of the
  voltage between grid points, which depends on the step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from sbi.utils import BoxUniform
from torch import Generator, Tensor

THETA_NAMES = ("C_m", "g_Na", "g_K", "g_L", "E_Na", "E_K", "E_L")
"""Names of the 7 membrane parameters, in the order of ``theta``'s columns."""
THETA_UNITS = ("uF/cm^2", "mS/cm^2", "mS/cm^2", "mS/cm^2", "mV", "mV", "mV")
PRIOR_LOW = (1.0, 60.0, 10.0, 0.1, 40.0, -100.0, -90.0)
PRIOR_HIGH = (2.0, 120.0, 30.0, 0.5, 70.0, -60.0, -60.0)
DEFAULT_THETA = (1.2, 90.0, 20.0, 0.3, 55.0, -80.0, -75.0)
"""A spiking neuron inside the prior (the prior's centre, but ``C_m = 1.2``)."""
FEATURE_NAMES = (
    "spike_count",
    "rest_mean",
    "rest_std",
    "stim_mean",
    "stim_var",
    "stim_skew",
    "stim_kurtosis",
)
X_NAMES = (*FEATURE_NAMES, "energy")
"""Names of the 8 data: 7 summary features of the trace, then the energy."""
#: The task's variables: 7 parameters, then 8 data (features, energy).
HH_VARIABLES = (*THETA_NAMES, *X_NAMES)
V_T = -65.0  # mV, shift of the Traub–Miles kinetics (and initial voltage)


@dataclass(frozen=True)
class HHProtocol:
    """The stimulation and integration protocol (times in ms).

    Attributes:
        t_max: Duration of the simulation.
        t_on: Start of the step current.
        t_off: End of the step current.
        amplitude: Step current during ``[t_on, t_off)``, µA/cm².
        dt: Integration step.
        noise_sd: Voltage noise :math:`\\sigma`, mV/√ms (0 for a deterministic run).
        v0: Initial voltage, mV.
    """

    t_max: float = 200.0
    t_on: float = 50.0
    t_off: float = 150.0
    amplitude: float = 4.0
    dt: float = 0.025
    noise_sd: float = 0.05
    v0: float = -65.0

    def __post_init__(self) -> None:
        if not 0.0 < self.dt < self.t_max:
            raise ValueError(f"need 0 < dt < t_max, got dt={self.dt}")
        if not 0.0 <= self.t_on < self.t_off <= self.t_max:
            raise ValueError(
                f"need 0 <= t_on < t_off <= t_max, got {self.t_on}, {self.t_off}, "
                f"{self.t_max}"
            )
        if self.noise_sd < 0.0:
            raise ValueError(f"noise_sd must be >= 0, got {self.noise_sd}")

    def time_grid(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The times of the trace, ``0, dt, ..., t_max``: shape ``(num_time,)``."""
        num_steps = round(self.t_max / self.dt)
        return torch.arange(num_steps + 1, dtype=torch.float64).mul(self.dt).to(dtype)


class HHSimulation(NamedTuple):
    """Output of :func:`simulate_hh`.

    Attributes:
        v: Membrane voltage, mV, shape ``(batch, num_time)``; NaN rows are invalid.
        t: Time grid, ms, shape ``(num_time,)``.
        i_na: Sodium current :math:`g_{Na} m^3 h (V - E_{Na})`, µA/cm² (negative =
            inward), shape ``(batch, num_time)``.
    """

    v: Tensor
    t: Tensor
    i_na: Tensor


def hh_prior(device: str = "cpu") -> BoxUniform:
    """The task's uniform prior over :data:`THETA_NAMES` (units :data:`THETA_UNITS`).

    Returns:
        An sbi ``BoxUniform`` with event shape ``(7,)``.
    """
    return BoxUniform(torch.tensor(PRIOR_LOW), torch.tensor(PRIOR_HIGH), device=device)


def _check_theta(theta: Tensor) -> Tensor:
    """``theta`` as a ``(batch, 7)`` floating tensor, or a ValueError."""
    if not isinstance(theta, Tensor):
        raise ValueError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
    if theta.ndim == 1:
        theta = theta.unsqueeze(0)
    if theta.ndim != 2 or theta.shape[1] != len(THETA_NAMES):
        raise ValueError(
            f"theta must have shape (batch, {len(THETA_NAMES)}) or "
            f"({len(THETA_NAMES)},) ({', '.join(THETA_NAMES)}), "
            f"got {tuple(theta.shape)}"
        )
    return theta if theta.is_floating_point() else theta.float()


def _efun(x: Tensor) -> Tensor:
    """:math:`x / (e^x - 1)`, continuous at 0 (value 1)."""
    small = x.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1.0 - x / 2.0, safe / torch.expm1(safe))


#: ``(scale, shift)`` of the arguments of ``_efun`` in alpha_m, beta_m, alpha_n,
#: and the factors in front (0.32 / 0.25, 0.28 / 0.2, 0.032 / 0.2).
_EFUN_ARGS = torch.tensor([[-0.25, 0.2, -0.2], [13.0, 40.0, 15.0]])[..., None]
_EFUN_FACTORS = torch.tensor([1.28, 1.4, 0.16])[:, None]
#: ``(scale, shift)`` of the exponents in alpha_h, beta_h and beta_n.
_EXP_ARGS = torch.tensor([[-1 / 18, -1 / 5, -1 / 40], [17.0, 40.0, 10.0]])[..., None]


def _stacked_rates(v: Tensor) -> tuple[Tensor, Tensor]:
    """Opening and closing rates of (m, h, n), each of shape ``(3, *v.shape)``."""
    u = v.clamp(-150.0, 100.0) - V_T
    scale, shift = _EFUN_ARGS.to(v)
    ef = _efun(scale * (u - shift)) * _EFUN_FACTORS.to(v)
    scale, shift = _EXP_ARGS.to(v)
    ex = torch.exp(scale * (u - shift))
    alpha = torch.stack([ef[0], 0.128 * ex[0], ef[2]])
    beta = torch.stack([ef[1], 4.0 / (1.0 + ex[1]), 0.5 * ex[2]])
    return alpha, beta


def gating_rates(v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Traub–Miles opening / closing rates (1/ms) of the gates m, h and n.

    With :math:`u = V - V_T` (:math:`V_T = -65` mV) and
    :math:`\\mathrm{efun}(x) = x / (e^x - 1)`: :math:`\\alpha_m = 1.28\\,
    \\mathrm{efun}(-(u - 13) / 4)`, :math:`\\beta_m = 1.4\\,\\mathrm{efun}((u - 40)
    / 5)`, :math:`\\alpha_h = 0.128\\,e^{-(u - 17) / 18}`, :math:`\\beta_h = 4 / (1 +
    e^{-(u - 40) / 5})`, :math:`\\alpha_n = 0.16\\,\\mathrm{efun}(-(u - 15) / 5)`,
    :math:`\\beta_n = 0.5\\,e^{-(u - 10) / 40}`. The voltage is clamped to
    [-150, 100] mV first, so that the rates stay finite.

    Args:
        v: Membrane voltage, mV, any shape.

    Returns:
        ``alpha_m, beta_m, alpha_h, beta_h, alpha_n, beta_n``, each shaped like ``v``.
    """
    alpha, beta = _stacked_rates(v)
    return alpha[0], beta[0], alpha[1], beta[1], alpha[2], beta[2]


def simulate_hh(
    theta: Tensor,
    protocol: HHProtocol | None = None,
    generator: Generator | None = None,
) -> HHSimulation:
    """Simulate the neuron for a batch of parameters (vectorised over the batch).

    Each step: the gates by exponential Euler at the current voltage, then the
    voltage by exponential Euler with the new gates frozen (total conductance
    :math:`G`, :math:`V_\\infty = (I + \\sum_i g_i E_i) / G`, time constant
    :math:`C_m / G`), plus the noise :math:`\\sigma \\sqrt{dt}\\,\\varepsilon`.
    Rows whose voltage is not finite are set to NaN (invalid).

    Args:
        theta: Parameters in the order of :data:`THETA_NAMES`, shape ``(batch, 7)``
            (or ``(7,)`` for one).
        protocol: Stimulus and integration settings; default :class:`HHProtocol`.
        generator: Random generator of the voltage noise.

    Returns:
        :class:`HHSimulation` with ``v`` and ``i_na`` of shape
        ``(batch, num_time)`` and ``t`` of shape ``(num_time,)``.
    """
    theta = _check_theta(theta)
    protocol = HHProtocol() if protocol is None else protocol
    t = protocol.time_grid(theta.dtype).to(theta.device)
    c_m, g_na, g_k, g_l, e_na, e_k, e_l = theta.unbind(-1)
    dt = protocol.dt
    v = torch.full_like(c_m, protocol.v0)
    alpha, beta = _stacked_rates(v)
    gates = alpha / (alpha + beta)  # m, h, n at steady state, shape (3, batch)
    noise = torch.randn(
        (len(t) - 1, len(c_m)), generator=generator, dtype=theta.dtype
    ).to(theta.device) * (protocol.noise_sd * dt**0.5)
    stim = (t >= protocol.t_on) & (t < protocol.t_off)
    current = (stim.to(theta.dtype) * protocol.amplitude).tolist()
    leak = g_l * e_l
    vs, i_nas = [v], [g_na * gates[0] ** 3 * gates[1] * (v - e_na)]
    for step in range(len(t) - 1):
        alpha, beta = _stacked_rates(v)
        rate = alpha + beta
        gates = torch.lerp(alpha / rate, gates, torch.exp(-dt * rate))
        gna, gk = g_na * gates[0] ** 3 * gates[1], g_k * gates[2] ** 4
        total = gna + gk + g_l
        v_inf = (current[step] + gna * e_na + gk * e_k + leak) / total
        v = torch.lerp(v_inf, v, torch.exp(-dt * total / c_m)) + noise[step]
        vs.append(v)
        i_nas.append(gna * (v - e_na))
    v_all, i_na = torch.stack(vs, dim=1), torch.stack(i_nas, dim=1)
    bad = ~(torch.isfinite(v_all).all(dim=1) & torch.isfinite(i_na).all(dim=1))
    v_all[bad], i_na[bad] = float("nan"), float("nan")
    return HHSimulation(v_all, t, i_na)


def energy(i_na: Tensor, t: Tensor) -> Tensor:
    """Metabolic energy: the sodium charge that entered, :math:`-\\int i_{Na}\\,dt`.

    In nC/cm² (µA/cm² · ms) over the whole trace, by the trapezoidal rule: the
    measure of Deistler et al. (2022) and of the Simformer's official task (which
    integrates :math:`i_{Na}` itself, so its values are negative). Each spike adds
    a sodium charge, so energy grows with the spike count.

    Args:
        i_na: Sodium current, µA/cm², shape ``(batch, num_time)``.
        t: Time grid, ms, shape ``(num_time,)``.

    Returns:
        Energy, shape ``(batch,)``.
    """
    return -torch.trapezoid(i_na, t, dim=-1)


def spike_count(v: Tensor, threshold: float = -10.0) -> Tensor:
    """Number of upward crossings of ``threshold`` (mV): shape ``(batch,)``."""
    above = v >= threshold
    return (above[:, 1:] & ~above[:, :-1]).sum(dim=1).to(v.dtype)


def summary_features(
    v: Tensor, t: Tensor, protocol: HHProtocol | None = None
) -> Tensor:
    """The 7 summary features of sbi's Hodgkin–Huxley tutorial (and the Simformer).

    In the order of :data:`FEATURE_NAMES`: spike count (the whole trace), mean and
    standard deviation of the voltage before the stimulus (resting potential), and
    the mean, variance, skewness and (non-excess) kurtosis of the voltage during the
    stimulus (``t_on < t < t_off``). Invalid (NaN) rows give NaN features.

    Args:
        v: Membrane voltage, mV, shape ``(batch, num_time)``.
        t: Time grid, ms, shape ``(num_time,)``.
        protocol: The protocol that produced ``v`` (its ``t_on`` and ``t_off``).

    Returns:
        Features, shape ``(batch, 7)``.
    """
    protocol = HHProtocol() if protocol is None else protocol
    if v.ndim != 2 or v.shape[1] != t.shape[0]:
        raise ValueError(
            f"v must have shape (batch, {t.shape[0]}) for t of shape "
            f"{tuple(t.shape)}, got {tuple(v.shape)}"
        )
    rest = v[:, t < protocol.t_on]
    stim = v[:, (t > protocol.t_on) & (t < protocol.t_off)]
    mean = stim.mean(dim=1)
    centred = stim - mean[:, None]
    var = centred.pow(2).mean(dim=1)
    sd = var.sqrt().clamp_min(1e-12)
    skew = centred.pow(3).mean(dim=1) / sd**3
    kurt = centred.pow(4).mean(dim=1) / sd**4
    count = spike_count(v)
    count[v.isnan().any(dim=1)] = float("nan")
    rest_mean, rest_sd = rest.mean(dim=1), rest.std(dim=1, correction=0)
    return torch.stack([count, rest_mean, rest_sd, mean, var, skew, kurt], dim=1)


def simulator(
    theta: Tensor,
    protocol: HHProtocol | None = None,
    generator: Generator | None = None,
) -> Tensor:
    """The task's data for given parameters: features, then energy.

    Args:
        theta: Parameters, shape ``(batch, 7)`` (order :data:`THETA_NAMES`).
        protocol: Stimulus and integration settings; default :class:`HHProtocol`.
        generator: Random generator of the voltage noise.

    Returns:
        x in the order of :data:`X_NAMES`, shape ``(batch, 8)``; NaN rows are
        invalid simulations.
    """
    sim = simulate_hh(theta, protocol, generator)
    features = summary_features(sim.v, sim.t, protocol)
    return torch.cat([features, energy(sim.i_na, sim.t)[:, None]], dim=1)


def simulate_task(
    num: int,
    generator: Generator | None = None,
    protocol: HHProtocol | None = None,
    batch_size: int = 1000,
) -> tuple[Tensor, Tensor]:
    """Draw ``num`` parameters from :func:`hh_prior` and simulate their data.

    Parameters and noise both come from ``generator``; simulation runs in chunks of
    ``batch_size`` to bound memory. Concatenate ``[theta, x]`` for the Simformer's
    joint, with token names :data:`HH_VARIABLES`.

    Args:
        num: Number of simulations.
        generator: Random generator (prior and noise).
        protocol: Stimulus and integration settings; default :class:`HHProtocol`.
        batch_size: Simulations per chunk.

    Returns:
        ``theta`` of shape ``(num, 7)`` and ``x`` of shape ``(num, 8)`` (order
        :data:`X_NAMES`; NaN rows are invalid simulations).
    """
    if num < 1 or batch_size < 1:
        raise ValueError(f"num and batch_size must be >= 1, got {num}, {batch_size}")
    low, high = torch.tensor(PRIOR_LOW), torch.tensor(PRIOR_HIGH)
    theta = low + (high - low) * torch.rand(num, len(low), generator=generator)
    xs = [simulator(chunk, protocol, generator) for chunk in theta.split(batch_size)]
    return theta, torch.cat(xs, dim=0)
