"""Model-specific checks: LRURec's scan vs recurrence, FMLP-Rec's causal filter, HSTU's bias."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from llmseqrec.models.base import Backbone
from llmseqrec.models.fmlprec import causal_fft_conv
from llmseqrec.models.lrurec import LRURec, complex_scan


def test_complex_scan_matches_loop() -> None:
    u = torch.randn(3, 37, 5, dtype=torch.complex64)
    lam = torch.polar(torch.rand(5) * 0.99, torch.rand(5) * 6.28)
    h, expected = torch.zeros(3, 5, dtype=torch.complex64), []
    for t in range(37):
        h = lam * h + u[:, t]
        expected.append(h)
    got = complex_scan(u, lam.abs().log(), lam.angle())
    torch.testing.assert_close(got, torch.stack(expected, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("r_min", "r_max"), [(0.0, 0.1), (0.8, 0.99)])
@pytest.mark.parametrize("length", [1, 7, 16, 33])
def test_lrurec_parallel_equals_recurrent(
    r_min: float, r_max: float, length: int, make_small_model: Callable[..., Backbone]
) -> None:
    model = make_small_model("lrurec", r_min=r_min, r_max=r_max, max_len=64).eval()
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


def test_narm_chunked_attention_matches_unchunked(
    make_small_model: Callable[..., Backbone], monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmseqrec.models.narm as narm

    model = make_small_model("narm").eval()
    seqs = torch.randint(1, 21, (3, 10))
    seqs[0, :4] = 0
    full = model.encode(seqs)
    full.sum().backward()
    grad_full = model.a1.weight.grad.clone()
    model.zero_grad()
    monkeypatch.setattr(narm, "_CHUNK_ELEMENTS", 3 * 10 * 32 * 3)  # 3 query rows per chunk
    chunked = model.encode(seqs)
    chunked.sum().backward()
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.a1.weight.grad, grad_full, atol=1e-5, rtol=1e-5)
