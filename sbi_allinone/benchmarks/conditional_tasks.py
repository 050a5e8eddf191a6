"""Tasks with a tractable joint density, for the Simformer's all-conditional benchmark.

Each task defines a joint distribution over ``v = [theta, x]`` (one flat vector per
row, parameters first) that can be sampled and whose log-density is known in closed
form, so that reference samples of *any* conditional can be drawn by MCMC (see
:mod:`.conditional_references`). The tasks follow the Simformer paper (Gloeckler et
al., ICML 2024):

- ``tree`` (3 parameters, 4 data): theta_1 ~ N(0, 1); theta_2, theta_3 ~ N(theta_1, 1);
  x_1 ~ N(sin² theta_2, 0.2²), x_2 ~ N(0.1 theta_2², 0.2²), x_3 ~ N(0.1 theta_3², 0.6²),
  x_4 ~ N(cos² theta_3, 0.1²).
- ``markov_chain`` (10 parameters, 10 data): theta_0 ~ N(0, 0.5²),
  theta_i ~ N(theta_(i-1), 0.5²); x_i ~ N(theta_i², 0.5²).
- ``two_moons`` (2, 2): sbibm's simulator under a U(-1, 1)² prior. With
  u = x - (0.25, 0) - (-|theta_1 + theta_2| / √2, (theta_2 - theta_1) / √2) the
  simulator sets u = r (cos a, sin a), a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²). The map
  (a, r) -> u is a bijection from (-π/2, π/2) x (R \\ {0}) onto the plane minus the
  line u_1 = 0 (r > 0 gives u_1 > 0, the negligible r < 0 gives u_1 < 0), with
  Jacobian |r| = |u|, so that
  p(x | theta) = N(sign(u_1) |u|; 0.1, 0.01²) / (π |u|) exactly.
- ``slcp`` (5, 8): sbibm's simulator under a U(-3, 3)⁵ prior: four i.i.d. 2-D points
  ~ N((theta_0, theta_1), S), s_1 = theta_2², s_2 = theta_3², rho = tanh theta_4,
  S = [[s_1² + 1e-6, rho s_1 s_2], [rho s_1 s_2, s_2² + 1e-6]] (sbibm's jitter).

``log_joint`` is ``-inf`` outside the prior's support.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Generator, Tensor

from sbi_allinone.benchmarks.graphs import task_graph
from sbi_allinone.simformer.masks import adjacency_from_parents

__all__ = [
    "CONDITIONAL_TASKS",
    "MASK_KINDS",
    "ConditionalTask",
    "conditional_task",
    "evaluation_masks",
    "two_moons_log_likelihood",
]

MaskKind = Literal["posterior", "likelihood", "mixed", "random"]
MASK_KINDS: tuple[str, ...] = ("posterior", "likelihood", "mixed", "random")
_LOG_2PI = math.log(2 * math.pi)
_SLCP_JITTER = 1e-6


@dataclass(frozen=True)
class ConditionalTask:
    """A joint distribution over ``[theta, x]`` with sampler, density and DAG.

    The joint factorises over ``blocks`` (groups of entries, in topological order:
    single entries, or entries sharing simulator noise such as two moons' data), so
    that a reference sampler can drop latent blocks without conditioned
    descendants and simulate them afterwards.

    Attributes:
        name: Task name.
        num_parameters: Number of parameters (the first entries of a joint vector).
        num_data: Number of data entries.
        blocks: Entry indices of each factor of the joint, in topological order.
    """

    name: str
    num_parameters: int
    num_data: int
    blocks: tuple[tuple[int, ...], ...]
    _simulate: Callable[[Tensor, Tensor, Generator | None], Tensor]
    _log_factors: Callable[[Tensor], Tensor]
    _graph: Callable[[], Tensor]

    @property
    def dim(self) -> int:
        """Number of variables, ``num_parameters + num_data``."""
        return self.num_parameters + self.num_data

    def sample_joint(self, num: int, generator: Generator | None = None) -> Tensor:
        """Draw from the joint (prior, then simulator).

        Args:
            num: Number of samples.
            generator: Random number generator (torch's global one if None).

        Returns:
            Joint samples ``(num, dim)``, parameters first.
        """
        everything = torch.ones(self.dim, dtype=torch.bool)
        return self._simulate(torch.zeros(num, self.dim), everything, generator)

    def resimulate(
        self, v: Tensor, resample: Tensor, generator: Generator | None = None
    ) -> Tensor:
        """Redraw some entries from their conditionals given their parents.

        Only valid for whole blocks whose children are redrawn too (then the result
        is a draw of the redrawn entries given the others).

        Args:
            v: Joint vectors ``(n, dim)``.
            resample: ``(dim,)`` booleans, ``True`` for entries to redraw.
            generator: Random number generator.

        Returns:
            Joint vectors ``(n, dim)`` with the ``resample`` entries redrawn.
        """
        return self._simulate(v.clone(), resample.bool(), generator)

    def log_factors(self, v: Tensor) -> Tensor:
        """Log-density of each block given its parents.

        Args:
            v: Joint vectors ``(n, dim)``, parameters first.

        Returns:
            ``(n, len(blocks))``; their sum is :meth:`log_joint`.
        """
        if v.dim() != 2 or v.shape[1] != self.dim:
            raise ValueError(
                f"Expected joint vectors of shape (n, {self.dim}) for task "
                f"{self.name!r}, got {tuple(v.shape)}."
            )
        return self._log_factors(v)

    def log_joint(self, v: Tensor) -> Tensor:
        """Exact log-density of the joint, ``log p(theta) + log p(x | theta)``.

        Args:
            v: Joint vectors ``(n, dim)``, parameters first.

        Returns:
            Log-densities ``(n,)``; ``-inf`` outside the prior's support.
        """
        return self.log_factors(v).sum(dim=1)

    def graph(self) -> Tensor:
        """Dependency DAG over ``[theta, x]``.

        Returns:
            Boolean adjacency ``(dim, dim)``, row = child, column = parent.
        """
        return self._graph()


def _normal_log_prob(value: Tensor, mean: Tensor | float, std) -> Tensor:
    return -0.5 * ((value - mean) / std) ** 2 - torch.log(std) - 0.5 * _LOG_2PI


LocScale = Callable[[Tensor], tuple[Tensor, Tensor]]


def _loc_scale_simulate(
    loc_scale: LocScale,
    uniform: tuple[bool, ...],
    v: Tensor,
    resample: Tensor,
    generator: Generator | None,
) -> Tensor:
    # Entry i = loc_i(parents) + scale_i(parents) * noise, with standard normal or
    # U(-1, 1) noise, filled in index (topological) order.
    normal = torch.randn(v.shape, generator=generator, dtype=v.dtype)
    flat = 2 * torch.rand(v.shape, generator=generator, dtype=v.dtype) - 1
    for i in torch.nonzero(resample).flatten().tolist():
        loc, scale = loc_scale(v)
        noise = flat[:, i] if uniform[i] else normal[:, i]
        v[:, i] = loc[:, i] + scale[:, i] * noise
    return v


def _loc_scale_log_factors(
    loc_scale: LocScale, uniform: tuple[bool, ...], v: Tensor
) -> Tensor:
    loc, scale = loc_scale(v)
    gaussian = _normal_log_prob(v, loc, scale)
    inside = (v - loc).abs() <= scale
    flat = torch.where(inside, -torch.log(2 * scale), -math.inf)
    return torch.where(torch.tensor(uniform), flat, gaussian)


def _loc_scale_task(
    name: str, sizes: tuple[int, int], loc_scale: LocScale, uniform, graph
) -> ConditionalTask:
    dim = sum(sizes)
    uniform = tuple(uniform) + (False,) * (dim - len(uniform))
    return ConditionalTask(
        name,
        *sizes,
        tuple((i,) for i in range(dim)),
        functools.partial(_loc_scale_simulate, loc_scale, uniform),
        functools.partial(_loc_scale_log_factors, loc_scale, uniform),
        graph,
    )


def _tree_loc_scale(v: Tensor) -> tuple[Tensor, Tensor]:
    # Tree: theta_1 -> theta_2, theta_3; theta_2 -> x_1, x_2; theta_3 -> x_3, x_4.
    t1, t2, t3 = v[:, 0], v[:, 1], v[:, 2]
    prior = [torch.zeros_like(t1), t1, t1]
    data = [torch.sin(t2) ** 2, 0.1 * t2**2, 0.1 * t3**2, torch.cos(t3) ** 2]
    loc = torch.stack(prior + data, dim=1)
    scale = torch.tensor([1.0, 1.0, 1.0, 0.2, 0.2, 0.6, 0.1], dtype=v.dtype)
    return loc, scale.expand_as(loc)


_TREE_PARENTS = {1: [0], 2: [0], 3: [1], 4: [1], 5: [2], 6: [2]}
_CHAIN_LENGTH = 10
_CHAIN_STD = 0.5


def _markov_chain_loc_scale(v: Tensor) -> tuple[Tensor, Tensor]:
    # theta_0 ~ N(0, .5^2), theta_i ~ N(theta_(i-1), .5^2), x_i ~ N(theta_i^2, .5^2).
    theta = v[:, :_CHAIN_LENGTH]
    previous = torch.cat([torch.zeros_like(theta[:, :1]), theta[:, :-1]], dim=1)
    loc = torch.cat([previous, theta**2], dim=1)
    return loc, torch.full_like(loc, _CHAIN_STD)


def _markov_chain_graph() -> Tensor:
    parents = {i: [i - 1] for i in range(1, _CHAIN_LENGTH)}
    parents.update({_CHAIN_LENGTH + i: [i] for i in range(_CHAIN_LENGTH)})
    return adjacency_from_parents(parents, 2 * _CHAIN_LENGTH)


def _slcp_loc_scale(v: Tensor) -> tuple[Tensor, Tensor]:
    # theta ~ U(-3, 3)^5; per point, a ~ N(theta_0, var_a) and b | a Gaussian.
    theta, a = v[:, :5], v[:, 5::2]
    s1, s2, rho = theta[:, 2:3] ** 2, theta[:, 3:4] ** 2, torch.tanh(theta[:, 4:5])
    var_a, var_b, cov = s1**2 + _SLCP_JITTER, s2**2 + _SLCP_JITTER, rho * s1 * s2
    loc_b = theta[:, 1:2] + cov / var_a * (a - theta[:, :1])
    scale_b = (var_b - cov**2 / var_a).clamp_min(1e-30).sqrt().expand_as(a)
    loc_x = torch.stack([theta[:, :1].expand_as(a), loc_b], dim=2).reshape(-1, 8)
    scale_x = torch.stack([var_a.sqrt().expand_as(a), scale_b], 2).reshape(-1, 8)
    loc = torch.cat([torch.zeros_like(theta), loc_x], dim=1)
    return loc, torch.cat([torch.full_like(theta, 3.0), scale_x], dim=1)


# Two moons (sbibm), prior U(-1, 1)^2; blocks theta_1, theta_2 and x = (x_1, x_2).
_MOON_RADIUS, _MOON_RADIUS_STD, _MOON_SHIFT = 0.1, 0.01, 0.25


def _moons_offset(theta: Tensor) -> Tensor:
    sum_, diff = theta[:, 0] + theta[:, 1], theta[:, 1] - theta[:, 0]
    return torch.stack([-sum_.abs(), diff], dim=1) / math.sqrt(2)


def _two_moons_simulate(
    v: Tensor, resample: Tensor, generator: Generator | None
) -> Tensor:
    n = len(v)
    theta = 2 * torch.rand(n, 2, generator=generator, dtype=v.dtype) - 1
    angle = math.pi * (torch.rand(n, generator=generator, dtype=v.dtype) - 0.5)
    radius = torch.randn(n, generator=generator, dtype=v.dtype)
    radius = _MOON_RADIUS + _MOON_RADIUS_STD * radius
    v[:, :2] = torch.where(resample[:2], theta, v[:, :2])
    if resample[2:].any():
        points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)
        v[:, 2:] = points + _moons_offset(v[:, :2])
        v[:, 2] += _MOON_SHIFT
    return v


def two_moons_log_likelihood(theta: Tensor, x: Tensor) -> Tensor:
    """Exact ``log p(x | theta)`` of sbibm's two-moons simulator.

    Args:
        theta: Parameters ``(n, 2)``.
        x: Data ``(n, 2)``.

    Returns:
        Log-likelihoods ``(n,)`` (finite everywhere except on a null set).
    """
    u = x - _moons_offset(theta)
    u = torch.stack([u[:, 0] - _MOON_SHIFT, u[:, 1]], dim=1)
    norm = u.norm(dim=1)
    signed_radius = torch.where(u[:, 0] >= 0, norm, -norm)
    std = torch.tensor(_MOON_RADIUS_STD, dtype=x.dtype)
    log_radius_density = _normal_log_prob(signed_radius, _MOON_RADIUS, std)
    return log_radius_density - math.log(math.pi) - torch.log(norm)


def _two_moons_log_factors(v: Tensor) -> Tensor:
    theta = v[:, :2]
    prior = torch.where(theta.abs() <= 1, -math.log(2.0), -math.inf).to(v.dtype)
    return torch.cat([prior, two_moons_log_likelihood(theta, v[:, 2:])[:, None]], 1)


_TWO_MOONS = ConditionalTask(
    "two_moons",
    *(2, 2),
    ((0,), (1,), (2, 3)),
    _two_moons_simulate,
    _two_moons_log_factors,
    lambda: task_graph("two_moons"),
)
_CHAIN_SIZES = (_CHAIN_LENGTH, _CHAIN_LENGTH)
_TREE_GRAPH = functools.partial(adjacency_from_parents, _TREE_PARENTS, 7)
CONDITIONAL_TASKS: dict[str, ConditionalTask] = {
    "tree": _loc_scale_task("tree", (3, 4), _tree_loc_scale, (), _TREE_GRAPH),
    "markov_chain": _loc_scale_task(
        "markov_chain", _CHAIN_SIZES, _markov_chain_loc_scale, (), _markov_chain_graph
    ),
    "two_moons": _TWO_MOONS,
    "slcp": _loc_scale_task(
        "slcp", (5, 8), _slcp_loc_scale, (True,) * 5, lambda: task_graph("slcp")
    ),
}


def conditional_task(name: str) -> ConditionalTask:
    """Look up an all-conditional benchmark task.

    Args:
        name: One of ``tree``, ``markov_chain``, ``two_moons``, ``slcp``.

    Returns:
        The task.

    Raises:
        ValueError: For an unknown name.
    """
    try:
        return CONDITIONAL_TASKS[name]
    except KeyError:
        raise ValueError(
            f"Unknown conditional task {name!r}; known: {', '.join(CONDITIONAL_TASKS)}."
        ) from None


def _is_valid(masks: Tensor, kind: str, num_parameters: int) -> Tensor:
    if kind == "random":  # neither everything nor nothing conditioned
        return masks.any(dim=1) & ~masks.all(dim=1)
    theta, x = masks[:, :num_parameters], masks[:, num_parameters:]
    split = (  # mixed: both blocks partly conditioned, partly latent
        theta.any(dim=1) & ~theta.all(dim=1) & x.any(dim=1) & ~x.all(dim=1)
    )
    return split


def evaluation_masks(
    task: ConditionalTask,
    num: int,
    kind: MaskKind,
    generator: Generator | None = None,
) -> Tensor:
    """Condition masks for evaluation, ``True`` for conditioned (observed) entries.

    - ``posterior``: all data conditioned, all parameters latent.
    - ``likelihood``: all parameters conditioned, all data latent.
    - ``mixed``: some, but not all, parameters and some, but not all, data
      conditioned (each entry with probability 1/2, redrawn until valid). Needs at
      least two parameters and two data entries.
    - ``random``: every entry conditioned with probability 1/2, redrawn while all or
      none are conditioned. The unconditional joint (nothing conditioned) is left
      out on purpose: it has no observation, and its reference is exact
      :meth:`ConditionalTask.sample_joint`.

    Args:
        task: The task.
        num: Number of masks.
        kind: One of :data:`MASK_KINDS`.
        generator: Random number generator for the random kinds.

    Returns:
        Boolean masks ``(num, task.dim)``.
    """
    p = task.num_parameters
    if kind in ("posterior", "likelihood"):
        row = torch.arange(task.dim) >= p
        return (row if kind == "posterior" else ~row).expand(num, -1).clone()
    if kind not in MASK_KINDS:
        raise ValueError(f"Unknown mask kind {kind!r}; known: {', '.join(MASK_KINDS)}.")
    if kind == "mixed" and min(p, task.num_data) < 2:
        raise ValueError(f"Task {task.name!r} is too small for mixed masks.")
    masks = torch.rand(num, task.dim, generator=generator) < 0.5
    invalid = ~_is_valid(masks, kind, p)
    while invalid.any():
        redrawn = torch.rand(int(invalid.sum()), task.dim, generator=generator) < 0.5
        masks[invalid] = redrawn
        invalid = ~_is_valid(masks, kind, p)
    return masks
