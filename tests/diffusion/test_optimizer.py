"""The optimizer of the live weights, and denormal flushing."""

import torch
from torch import nn

from sbi_allinone.diffusion import flush_denormal, live_adam, weight_average


def test_live_adam_leaves_the_weight_average_out_and_keeps_the_rate():
    module = nn.Module()
    module.net = nn.Linear(3, 2)
    module.average = weight_average(module.net, 0.99)
    sbi_adam = torch.optim.Adam(module.parameters(), lr=3e-4)
    adam = live_adam(sbi_adam, module, "cpu")
    (group,) = adam.param_groups
    assert group["lr"] == 3e-4 and group["fused"]
    assert {id(p) for p in group["params"]} == {id(p) for p in module.net.parameters()}
    # Called again (every epoch, or on a resumed run) it keeps its optimizer.
    assert live_adam(adam, module, "cpu") is adam


def test_flush_denormal_flushes_inside_only():
    tiny = torch.tensor([1e-40])
    with flush_denormal():
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() > 0.0
