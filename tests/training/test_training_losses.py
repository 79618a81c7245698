"""The fused loss equals plain autograd; BCE and InfoNCE against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmseqrec.training.losses import fused_softmax_ce, info_nce, reference_softmax_ce, sampled_bce


@pytest.mark.parametrize("weighted", [False, True])
def test_fused_ce_matches_autograd(weighted):
    torch.manual_seed(0)
    hidden = torch.randn(700, 16, requires_grad=True)
    table = torch.randn(90, 16, requires_grad=True)
    targets = torch.randint(0, 90, (700,))
    weights = torch.rand(700) if weighted else None
    fused = fused_softmax_ce(hidden, table, targets, weights, normaliser=321.0, chunk_rows=64)
    fused.backward()
    grads = hidden.grad.clone(), table.grad.clone()
    hidden.grad = table.grad = None
    ref = reference_softmax_ce(hidden, table, targets, weights, normaliser=321.0)
    ref.backward()
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(grads[0], hidden.grad, atol=1e-6)
    assert torch.allclose(grads[1], table.grad, atol=1e-6)


def test_fused_ce_is_exact_when_the_target_probability_underflows():
    # logits 200 apart: exp(-200) is 0 in float32, the loss (~200) must still be exact
    hidden = torch.tensor([[10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], requires_grad=True)
    table = torch.tensor([[20.0, 0.0], [0.0, 20.0], [-20.0, 0.0]])
    targets = torch.tensor([2, 0, 2])  # the last row: a chunk of one row on its own
    fused = fused_softmax_ce(hidden, table, targets, chunk_rows=2)
    fused.backward()
    grad = hidden.grad.clone()
    hidden.grad = None
    ref = reference_softmax_ce(hidden.double(), table.double(), targets)
    ref.backward()
    assert math.isfinite(fused.item())
    assert fused.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(grad, hidden.grad.float(), atol=1e-6)


def test_fused_ce_bf16_close_to_fp32():
    torch.manual_seed(0)
    hidden = torch.randn(300, 32) * 0.3
    table = torch.randn(200, 32) * 0.3
    targets = torch.randint(0, 200, (300,))
    a = fused_softmax_ce(hidden, table, targets)
    b = fused_softmax_ce(hidden, table, targets, compute_dtype=torch.bfloat16)
    assert b.item() == pytest.approx(a.item(), rel=2e-2)


def test_sampled_bce_hand_computed():
    hidden = torch.tensor([[1.0, 0.0]])
    table = torch.tensor([[0.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    loss = sampled_bce(hidden, table, torch.tensor([1]), torch.tensor([[2]]))
    expected = -math.log(torch.sigmoid(torch.tensor(2.0)).item()) - math.log(
        1 - torch.sigmoid(torch.tensor(-1.0)).item()
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_plain_and_weighted():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.5, 0.5], [0.0, 2.0]])
    logits = a @ p.T
    assert info_nce(a, p).item() == pytest.approx(F.cross_entropy(logits, torch.arange(2)).item())
    neg = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    w = 0.5
    manual = 0.0
    for i in range(2):
        terms = [math.exp(logits[i, i])]
        terms += [w * math.exp(logits[i, j]) for j in range(2) if j != i]
        terms.append(w * math.exp(float(a[i] @ neg[i])))
        manual += -math.log(math.exp(logits[i, i]) / sum(terms))
    got = info_nce(a, p, extra_negatives=neg, negative_weight=w).item()
    assert got == pytest.approx(manual / 2, rel=1e-6)
