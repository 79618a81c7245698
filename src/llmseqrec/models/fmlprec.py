"""FMLP-Rec (Zhou et al., WWW 2022): all-MLP blocks whose token mixer is a learnable filter
applied in the frequency domain (FFT -> elementwise complex weights -> inverse FFT).

Deviation, on purpose: the paper's filter multiplies the length-L spectrum, i.e. a CIRCULAR
convolution, which lets position t see later positions; with a loss at every position (our
trainer, and the authors' own code) that leaks the targets. We keep the paper's parametrisation
(complex weights over ``max_len // 2 + 1`` frequencies, whose inverse FFT is a length-``max_len``
kernel) but apply that kernel as a causal linear convolution (lags ``0..L-1``), still via FFT
(zero-padded to 2L). Padding rows are zeroed before each filter, so they contribute nothing.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.layers import (
    Dropout,
    FeedForward,
    init_bert_style,
    position_ids,
    valid_mask,
    zero_padding_row,
)
from llmseqrec.models.registry import register


class FMLPRecConfig(BackboneConfig):
    """Paper defaults: d=64, 2 layers, dropout 0.5 (the authors' hidden dropout), FFN 4d with
    GELU, max length 50, init normal(0, 0.02)."""

    name: str = "fmlprec"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    inner_size: int | None = Field(None, description="FFN width; None = 4*hidden_size")


def causal_fft_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y_t = sum_{s<=t} kernel[t-s] * x_s`` per channel; ``x`` [B, L, d], ``kernel`` [L, d]."""
    length = x.size(1)
    n = 2 * length
    spec = torch.fft.rfft(x, n=n, dim=1) * torch.fft.rfft(kernel, n=n, dim=0)
    return torch.fft.irfft(spec, n=n, dim=1)[:, :length]


class FilterLayer(nn.Module):
    def __init__(self, config: FMLPRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.max_len = config.max_len
        self.weight = nn.Parameter(torch.randn(config.max_len // 2 + 1, d, 2) * 0.02)
        self.dropout = Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def kernel(self, length: int) -> torch.Tensor:
        """The filter's impulse response (``irfft`` of the learned spectrum), first ``length`` lags."""
        spectrum = torch.view_as_complex(self.weight.float().contiguous())
        return torch.fft.irfft(spectrum, n=self.max_len, dim=0)[:length]

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # FFTs have no bf16 CPU kernels: run the filter in float32 whatever autocast says.
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = causal_fft_conv(x.float() * keep, self.kernel(x.size(1)))
        return self.norm(x + self.dropout(y))


class FMLPBlock(nn.Module):
    def __init__(self, config: FMLPRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.filter = FilterLayer(config)
        self.ffn = FeedForward(d, config.inner_size or 4 * d, config.dropout, "gelu")
        self.ffn_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.filter(x, keep)
        return self.ffn_norm(x + self.ffn(x))


@register("fmlprec")
class FMLPRec(Backbone):
    config_class = FMLPRecConfig
    objective = "causal"

    def __init__(self, n_items: int, config: FMLPRecConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        self.position_embedding = nn.Embedding(config.max_len, d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.blocks = nn.ModuleList(FMLPBlock(config) for _ in range(config.num_layers))
        init_bert_style(self)
        zero_padding_row(self.item_embedding)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        keep = valid_mask(item_seq).unsqueeze(-1)
        x = self.embed_items(item_seq)
        x = x + self.position_embedding(position_ids(item_seq, self.config.max_len))
        x = self.emb_dropout(self.emb_norm(x))
        for block in self.blocks:
            x = block(x, keep)
        return x
