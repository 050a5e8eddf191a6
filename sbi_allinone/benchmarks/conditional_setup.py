"""Set-up of the all-conditional benchmark (:mod:`.conditionals`): its settings,
cells, evaluation masks and observations, training data and parameter priors, and
which conditionals each method has.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from sbi.utils import BoxUniform
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal

from sbi_allinone.benchmarks.cells import Cell, RunSettings, make_cells
from sbi_allinone.benchmarks.conditional_references import DEFAULT_CACHE_DIR
from sbi_allinone.benchmarks.conditional_tasks import (
    MASK_KINDS,
    ConditionalTask,
    conditional_task,
    evaluation_masks,
)
from sbi_allinone.benchmarks.methods import parse_method_spec

__all__ = [
    "SIMFORMER_ATTENTION",
    "ConditionalSettings",
    "EvaluationMask",
    "conditional_cells",
    "evaluation_conditions",
    "joint_simulations",
    "method_mask_kinds",
    "parameter_prior",
    "seed_of",
]

#: The Simformer's registry names and their attention.
SIMFORMER_ATTENTION = {
    "simformer": "dense",
    "simformer_undirected": "undirected",
    "simformer_directed": "directed",
}
_LIKELIHOOD_METHODS = ("nle",)


@dataclass(frozen=True)
class ConditionalSettings:
    """What every cell of an all-conditional sweep is scored on.

    Args:
        masks_per_kind: Condition masks (each with its observation) per kind.
        mask_kinds: Kinds of :data:`~.conditional_tasks.MASK_KINDS`.
        num_samples: Samples per conditional, of the method and of the reference.
        classifier: C2ST classifier(s), as :class:`~.cells.RunSettings`.
        threads: Torch (and BLAS) threads; ``None`` leaves the defaults.
        max_sampling_time: Seconds of prior rejection per posterior sample set
            (NPE), as :class:`~.cells.RunSettings`.
        device: Device of the torch C2ST.
        cache_dir: Cache of the MCMC references; ``None`` disables it.
        show_progress_bars: Show training progress bars.
    """

    masks_per_kind: int = 2
    mask_kinds: tuple[str, ...] = ("posterior", "likelihood", "mixed")
    num_samples: int = 10_000
    classifier: str = "mlp"
    threads: int | None = None
    max_sampling_time: float = 120.0
    device: str = "cpu"
    cache_dir: str | None = str(DEFAULT_CACHE_DIR)
    show_progress_bars: bool = False

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.mask_kinds if kind not in MASK_KINDS]
        if unknown or not self.mask_kinds:
            raise ValueError(
                f"`mask_kinds` must be some of {', '.join(MASK_KINDS)}, got "
                f"{self.mask_kinds}."
            )
        if self.masks_per_kind < 1:
            raise ValueError(
                f"`masks_per_kind` must be positive, got {self.masks_per_kind}."
            )
        self.run_settings()  # validates classifier, num_samples, sampling time

    def run_settings(self) -> RunSettings:
        """The runner's settings of the same scoring (for its sampler and C2ST)."""
        return RunSettings(
            num_samples=self.num_samples,
            classifier=self.classifier,
            threads=self.threads,
            max_sampling_time=self.max_sampling_time,
            device=self.device,
        )


@dataclass(frozen=True)
class EvaluationMask:
    """One conditional of the benchmark.

    Attributes:
        kind: Mask kind (``posterior``, ``likelihood``, ``mixed``, ``random``).
        index: Index among the masks of its kind.
        mask: ``(dim,)`` booleans, ``True`` for conditioned entries.
        observation_seed: Seed of the joint draw providing the observation.
    """

    kind: str
    index: int
    mask: Tensor
    observation_seed: int

    @property
    def bits(self) -> str:
        """The mask as a bit string over ``[theta, x]``, ``1`` = conditioned."""
        return "".join("1" if m else "0" for m in self.mask.tolist())


def seed_of(*parts: object) -> int:
    """A stable seed from names and numbers (CRC-32 of ``"a/b/..."``)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def evaluation_conditions(
    task: ConditionalTask, kinds: Iterable[str], masks_per_kind: int
) -> list[EvaluationMask]:
    """The masks and observation seeds of a sweep, the same for every cell.

    Mask ``i`` of a kind and its observation seed depend on (task, kind, ``i``)
    only, so that asking for more masks keeps the first ones.

    Args:
        task: The task.
        kinds: Mask kinds.
        masks_per_kind: Masks per kind.

    Returns:
        The conditionals, kind by kind.
    """
    conditions = []
    for kind in kinds:
        for index in range(masks_per_kind):
            seed = seed_of("conditional", task.name, kind, index)
            generator = torch.Generator().manual_seed(seed)
            mask = evaluation_masks(task, 1, kind, generator)[0]
            conditions.append(EvaluationMask(kind, index, mask, seed))
    return conditions


def parameter_prior(task: ConditionalTask) -> Distribution:
    """The exact marginal of ``theta`` of a task, as a torch distribution.

    ``tree``: theta_1 ~ N(0, 1), theta_2, theta_3 ~ N(theta_1, 1), a Gaussian with
    covariance [[1, 1, 1], [1, 2, 1], [1, 1, 2]]; ``markov_chain``: a Gaussian
    random walk, Cov(theta_i, theta_j) = 0.25 (min(i, j) + 1); ``two_moons`` and
    ``slcp``: sbibm's box priors.

    Args:
        task: The task.

    Returns:
        Prior over ``(num_parameters,)`` vectors.
    """
    if task.name == "tree":
        covariance = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]])
        return MultivariateNormal(torch.zeros(3), covariance)
    if task.name == "markov_chain":
        steps = torch.arange(task.num_parameters)
        covariance = 0.25 * (torch.minimum(steps[:, None], steps[None]) + 1)
        return MultivariateNormal(torch.zeros(task.num_parameters), covariance.float())
    bound = {"two_moons": 1.0, "slcp": 3.0}[task.name]
    ones = torch.ones(task.num_parameters)
    return BoxUniform(-bound * ones, bound * ones)


def joint_simulations(cell: Cell, task: ConditionalTask) -> tuple[Tensor, Tensor]:
    """A cell's training data: ``budget`` joint draws, shared by all its methods.

    Args:
        cell: The cell; its method does not matter.
        task: ``conditional_task(cell.task)``.

    Returns:
        ``theta`` ``(budget, num_parameters)`` and ``x`` ``(budget, num_data)``.
    """
    generator = torch.Generator().manual_seed(
        seed_of("conditional", cell.task, cell.budget, cell.seed)
    )
    joint = task.sample_joint(cell.budget, generator)
    return joint[:, : task.num_parameters], joint[:, task.num_parameters :]


def method_mask_kinds(method: str) -> tuple[str, ...]:
    """The mask kinds a method has a conditional for (see the module docstring).

    Args:
        method: A registry name, with or without options.

    Returns:
        Kinds of :data:`~.conditional_tasks.MASK_KINDS`.
    """
    base, _ = parse_method_spec(method)
    if base in SIMFORMER_ATTENTION:
        return MASK_KINDS
    return ("likelihood",) if base in _LIKELIHOOD_METHODS else ("posterior",)


def conditional_cells(
    tasks: Iterable[str],
    methods: Iterable[str],
    budgets: Iterable[int],
    seeds: Iterable[int],
) -> list[Cell]:
    """All cells of a sweep, small budgets first; unknown names raise ``ValueError``.

    Args:
        tasks: Names of :data:`~.conditional_tasks.CONDITIONAL_TASKS`.
        methods: Registry names, with options.
        budgets: Joint draws to train on (at least 2).
        seeds: Seeds of the data and the training.

    Returns:
        The cells.
    """
    return make_cells(tasks, methods, budgets, seeds, check_task=conditional_task)
