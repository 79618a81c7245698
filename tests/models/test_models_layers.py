"""The fast dropout keeps nn.Dropout's contract."""

import pytest
import torch

from llmseqrec.models.layers import Dropout


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
