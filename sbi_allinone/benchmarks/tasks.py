"""sbibm's ten benchmark tasks, working on sbi >= 0.27 and torch 2.x.

sbibm 1.1.0 pins an old sbi and breaks on current torch in three places; this module
uses its priors, simulators, observations and shipped reference posteriors where they
work and replaces the broken parts:

- ``slcp_distractors``: sbibm's simulator calls ``torch.load`` on its shipped mixture
  model at every call, which fails under ``weights_only=True``; here the two trusted
  files that ship inside the sbibm wheel are loaded once with ``weights_only=False``.
- ``sir`` and ``lotka_volterra``: sbibm solves the ODEs in Julia (``diffeqtorch``);
  here they run on the torch re-implementation in :mod:`.ode_models`, whose
  faithfulness to the shipped observations and reference posteriors is tested in
  ``tests/benchmarks/test_ode_models.py``.

sbibm must be installed without its dependencies (``pip install --no-deps
sbibm==1.1.0``) next to ``pyro-ppl`` and ``pandas`` (the ``bench`` extra).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["TASK_NAMES", "Task", "check_task_name", "get_task"]

TASK_NAMES: tuple[str, ...] = (
    "gaussian_linear",
    "gaussian_linear_uniform",
    "slcp",
    "slcp_distractors",
    "bernoulli_glm",
    "bernoulli_glm_raw",
    "gaussian_mixture",
    "two_moons",
    "sir",
    "lotka_volterra",
)
"""The ten sbibm tasks, by sbibm's names."""

NUM_OBSERVATIONS = 10

# Tasks whose observation is not sbibm's default `observation.csv`.
_OBSERVATION_FILES = {
    "bernoulli_glm_raw": "observation_raw.csv",
    "slcp_distractors": "observation_distractors.csv",
}


class Task:
    """One benchmark task: prior, batched simulator, observations, reference posteriors.

    It offers the accessors of ``sbibm.tasks.Task`` that algorithms use
    (``get_prior_dist``, ``get_prior``, ``get_simulator``, ``get_observation``,
    ``get_true_parameters``, ``get_reference_posterior_samples``), so scripts written
    for sbibm accept it in place of an sbibm task.

    Args:
        name: sbibm's name of the task.
        prior: Prior over parameters, a torch ``Distribution`` with event shape
            ``(dim_parameters,)``.
        simulator: Batched simulator, ``(batch, dim_parameters) -> (batch, dim_data)``.
        files_dir: Folder holding sbibm's ``num_observation_{i}`` sub-folders.
        dim_parameters: Number of parameters.
        dim_data: Number of data dimensions.
        observation_file: File name of the observation inside each sub-folder.
    """

    def __init__(
        self,
        name: str,
        prior: Distribution,
        simulator: Callable[[Tensor], Tensor],
        files_dir: Path,
        dim_parameters: int,
        dim_data: int,
        observation_file: str = "observation.csv",
    ) -> None:
        self.name = name
        self.prior = prior
        self._simulator = simulator
        self.files_dir = files_dir
        self.dim_parameters = dim_parameters
        self.dim_data = dim_data
        self.num_observations = NUM_OBSERVATIONS
        self._observation_file = observation_file

    def __repr__(self) -> str:
        return (
            f"Task(name={self.name!r}, dim_parameters={self.dim_parameters}, "
            f"dim_data={self.dim_data})"
        )

    def simulate(self, theta: Tensor) -> Tensor:
        """Simulate data for a batch of parameters.

        Args:
            theta: Parameters, shape ``(batch, dim_parameters)``.

        Returns:
            Data, shape ``(batch, dim_data)``, float32. Rows of failed simulations
            are NaN (as in sbibm; sbi's trainers drop them).
        """
        if theta.ndim != 2 or theta.shape[1] != self.dim_parameters:
            raise ValueError(
                f"`theta` must have shape (batch, {self.dim_parameters}) for task "
                f"{self.name!r}, got {tuple(theta.shape)}."
            )
        return self._simulator(theta).reshape(theta.shape[0], self.dim_data).float()

    def get_prior_dist(self) -> Distribution:
        """Return the prior distribution (sbibm's accessor)."""
        return self.prior

    def get_prior(self) -> Callable[[int], Tensor]:
        """Return ``prior(num_samples) -> (num_samples, dim_parameters)`` (sbibm's)."""
        return lambda num_samples=1: self.prior.sample((num_samples,))

    def get_simulator(self, max_calls: int | None = None) -> Callable[[Tensor], Tensor]:
        """Return the batched simulator (sbibm's accessor; ``max_calls`` is ignored)."""
        return self.simulate

    def get_observation(self, num_observation: int) -> Tensor:
        """Return observation ``num_observation`` (1–10), shape ``(1, dim_data)``."""
        return self._read(num_observation, self._observation_file)

    def get_true_parameters(self, num_observation: int) -> Tensor:
        """Return the parameters behind an observation, ``(1, dim_parameters)``."""
        return self._read(num_observation, "true_parameters.csv")

    def get_reference_posterior_samples(self, num_observation: int) -> Tensor:
        """Return sbibm's reference posterior samples, ``(10000, dim_parameters)``."""
        return self._read(num_observation, "reference_posterior_samples.csv.bz2")

    def _read(self, num_observation: int, file_name: str) -> Tensor:
        if num_observation not in range(1, self.num_observations + 1):
            raise ValueError(
                f"`num_observation` must be in 1..{self.num_observations}, "
                f"got {num_observation}."
            )
        return _read_csv(
            self.files_dir / f"num_observation_{num_observation}" / file_name
        )


@functools.lru_cache(maxsize=256)
def _read_csv_cached(path: str) -> Tensor:
    from sbibm.utils.io import get_tensor_from_csv

    return get_tensor_from_csv(path).float()


def _read_csv(path: Path) -> Tensor:
    # Reference files are bz2-compressed CSVs: read each once per process.
    return _read_csv_cached(str(path)).clone()


def get_task(name: str) -> Task:
    """Return one of sbibm's ten tasks, ready for sbi >= 0.27.

    Args:
        name: One of :data:`TASK_NAMES`.

    Returns:
        The task.

    Example:
        >>> task = get_task("two_moons")
        >>> task.simulate(task.prior.sample((3,))).shape
        torch.Size([3, 2])
    """
    check_task_name(name)
    _require_sbibm()
    if name == "slcp_distractors":
        return _slcp_distractors()
    if name in ("sir", "lotka_volterra"):
        return _ode_task(name)
    return _sbibm_task(name)


def check_task_name(name: str) -> None:
    """Raise a ``ValueError`` listing the tasks unless ``name`` is one of them."""
    if name not in TASK_NAMES:
        raise ValueError(f"Unknown task {name!r}; available: {', '.join(TASK_NAMES)}.")


def _require_sbibm() -> None:
    if importlib.util.find_spec("sbibm") is None:
        raise ImportError(
            "The benchmark tasks need sbibm, installed without its dependencies "
            "(it pins an old sbi): pip install 'sbi-allinone[bench]' && "
            "pip install --no-deps sbibm==1.1.0"
        )


def _sbibm_dir() -> Path:
    import sbibm

    return Path(sbibm.__file__).parent / "tasks"


def _sbibm_task(name: str) -> Task:
    import sbibm

    task = sbibm.get_task(name)
    return Task(
        name=name,
        prior=task.get_prior_dist(),
        simulator=task.get_simulator(),
        files_dir=task.path / "files",
        dim_parameters=task.dim_parameters,
        dim_data=task.dim_data,
        observation_file=_OBSERVATION_FILES.get(name, "observation.csv"),
    )


def _slcp_distractors() -> Task:
    import sbibm

    slcp = sbibm.get_task("slcp")
    files_dir = slcp.path / "files"
    # Trusted files shipped inside the sbibm wheel: a pickled mixture model and an
    # index tensor, which torch >= 2.6 only loads with weights_only=False.
    mixture = torch.load(files_dir / "gmm.torch", weights_only=False)
    permutation = torch.load(files_dir / "permutation_idx.torch", weights_only=False)
    slcp_simulator = slcp.get_simulator()

    def simulator(theta: Tensor) -> Tensor:
        data = slcp_simulator(theta).reshape(theta.shape[0], 8)
        distractors = mixture.sample((theta.shape[0],)).to(data.dtype)
        return torch.cat([data, distractors], dim=1)[:, permutation]

    return Task(
        name="slcp_distractors",
        prior=slcp.get_prior_dist(),
        simulator=simulator,
        files_dir=files_dir,
        dim_parameters=5,
        dim_data=100,
        observation_file=_OBSERVATION_FILES["slcp_distractors"],
    )


def _ode_task(name: str) -> Task:
    from sbi_allinone.benchmarks import ode_models

    if name == "sir":
        prior, simulator, dims = (
            ode_models.sir_prior(),
            ode_models.simulate_sir,
            (2, 10),
        )
    else:
        prior = ode_models.lotka_volterra_prior()
        simulator, dims = ode_models.simulate_lotka_volterra, (4, 20)
    return Task(
        name=name,
        prior=prior,
        simulator=simulator,
        files_dir=_sbibm_dir() / name / "files",
        dim_parameters=dims[0],
        dim_data=dims[1],
    )
