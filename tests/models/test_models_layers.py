"""The fast dropout and the dropout attention keep the contracts of nn.Dropout and SDPA."""

import pytest
import torch
import torch.nn.functional as F

from llmseqrec.models.layers import Dropout, MultiHeadAttention, _DropoutAttention, keep_mask


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_share_scales_and_routes_gradient(p):
    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = torch.ones(200_000, requires_grad=True)
    y = layer(x)
    kept = y > 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=1e-4)
    y.sum().backward()
    assert torch.equal(x.grad > 0, kept)
    assert torch.equal(layer.eval()(x), x)


def test_dropout_follows_the_global_seed():
    layer = Dropout(0.3).train()
    torch.manual_seed(5)
    a = layer(torch.ones(1000))
    torch.manual_seed(5)
    assert torch.equal(a, layer(torch.ones(1000)))
    with pytest.raises(ValueError):
        Dropout(1.0)


def test_keep_mask_lanes_are_independent_and_unbiased():
    torch.manual_seed(1)
    keep = keep_mask((4, 100_000), round(0.25 * 32768), torch.float32)
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    # Four 15-bit lanes come from one 64-bit draw: each lane position must keep 75%.
    by_lane = keep.view(-1, 4).mean(0)
    assert torch.allclose(by_lane, torch.full((4,), 0.75), atol=0.01)


def test_dropout_attention_gradients_and_sdpa_equivalence():
    torch.manual_seed(2)
    b, h, length, d = 3, 2, 6, 4
    q, k, v = (torch.randn(b, h, length, d, dtype=torch.float64, requires_grad=True) for _ in "qkv")
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
    keep = keep_mask((b, h, length, length), round(0.3 * 32768), torch.float64)
    inverse = 1 / 0.7
    assert torch.autograd.gradcheck(
        lambda q, k, v: _DropoutAttention.apply(q, k, v, allowed, keep, inverse), (q, k, v)
    )
    scores = (q @ k.transpose(-1, -2)) / d**0.5
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    expected = (probs * keep * inverse) @ v
    got = _DropoutAttention.apply(q, k, v, allowed, keep, inverse)
    assert torch.allclose(got, expected)
    # Nothing dropped: exactly SDPA.
    ones = torch.ones_like(keep)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert torch.allclose(_DropoutAttention.apply(q, k, v, allowed, ones, 1.0), sdpa)


def test_attention_under_bf16_autocast_returns_float_gradients():
    layer = MultiHeadAttention(16, 2, 0.2).train()
    x = torch.randn(3, 5, 16, requires_grad=True)
    allowed = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x, x, allowed)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.float32
    assert torch.isfinite(x.grad).all()
