"""Simformer network: shapes, masks cut information flow, condition flags matter."""

import pytest
import torch

from sbi_allinone.simformer.network import SimformerNet


def _inputs(batch=4, n=5):
    return torch.randn(batch, n), torch.rand(batch, 1), torch.zeros(batch, n).bool()


def test_shapes_and_gradients_reach_every_parameter():
    net = SimformerNet(5, num_layers=2)
    values, t, condition = _inputs()
    condition[:, 0] = True
    out = net(values, t, condition, None)
    assert out.shape == (4, 5)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_attention_mask_blocks_information_flow():
    # Two disconnected groups {0, 1} and {2, 3, 4}: no path, whatever the depth.
    net = SimformerNet(5, num_layers=3)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[:2, :2] = True
    mask[2:, 2:] = True
    values, t, condition = _inputs()
    values.requires_grad_(True)
    out = net(values, t, condition, mask.expand(4, 5, 5))
    (grad,) = torch.autograd.grad(out[:, :2].sum(), values)
    assert grad[:, 2:].abs().max() == 0 and grad[:, :2].abs().max() > 0
    dense = net(values, t, condition, None)
    (grad,) = torch.autograd.grad(dense[:, :2].sum(), values)
    assert grad[:, 2:].abs().max() > 0


def test_per_sample_masks_and_condition_flags():
    net = SimformerNet(3, num_layers=1)
    values, t, condition = _inputs(2, 3)
    masks = torch.ones(2, 3, 3, dtype=torch.bool)
    masks[1] = torch.eye(3, dtype=torch.bool)
    out = net(values, t, condition, masks)
    assert torch.allclose(
        out[0], net(values[:1], t[:1], condition[:1], None)[0], atol=1e-6
    )
    flagged = net(values, t, ~condition, masks)
    assert not torch.allclose(out, flagged)


def test_small_attention_matches_the_fused_kernel():
    from torch.nn.functional import scaled_dot_product_attention

    from sbi_allinone.simformer.network import SMALL_ATTENTION, _attention

    torch.manual_seed(0)
    n = SMALL_ATTENTION
    q, k, v = (torch.randn(3, n, 2, 5, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(3, n, n) < 0.5
    mask |= torch.eye(n, dtype=torch.bool)
    for m in (None, mask, mask[0]):
        expected = scaled_dot_product_attention(
            *(t.transpose(1, 2) for t in (q, k, v)),
            attn_mask=None if m is None else m.unsqueeze(-3),
        )
        expected = expected.transpose(1, 2).reshape(3, n, 10)
        assert torch.allclose(_attention(q, k, v, m), expected)


def test_attention_without_autograd_equals_the_differentiable_path():
    from sbi_allinone.simformer.network import SMALL_ATTENTION, _attention

    torch.manual_seed(0)
    n = SMALL_ATTENTION + 3  # the fused kernel's path
    qkv = torch.randn(4, n, 3, 2, 5, dtype=torch.float64).unbind(2)
    mask = (torch.rand(4, n, n) < 0.5) | torch.eye(n, dtype=torch.bool)
    for m in (None, mask, mask[0]):
        with torch.no_grad():
            fast = _attention(*qkv, m)
        torch.testing.assert_close(fast, _attention(*qkv, m))


def test_network_without_autograd_computes_what_it_computes_with_it():
    torch.manual_seed(0)
    net = SimformerNet(7, num_layers=2)
    for p in net.parameters():  # trained-looking weights, not zero output layers
        p.data.normal_(0, 0.3)
    values, t, condition = _inputs(6, 7)
    condition[:, :2] = True
    mask = (torch.rand(7, 7) < 0.6) | torch.eye(7, dtype=torch.bool)
    for m in (None, mask):
        copy = values.clone()
        with torch.no_grad():
            fast = net(copy, t, condition, m)
        torch.testing.assert_close(copy, values)  # the caller's tensors untouched
        torch.testing.assert_close(fast, net(values, t, condition, m))


def test_a_shared_mask_equals_the_same_mask_per_example():
    net = SimformerNet(4, num_layers=2)
    values, t, condition = _inputs(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]).bool()
    shared = net(values, t, condition, mask)
    assert torch.allclose(shared, net(values, t, condition, mask.expand(3, 4, 4)))


def test_bfloat16_products_stay_close_to_float32_in_both_paths():
    torch.manual_seed(0)
    net = SimformerNet(7, num_layers=2)
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    values, t, condition = _inputs(6, 7)
    condition[:, :2] = True
    exact = net(values, t, condition, None)
    net.set_matmul_dtype("bfloat16")
    with torch.no_grad():
        fast = net(values, t, condition, None)
    low = net(values, t, condition, None)
    assert fast.dtype == low.dtype == torch.float32
    scale = exact.abs().mean().item()
    # bfloat16 keeps 8 significant bits: errors of a few 1e-3 of the output scale.
    assert 0 < (low - exact).abs().max() < 0.03 * scale
    torch.testing.assert_close(fast, low, atol=0.01 * scale, rtol=0)
    low.square().sum().backward()
    assert all(
        p.dtype == torch.float32 and p.grad is not None for p in net.parameters()
    )
    net.set_matmul_dtype("float32")
    torch.testing.assert_close(net(values, t, condition, None), exact)


def test_an_unknown_matmul_dtype_is_refused_by_name():
    with pytest.raises(ValueError, match="matmul_dtype"):
        SimformerNet(3, matmul_dtype="float16")


def test_the_first_block_keeps_full_precision_under_bfloat16():
    # Rounding the embedded values to 8 bits blurred gaussian_mixture's narrow
    # posterior (random-forest C2ST 0.566 against 0.535); with the first block in
    # float32, 0.536. The later blocks run in bfloat16.
    torch.manual_seed(0)
    net = SimformerNet(5, num_layers=3)
    values, t, condition = _inputs(4, 5)
    outputs = []
    hooks = [
        b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in net.blocks
    ]
    for dtype in ("float32", "bfloat16"):
        net.set_matmul_dtype(dtype)
        with torch.no_grad():
            net(values, t, condition, None)
    for hook in hooks:
        hook.remove()
    exact, low = outputs[:3], outputs[3:]
    assert torch.equal(low[0], exact[0])
    assert not torch.equal(low[1], exact[1])
    assert [b.matmul_dtype for b in net.blocks] == [
        None,
        torch.bfloat16,
        torch.bfloat16,
    ]


def test_a_float64_network_keeps_float64_products():
    from sbi_allinone.simformer.network import _linear

    net = SimformerNet(5, num_layers=2).double()
    block = net.blocks[-1]
    inputs = torch.randn(3, block.qkv.in_features, dtype=torch.float64)
    product = _linear(inputs, block.qkv, block.matmul_dtype)
    assert torch.equal(product, block.qkv(inputs))
