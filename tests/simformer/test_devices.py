"""Every tensor the Simformer makes is made on the estimator's device.

The workflow runs with the estimator and every user tensor on an explicit device
while torch's default device is ``meta`` (:func:`explicit_devices_only`). A tensor
that this package makes without ``device=`` lands on ``meta`` and the check raises
:class:`ImplicitDeviceError` naming the file and line, so these tests fail on a
CPU-only machine too. The check also raises when the package calls ``.cpu()`` or
``.numpy()``. Tensors made by sbi and torch get torch's real default device (the
CPU): sbi keeps some bookkeeping on the CPU on purpose (e.g. its rejection
sampler's acceptance counts, its train/validation split), which is not this
package's to change.

Autograd runs backward functions outside torch function modes, so the score used
by ``map``'s gradient ascent is checked by calling it directly.
"""

from __future__ import annotations

import math
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_leaves

import sbi_allinone
from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.simformer import Interval, LinearConstraint, Simformer
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.guidance import Guidance
from sbi_allinone.simformer.network import SimformerNet
from sbi_allinone.simformer.posterior import SimformerPosterior
from sbi_allinone.simformer.sampling import ode_log_prob, sample_ode, sample_sde
from sbi_allinone.simformer.vector_field import SimformerVectorField
from sbi_allinone.tracking import NullTracker

PACKAGE = str(Path(sbi_allinone.__file__).parent)
TORCH = str(Path(torch.__file__).parent)

DEVICES = [
    pytest.param(torch.device("cpu"), id="cpu"),
    pytest.param(
        torch.device("cuda"),
        id="cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device"
        ),
    ),
]

# A Simformer small enough to train in a fraction of a second.
TINY_NET = {
    "num_layers": 1,
    "id_dim": 4,
    "value_dim": 4,
    "condition_dim": 2,
    "num_heads": 1,
    "key_size": 4,
    "widening": 1,
    "time_dim": 8,
}
NUM_PARAMETERS, NUM_NODES = 2, 3  # [theta_1, theta_2, x]
POSTERIOR = torch.tensor([False, False, True])
LIKELIHOOD = ~POSTERIOR


class ImplicitDeviceError(AssertionError):
    """A tensor of this package was made without a device, or moved to the CPU."""


def _caller():  # noqa: ANN202
    """The innermost frame outside torch (and this check) on the stack."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH):
        frame = frame.f_back
    return frame


def _is_ours(frame) -> bool:  # noqa: ANN001
    return frame is not None and frame.f_code.co_filename.startswith(PACKAGE)


def _where(frame) -> str:  # noqa: ANN001
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class _ExplicitDevicesOnly(TorchFunctionMode):
    """Raise on this package's tensors made on the (meta) default device and on its
    ``.cpu()`` / ``.numpy()`` calls; give sbi's and torch's own factory calls
    torch's real default device."""

    CONSTRUCTORS = _device_constructors()
    MOVES = (torch.Tensor.cpu, torch.Tensor.numpy)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = dict(kwargs or {})
        frame = None
        if func in self.MOVES:
            frame = _caller()
            if _is_ours(frame):
                raise ImplicitDeviceError(
                    f"`.{func.__name__}()` at {_where(frame)} moves a tensor off "
                    "the estimator's device."
                )
        elif func in self.CONSTRUCTORS and kwargs.get("device") is None:
            frame = _caller()
            if not _is_ours(frame):
                kwargs["device"] = "cpu"
        out = func(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in tree_leaves(out)):
            frame = frame or _caller()
            raise ImplicitDeviceError(
                f"`{getattr(func, '__name__', func)}` at {_where(frame)} made a "
                "tensor on the default device instead of the estimator's."
            )
        return out


@contextmanager
def explicit_devices_only():
    """torch's default device is ``meta`` and the package must not use it."""
    with torch.device("meta"), _ExplicitDevicesOnly():
        yield


def _prior(device: torch.device) -> torch.distributions.Distribution:
    return torch.distributions.Independent(
        torch.distributions.Normal(
            torch.zeros(NUM_PARAMETERS, device=device),
            torch.ones(NUM_PARAMETERS, device=device),
        ),
        1,
    )


def _simulations(device: torch.device, num: int = 160) -> tuple:
    generator = torch.Generator(device=device).manual_seed(0)
    theta = torch.randn(num, NUM_PARAMETERS, device=device, generator=generator)
    noise = torch.randn(num, 1, device=device, generator=generator)
    x = theta.sum(1, keepdim=True) + 0.3 * noise
    x[:4] = torch.nan  # missing entries
    return theta, x


def _trainer(device: torch.device) -> Simformer:
    inference = Simformer(
        _prior(device),
        device=device,
        net_kwargs=TINY_NET,
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing entries
        inference.append_simulations(*_simulations(device))
    return inference


def _train(inference: Simformer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference.train(
            num_steps=4,
            steps_per_epoch=2,
            training_batch_size=32,
            validation_fraction=0.2,
            validation_draws=2,
        )


@pytest.fixture(scope="module", params=DEVICES)
def trained(request) -> Simformer:  # noqa: ANN001
    """A tiny Simformer trained on ``device`` (outside the check)."""
    torch.manual_seed(0)
    inference = _trainer(request.param)
    _train(inference)
    return inference


def _on(device: torch.device, *tensors: torch.Tensor) -> bool:
    return all(t.device.type == device.type for t in tensors)


def _posterior(inference: Simformer, mask: torch.Tensor, **kwargs):  # noqa: ANN003, ANN202
    """A conditional on the trainer's device, built without the trainer."""
    mask = mask.to(inference._device)
    return SimformerPosterior(inference._neural_net, mask, inference._prior, **kwargs)


# The check itself.


def test_the_check_catches_a_tensor_of_the_package_made_without_a_device():
    namespace = {"torch": torch}
    source = "def made():\n    return torch.zeros(2)\n"
    exec(compile(source, f"{PACKAGE}/_fake_module.py", "exec"), namespace)  # noqa: S102
    with explicit_devices_only():
        with pytest.raises(ImplicitDeviceError, match="_fake_module.py:2"):
            namespace["made"]()
        # Tensors made elsewhere (here: a test) get torch's real default device.
        assert torch.zeros(2).device.type == "cpu"
        assert torch.zeros(2, device="cpu").device.type == "cpu"


def test_the_check_catches_a_move_to_the_cpu():
    namespace = {"torch": torch}
    source = "def moved(t):\n    return t.cpu()\n"
    exec(compile(source, f"{PACKAGE}/_fake_module.py", "exec"), namespace)  # noqa: S102
    with explicit_devices_only(), pytest.raises(ImplicitDeviceError, match=".cpu"):
        namespace["moved"](torch.ones(1))


# Training and validation.


@pytest.mark.parametrize("device", DEVICES)
def test_training_makes_tensors_on_the_device(device):
    torch.manual_seed(0)
    inference = _trainer(device)
    with explicit_devices_only():
        _train(inference)
    estimator = inference._neural_net
    assert _on(device, *estimator.parameters(), *estimator.buffers())
    assert math.isfinite(inference._val_loss)


def test_training_epochs_and_validation_make_tensors_on_the_device(trained):
    device = torch.device(trained._device)
    estimator = trained._neural_net
    with explicit_devices_only():
        estimator.train()
        train_loss = trained._train_epoch(None, 5.0, None)
        estimator.eval()
        val_loss = trained._validate_epoch(None, None)
    assert math.isfinite(train_loss) and math.isfinite(val_loss)
    assert _on(device, *estimator.parameters(), *estimator.buffers())


# Posteriors from the trainer.


def test_build_posterior_and_likelihood_make_tensors_on_the_device(trained):
    with explicit_devices_only():
        posterior = trained.build_posterior(steps=3)
        likelihood = trained.build_likelihood(steps=3)
        conditional = trained.build_conditional(POSTERIOR.tolist(), steps=3)
    device = torch.device(trained._device)
    for built in (posterior, likelihood, conditional):
        assert _on(device, built.condition_mask)


# Sampling, densities, MAP.


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_with": "ode"},
        {"sample_with": "ode", "ode_solver": "heun"},
        {"sample_with": "sde"},
    ],
    ids=["ode-multistep", "ode-heun", "sde"],
)
def test_sampling_makes_tensors_on_the_device(trained, kwargs):
    device = torch.device(trained._device)
    x_o = torch.tensor([[0.5]], device=device)
    with explicit_devices_only():
        posterior = _posterior(trained, POSTERIOR, steps=3, **kwargs)
        samples = posterior.sample((6,), x=x_o)
        batched = posterior.sample_batched(
            (4,), x=torch.tensor([[0.5], [-1.0], [torch.nan]], device=device)
        )
        posterior.set_default_x(x_o)
        default = posterior.sample((2,))
    assert samples.shape == (6, 2) and batched.shape == (4, 3, 2)
    assert default.shape == (2, 2)
    assert _on(device, samples, batched, default)
    assert torch.isfinite(samples).all() and torch.isfinite(batched).all()


def test_log_prob_and_map_make_tensors_on_the_device(trained):
    device = torch.device(trained._device)
    x_o = torch.tensor([[0.5]], device=device)
    theta = torch.tensor([[0.1, 0.2], [-0.3, 0.4]], device=device)
    with explicit_devices_only():
        posterior = _posterior(trained, POSTERIOR, steps=3)
        posterior.log_prob_steps = 3
        log_prob = posterior.log_prob(theta, x=x_o)
        map_ = posterior.map(
            x=x_o, num_iter=2, num_to_optimize=2, num_init_samples=6, save_best_every=1
        )
        # The gradient ascent's backward pass runs outside the check: its score.
        score = posterior.potential_fn.gradient(theta)
    assert log_prob.shape == (2,) and torch.isfinite(log_prob).all()
    assert map_.shape[-1] == 2 and score.shape == (2, 2)
    assert _on(device, log_prob, map_, score)


def test_guided_sampling_makes_tensors_on_the_device(trained):
    device = torch.device(trained._device)
    x_o = torch.tensor([[0.5]], device=device)
    constraints = [
        Interval(node=0, low=0.0, high=1.0),
        LinearConstraint(
            torch.tensor([[1.0, 1.0, 0.0]], device=device),
            torch.tensor([0.5], device=device),
        ),
    ]
    with explicit_devices_only():
        posterior = _posterior(
            trained, POSTERIOR, steps=3, guidance=constraints, recurrence=2
        )
        samples = posterior.sample((5,), x=x_o)
    assert samples.shape == (5, 2) and torch.isfinite(samples).all()
    assert _on(device, samples, posterior.guidance.weights, posterior.guidance.bounds)


def test_likelihood_and_a_conditional_with_missing_data_on_the_device(trained):
    device = torch.device(trained._device)
    theta = torch.tensor([[0.3, -0.2]], device=device)
    # p(theta_1 | theta_2, x) with x missing: p(theta_1 | theta_2).
    mask = torch.tensor([False, True, True])
    condition = torch.tensor([[0.4, torch.nan]], device=device)
    with explicit_devices_only():
        likelihood = _posterior(trained, LIKELIHOOD, steps=3)
        likelihood.log_prob_steps = 3
        data = likelihood.sample((4,), x=theta)
        data_log_prob = likelihood.log_prob(data, x=theta)
        conditional = _posterior(trained, mask, steps=3, sample_with="sde")
        conditional.log_prob_steps = 3
        samples = conditional.sample((4,), x=condition)
        log_prob = conditional.log_prob(samples, x=condition)
    assert data.shape == (4, 1) and samples.shape == (4, 1)
    assert torch.isfinite(data_log_prob).all() and torch.isfinite(log_prob).all()
    assert _on(device, data, data_log_prob, samples, log_prob)


def test_vector_field_makes_tensors_on_the_device(trained):
    device = torch.device(trained._device)
    estimator = trained._neural_net.eval()
    theta = torch.zeros(3, 2, device=device)
    x = torch.tensor([[0.5]], device=device)
    times = torch.tensor([0.3, 0.5, 0.9], device=device)
    with explicit_devices_only():
        field = SimformerVectorField(estimator)
        score = field.score(theta, x, times)
        ode = field.ode_fn(theta, x, times)
        scalar_time = field.std_fn(0.5)
        drift = field.drift_fn(theta, times)
    assert score.shape == ode.shape == (3, 2)
    assert _on(device, field.condition_mask, score, ode, scalar_time, drift)


# The samplers on a hand-built estimator, with graph attention masks.


def _estimator(device: torch.device, attention: str) -> SimformerEstimator:
    graph = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    net = SimformerNet(NUM_NODES, **TINY_NET)
    estimator = SimformerEstimator(
        net,
        LogNormalNoise(),
        NUM_PARAMETERS,
        torch.zeros(NUM_NODES),
        torch.ones(NUM_NODES),
        graph=graph,
        attention=attention,
    )
    return estimator.to(device).eval()


def _rows(device: torch.device, num: int = 4) -> tuple:
    values = torch.zeros(num, NUM_NODES, device=device)
    values[:, 2] = 0.7
    condition = POSTERIOR.to(device).expand(num, NUM_NODES)
    missing = torch.zeros(num, NUM_NODES, dtype=torch.bool, device=device)
    missing[0, 2] = True
    return values, condition, missing


def _sample_everything(estimator: SimformerEstimator, device: torch.device) -> list:
    values, condition, missing = _rows(device)
    latent = ~(condition | missing)[0]
    guidance = Guidance(
        [Interval(node=0, low=-1.0)], estimator.mean, estimator.std, latent
    )
    return [
        sample_ode(estimator, values, condition, missing, steps=3),
        sample_ode(estimator, values, condition, missing, 3, solver="heun"),
        sample_sde(estimator, values, condition, missing, 3, guidance, 2),
        ode_log_prob(estimator, values, condition, missing, steps=3),
        ode_log_prob(estimator, values, condition, missing, steps=3, exact_below=0),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention", ["dense", "undirected"])
def test_samplers_make_tensors_on_the_device(device, attention):
    estimator = _estimator(device, attention)
    with explicit_devices_only():
        results = _sample_everything(estimator, device)
    assert _on(device, *results)
    assert all(torch.isfinite(r).all() for r in results)


@pytest.mark.parametrize("device", DEVICES)
def test_directed_attention_makes_tensors_on_the_device(device):
    estimator = _estimator(device, "directed")
    with explicit_devices_only():
        results = _sample_everything(estimator, device)
    assert _on(device, *results)
