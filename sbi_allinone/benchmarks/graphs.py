"""Dependency graphs of the sbibm tasks, for the Simformer's attention masks.

Each graph is a DAG over ``[theta, x]`` (row = child, column = parent) built from
the task's simulator: which parameters (and which earlier data entries) every data
entry depends on. Only tasks whose structure is known from sbibm's simulators are
listed; :func:`task_graph` raises for the others.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from sbi_allinone.simformer.masks import adjacency_from_parents

__all__ = ["GRAPH_TASKS", "task_graph"]


def _both_parameters_to_both_data() -> dict:
    return {2: [0, 1], 3: [0, 1]}


def _gaussian_linear() -> Tensor:
    # x = theta + noise, independent per dimension: x_i <- theta_i.
    return adjacency_from_parents({10 + i: [i] for i in range(10)}, 20)


def _two_moons() -> Tensor:
    # Both data entries are functions of both parameters and of shared noise
    # (angle and radius), so x_2 depends on x_1 given theta.
    parents = _both_parameters_to_both_data()
    parents[3].append(2)
    return adjacency_from_parents(parents, 4)


def _gaussian_mixture() -> Tensor:
    # x ~ 0.5 N(theta, I) + 0.5 N(theta, 0.01 I): the mixture component is shared
    # by both entries, so x_2 depends on x_1 given theta.
    parents = _both_parameters_to_both_data()
    parents[3].append(2)
    return adjacency_from_parents(parents, 4)


def _slcp() -> Tensor:
    # Four i.i.d. 2-D Gaussian points, mean (theta_1, theta_2), standard deviations
    # theta_3², theta_4², correlation tanh(theta_5); data are [point 1 (a, b),
    # point 2 (a, b), ...]. Entry a depends on theta_1, theta_3 only; entry b on all
    # parameters and on its point's a; points are independent given theta.
    parents = {}
    for point in range(4):
        first, second = 5 + 2 * point, 6 + 2 * point
        parents[first] = [0, 2]
        parents[second] = [0, 1, 2, 3, 4, first]
    return adjacency_from_parents(parents, 13)


_GRAPHS: dict[str, Callable[[], Tensor]] = {
    "gaussian_linear": _gaussian_linear,
    "two_moons": _two_moons,
    "gaussian_mixture": _gaussian_mixture,
    "slcp": _slcp,
}
GRAPH_TASKS = tuple(_GRAPHS)


def task_graph(task: str) -> Tensor:
    """The dependency DAG of a benchmark task.

    Args:
        task: Task name, one of :data:`GRAPH_TASKS`.

    Returns:
        Boolean adjacency ``(num_parameters + num_data, num_parameters + num_data)``.

    Raises:
        ValueError: For a task without a known graph.
    """
    try:
        return _GRAPHS[task]()
    except KeyError:
        raise ValueError(
            f"No dependency graph is known for task {task!r}; known: "
            f"{', '.join(GRAPH_TASKS)}. Use the dense Simformer instead."
        ) from None
