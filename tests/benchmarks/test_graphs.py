"""Task dependency graphs: DAGs whose missing edges are true independences."""

import pytest
import torch

from sbi_allinone.benchmarks import get_task
from sbi_allinone.benchmarks.graphs import GRAPH_TASKS, task_graph
from sbi_allinone.simformer.masks import check_dag


@pytest.mark.parametrize("name", GRAPH_TASKS)
def test_graphs_are_dags_over_theta_and_x(name):
    task = get_task(name)
    graph = check_dag(task_graph(name))
    num_parameters = task.prior.sample((1,)).shape[1]
    num_nodes = num_parameters + task.get_observation(1).shape[1]
    assert graph.shape == (num_nodes, num_nodes)
    # Parameters have no parents: the prior factorizes in all four tasks.
    assert not graph[:num_parameters].any()


@pytest.mark.parametrize("name", ["gaussian_linear", "slcp"])
def test_data_ignore_parameters_that_are_not_their_parents(name):
    # With the simulator's noise fixed, changing a parameter that is not an
    # ancestor of a data entry must leave it unchanged.
    task, graph = get_task(name), task_graph(name)
    ancestors = graph.clone()
    for _ in range(len(graph)):
        ancestors |= (ancestors.int() @ graph.int()) > 0
    torch.manual_seed(0)
    theta = task.prior.sample((50,))
    num_parameters = theta.shape[1]
    torch.manual_seed(1)
    x = task.simulate(theta)
    for j in range(num_parameters):
        moved = theta.clone()
        moved[:, j] += 0.3
        torch.manual_seed(1)
        changed = (task.simulate(moved) - x).abs().amax(dim=0) > 1e-5
        assert not (changed & ~ancestors[num_parameters:, j]).any(), (name, j)
        if name == "gaussian_linear":  # no data-to-data edges: exactly the parents
            assert torch.equal(changed, graph[num_parameters:, j])


def test_unknown_task_graph_is_a_clear_error():
    with pytest.raises(ValueError, match="No dependency graph .* 'sir'"):
        task_graph("sir")
