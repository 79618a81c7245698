"""Model-specific checks: LRURec's parallel form vs recurrence, FMLP-Rec's causal filter, HSTU's bias."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from llmseqrec.models.base import Backbone
from llmseqrec.models.fmlprec import causal_fft_conv
from llmseqrec.models.lrurec import LRURec, linear_recurrence


@pytest.mark.parametrize(("size", "chunks"), [(37, 1), (8, 5), (1, 3), (13, 2)])
def test_linear_recurrence_matches_loop(size: int, chunks: int) -> None:
    n, batch, length = 5, 3, size * chunks
    u = torch.randn(batch, length, n, dtype=torch.complex64)
    lam = torch.polar(torch.rand(n) * 0.99, torch.rand(n) * 6.28)
    h, expected = torch.zeros(batch, n, dtype=torch.complex64), []
    for t in range(length):
        h = lam * h + u[:, t]
        expected.append(h)
    # [B, L, n] complex -> [n, 2, C, G, B] real, and back.
    laid_out = torch.stack([u.real, u.imag]).view(2, batch, chunks, size, n).permute(4, 0, 3, 2, 1)
    got = linear_recurrence(laid_out, lam.abs().log(), lam.angle(), chunks)
    got = got.permute(4, 3, 2, 0, 1).reshape(batch, length, n, 2)
    torch.testing.assert_close(
        torch.complex(got[..., 0], got[..., 1]), torch.stack(expected, 1), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(("r_min", "r_max"), [(0.0, 0.1), (0.8, 0.99)])
@pytest.mark.parametrize("length", [1, 7, 16, 33, 70, 131])
def test_lrurec_parallel_equals_recurrent(
    r_min: float, r_max: float, length: int, make_small_model: Callable[..., Backbone]
) -> None:
    model = make_small_model("lrurec", r_min=r_min, r_max=r_max, max_len=160).eval()
    assert isinstance(model, LRURec)
    seqs = torch.randint(1, 21, (5, length))
    seqs[1, : length // 2] = 0
    seqs[2] = 0
    parallel = model.encode(seqs)
    recurrent = model.encode_recurrent(seqs)
    torch.testing.assert_close(recurrent, parallel, atol=1e-5, rtol=1e-5)


def test_lrurec_ring_init(make_small_model: Callable[..., Backbone]) -> None:
    model = make_small_model("lrurec", r_min=0.3, r_max=0.6)
    assert isinstance(model, LRURec)
    for block in model.blocks:
        log_mag, angle = block.lru.log_eigenvalues()
        mag = log_mag.exp()
        assert mag.min() >= 0.3 - 1e-6 and mag.max() <= 0.6 + 1e-6
        assert angle.min() >= 0 and angle.max() <= 2 * torch.pi
        # gamma normalises the stationary state variance: gamma^2 = 1 - |lambda|^2.
        torch.testing.assert_close(block.lru.gamma_log.exp() ** 2, 1 - mag**2)


def test_lrurec_step_by_step_state(make_small_model: Callable[..., Backbone]) -> None:
    """Incremental inference: feed items one at a time, keep the state, match encode_last."""
    model = make_small_model("lrurec").eval()
    assert isinstance(model, LRURec)
    seqs = torch.randint(1, 21, (4, 9))
    state = model.init_state(4)
    with torch.no_grad():
        for t in range(9):
            out, state = model.step(seqs[:, t], state)
        torch.testing.assert_close(out, model.encode_last(seqs), atol=1e-5, rtol=1e-5)


def test_causal_fft_conv_matches_direct() -> None:
    x, kernel = torch.randn(2, 11, 3), torch.randn(11, 3)
    expected = torch.zeros_like(x)
    for t in range(11):
        for s in range(t + 1):
            expected[:, t] += kernel[t - s] * x[:, s]
    torch.testing.assert_close(causal_fft_conv(x, kernel), expected, atol=1e-4, rtol=1e-4)


def test_hstu_relative_bias_is_toeplitz(make_small_model: Callable[..., Backbone]) -> None:
    model = make_small_model("hstu")
    bias = model.layers[0].relative_bias(6, torch.device("cpu"))
    assert bias.shape == (6, 6)
    for d in range(-5, 6):
        assert torch.diagonal(bias, d).unique().numel() == 1


def _dense_local_context(q, k, h, valid, v):
    """NARM's local context as the paper writes it: one [B, L, L, d] tensor, plain autograd."""
    length = q.size(1)
    allowed = torch.ones(length, length).tril().bool() & valid[:, None, :]
    scores = torch.sigmoid(q.unsqueeze(2) + k.unsqueeze(1)) @ v
    return (scores * allowed) @ h


@pytest.mark.parametrize("group_rows,chunk_elements", [(8, 1 << 20), (2, 3 * 10 * 4 * 3)])
def test_narm_local_context_matches_dense_reference(
    monkeypatch: pytest.MonkeyPatch, group_rows: int, chunk_elements: int
) -> None:
    """The grouped, chunked, hand-differentiated local context equals the dense formula in value
    and in every gradient, on ragged left-padded rows (one of them empty)."""
    import llmseqrec.models.narm as narm

    monkeypatch.setattr(narm, "_GROUP_ROWS", group_rows)
    monkeypatch.setattr(narm, "_CHUNK_ELEMENTS_CPU", chunk_elements)
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([10, 0, 3, 7, 1, 10, 5])
    valid = torch.arange(10)[None, :] >= 10 - lengths[:, None]
    inputs = [torch.randn(7, 10, 4, generator=generator, requires_grad=True) for _ in range(3)]
    v = torch.randn(4, generator=generator, requires_grad=True)
    weight = torch.randn(7, 10, 4, generator=generator)

    results = []
    for fn in (_dense_local_context, narm.local_context):
        out = fn(*inputs, valid, v)
        grads = torch.autograd.grad((out * weight).sum(), [*inputs, v])
        results.append((out, grads))
    (dense, dense_grads), (ours, our_grads) = results
    torch.testing.assert_close(ours, dense, atol=1e-5, rtol=1e-5)
    assert ours[~valid].abs().max() == 0  # a row's context starts with the row
    for ours_grad, dense_grad in zip(our_grads, dense_grads, strict=True):
        torch.testing.assert_close(ours_grad, dense_grad, atol=1e-5, rtol=1e-5)


def test_sasrec_plus_options_stay_padding_invariant(
    make_small_model: Callable[..., Backbone],
) -> None:
    """SASRec+ options (N(0, .02) init, positions counted from the window start) keep states
    independent of padding, and really change what the position table encodes."""
    model = make_small_model("sasrec", init="normal", positions="from_start").eval()
    assert 0.015 < model.position_embedding.weight.std().item() < 0.025
    seqs = torch.tensor([[0, 0, 3, 4, 5], [0, 6, 7, 8, 9]])
    base = model.encode(seqs)
    padded = model.encode(torch.cat([torch.zeros(2, 4, dtype=seqs.dtype), seqs], dim=1))[:, 4:]
    torch.testing.assert_close(padded[seqs != 0], base[seqs != 0], atol=1e-5, rtol=1e-5)
    same_weights = make_small_model("sasrec", positions="from_end").eval()
    same_weights.load_state_dict(model.state_dict())
    assert not torch.allclose(same_weights.encode(seqs)[0, -1], base[0, -1])
