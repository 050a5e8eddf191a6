"""Fuzz of the estimators built on sbi's NPE (INN in each mode, InflationaryFlow),
as ``tests/simformer/test_robustness.py`` fuzzes the Simformer.

``append_simulations`` and the trained posterior's ``sample``, ``log_prob``,
``sample_batched``, ``log_prob_batched``, ``set_default_x`` and ``map`` get
malformed input: each must raise a ``ValueError`` or ``TypeError`` naming the
argument, never hang (every call runs under a time limit), crash inside torch or
succeed silently; well-formed variants (lists, float16, float64, integers) must
succeed with finite output. Sampling under a prior far from the trained region
returns or raises within ``max_sampling_time``.
"""

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from sbi.utils import BoxUniform

from sbi_allinone import INN, InflationaryFlow
from sbi_allinone.checked_posterior import CheckedDirectPosterior
from sbi_allinone.tracking import NullTracker

from .fuzz import random_wrong_shapes
from .limits import time_limit

PRIOR = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
#: A prior far from the trained region: no posterior sample lies in its support.
FAR_PRIOR = BoxUniform(10 * torch.ones(2), 11 * torch.ones(2))
X_O = torch.zeros(1, 2)
OPTIONS = dict(tracker=NullTracker(), show_progress_bars=False)
#: Tiny configurations: INN in each training mode, a 4-step inflationary flow.
ESTIMATORS = {
    "INN ml": lambda: INN(PRIOR, num_blocks=2, hidden_features=16, **OPTIONS),
    "INN hybrid": lambda: INN(
        PRIOR, mode="hybrid", num_blocks=2, hidden_features=16, **OPTIONS
    ),
    "INN mmd": lambda: INN(
        PRIOR, mode="mmd", num_blocks=2, hidden_features=16, **OPTIONS
    ),
    "InflationaryFlow": lambda: InflationaryFlow(
        PRIOR, hidden_features=16, num_layers=1, steps=4, **OPTIONS
    ),
}
#: Small ``map`` runs, of the estimators with a differentiable density.
MAP = dict(num_iter=2, num_to_optimize=2, num_init_samples=10)
MAPS = ("INN ml", "INN hybrid")


@pytest.fixture(scope="module", params=list(ESTIMATORS))
def trained(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """``(name, trainer)``, trained on 200 simulations of a 2-D toy."""
    torch.manual_seed(0)
    theta = PRIOR.sample((200,))
    x = theta + 0.1 * torch.randn_like(theta)
    trainer = ESTIMATORS[request.param]().append_simulations(theta, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(max_num_epochs=3, stop_after_epochs=2)
    return request.param, trainer


def _arrays(width: int, rows: int, one: bool) -> list[tuple[str, object, bool]]:
    """``(label, value, valid)`` for an argument of ``rows`` rows of ``width``;
    ``one``: a single row is expected (one ``x_o``), so a batch is invalid."""
    good = torch.zeros(rows, width)
    bad_row = good.clone()
    bad_row[0, 0] = torch.nan
    cases = [
        ("float32", good, True),
        ("float16", good.half(), True),
        ("float64", good.double(), True),
        ("int64", good.long(), True),
        ("list", good.tolist(), True),
        ("1-D", good[0], rows == 1 or not one),  # one row
        ("text", "0.1, 0.2", False),
        ("list of text", [["a"] * width] * rows, False),
        ("dict", {"x": good}, False),
        ("None", None, False),
        ("None entries", [[None] * width] * rows, False),
        ("ragged list", [[0.0] * width, [0.0]], False),
        ("complex", good.to(torch.complex64), False),
        ("bool", good.bool(), False),
        ("0-D", torch.tensor(0.5), False),
        ("3-D", good.reshape(rows, 1, width), False),
        ("empty", torch.zeros(0, width), False),
        ("empty 1-D", torch.zeros(0), False),
        ("batch", torch.zeros(rows + 2, width), not one),
        ("inf", torch.full((rows, width), torch.inf), False),
        ("-inf", torch.full((rows, width), -torch.inf), False),
        ("all NaN", torch.full((rows, width), torch.nan), False),
        ("one NaN", bad_row, False),
    ]
    cases += [(label, value, False) for label, value in random_wrong_shapes(width)]
    return cases


def _check(
    call: Callable[[], object], valid: bool, names: tuple[str, ...], label: str
) -> str | None:
    """``None`` if ``call`` succeeds with finite output (``valid``) or raises a
    ``ValueError`` or ``TypeError`` naming one of ``names`` (else), within 10 s;
    otherwise what went wrong."""
    try:
        with time_limit(10), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call()
    except (ValueError, TypeError) as error:
        if valid:
            return f"{label}: valid input raised {error!r:.200}"
        if not any(name in str(error) for name in names):
            return f"{label}: {error!r:.200} does not name {names}"
        return None
    except Exception as error:  # a crash inside torch, an assertion, a hang
        return f"{label}: {type(error).__name__} {error!r:.200}"
    if not valid:
        return f"{label}: silent success"
    if isinstance(out, torch.Tensor) and not out.isfinite().all():
        return f"{label}: non-finite output"
    return None


def _fuzz_append(name: str) -> list[str | None]:
    theta = PRIOR.sample((30,))
    results = []
    for label, value, valid in _arrays(2, 30, one=False):
        for argument in ("theta", "x"):
            args = {"theta": theta, "x": theta + 0.1, argument: value}
            # (N, *x_shape), boolean simulations and one bad simulation (sbi
            # leaves it out) are data.
            ok = valid or (argument == "x" and label in ("3-D", "bool", "one NaN"))
            if label == "1-D" or label == "batch":
                ok = False  # 1 row or 32 rows against 30
            call = lambda a=args: ESTIMATORS[name]().append_simulations(  # noqa: E731
                a["theta"], a["x"]
            )
            what = f"append_simulations {argument} {label}"
            results.append(_check(call, ok, (f"`{argument}`",), what))
    return results


def _map_at(trainer: Any, x: object, name: str) -> object:
    """``set_default_x(x)`` on a fresh posterior, then its ``map`` if it has
    one (a density with a gradient)."""
    posterior = trainer.build_posterior().set_default_x(x)
    return posterior.map(**MAP) if name in MAPS else posterior


def _fuzz_x(name: str, trainer: Any) -> list[str | None]:
    posterior = trainer.build_posterior()
    density = name != "INN mmd"
    theta = torch.zeros(3, 2)
    results = []
    for label, value, valid in _arrays(2, 1, one=True):
        calls = {
            "sample": lambda v=value: posterior.sample(
                (3,), x=v, show_progress_bars=False
            ),
            # sbi takes the `x` of `map` only through `set_default_x`.
            "set_default_x": lambda v=value: _map_at(trainer, v, name),
        }
        if density:
            calls["log_prob"] = lambda v=value: posterior.log_prob(theta, x=v)
            calls["log_prob at"] = lambda v=value: posterior.log_prob(v, x=X_O)
        for method, call in calls.items():
            names, ok = ("`x`", "x_o"), valid
            if method == "log_prob at":  # several parameter sets are fine
                names, ok = ("`theta`",), valid or label == "batch"
            results.append(_check(call, ok, names, f"{method} {label}"))
    return results


def _fuzz_batches(name: str, trainer: Any) -> list[str | None]:
    posterior = trainer.build_posterior()
    results = []
    for label, value, valid in _arrays(2, 2, one=False):
        call = lambda v=value: posterior.sample_batched(  # noqa: E731
            (3,), x=v, show_progress_bars=False
        )
        results.append(_check(call, valid, ("`x`",), f"sample_batched {label}"))
        if name != "INN mmd":
            at = lambda v=value: posterior.log_prob_batched(  # noqa: E731
                torch.zeros(3, 2, 2), x=v
            )
            ok = valid and label != "batch"  # 4 conditions for 2 parameter sets
            results.append(_check(at, ok, ("`x`",), f"log_prob_batched {label}"))
    bad = [(-1,), (2.5,), "3", [[2]], torch.tensor([2.0]), None, (True,)]
    good = [3, (2,), torch.Size([2, 1]), torch.tensor([2])]
    for shape, valid in [(s, False) for s in bad] + [(s, True) for s in good]:
        draw = lambda s=shape: posterior.sample(  # noqa: E731
            s, x=X_O, show_progress_bars=False
        )
        results.append(_check(draw, valid, ("`sample_shape`",), f"shape {shape!r}"))
    return results


def test_fuzz_bad_shapes_dtypes_and_values(trained):
    name, trainer = trained
    assert isinstance(trainer.build_posterior(), CheckedDirectPosterior)
    results = _fuzz_append(name) + _fuzz_x(name, trainer) + _fuzz_batches(name, trainer)
    failures = [result for result in results if result is not None]
    print(f"fuzz {name}: {len(results)} cases")
    assert not failures, "\n".join(failures)
    assert len(results) >= 150


def test_posteriors_without_map_say_so(trained):
    name, trainer = trained
    posterior = trainer.build_posterior().set_default_x(X_O)
    if name in MAPS:
        with time_limit(10):
            assert posterior.map(**MAP).isfinite().all()
        return
    with time_limit(10):
        if name == "INN mmd":  # a sampler: no density
            with pytest.raises(AttributeError, match="no `log_prob`"):
                posterior.log_prob(torch.zeros(3, 2), x=X_O)
            with pytest.raises(AttributeError, match="no `log_prob`"):
                posterior.map(**MAP)
        else:  # a density without a gradient
            with pytest.raises(NotImplementedError, match="gradient of `log_prob`"):
                posterior.map(**MAP)


def test_sample_takes_sbi_rejection_options(trained):
    _, trainer = trained
    posterior = trainer.build_posterior(prior=FAR_PRIOR)
    with time_limit(20), pytest.warns(UserWarning, match="outside"):
        samples = posterior.sample(
            (20,), x=X_O, reject_outside_prior=False, show_progress_bars=False
        )
    assert samples.shape == (20, 2) and samples.isfinite().all()
    with time_limit(20), pytest.raises(RuntimeError, match="max_sampling_time"):
        posterior.sample((20,), x=X_O, max_sampling_time=0.5, show_progress_bars=False)
    with time_limit(20), pytest.raises(RuntimeError, match="max_sampling_time"):
        posterior.sample_batched(
            (5,), x=X_O.repeat(2, 1), max_sampling_time=0.5, show_progress_bars=False
        )
    near = trainer.build_posterior()
    with time_limit(20):
        samples = near.sample((20,), x=X_O, max_sampling_time=5.0)
    assert samples.shape == (20, 2) and samples.isfinite().all()
