"""LRURec (Yue et al., WSDM 2024): stacked Linear Recurrent Units with position-wise FFNs.

Each LRU layer runs the diagonal complex recurrence ``h_t = lambda * h_{t-1} + gamma * B x_t``
(``lambda = exp(-exp(nu_log) + i exp(theta_log))``, ``gamma = exp(gamma_log)``) and reads
``y_t = Re(C h_t)``. Training uses a log-depth parallel scan; :meth:`LRURec.step` runs the same
layers one item at a time for incremental inference, with identical outputs.

Padding: inputs at padding positions are zeroed before the recurrence, so with a zero initial
state the state stays exactly zero through the left padding.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.layers import Dropout, FeedForward, trunc_normal_, valid_mask
from llmseqrec.models.registry import register


class LRURecConfig(BackboneConfig):
    """Paper defaults: d=64, 2 layers, dropout 0.2 (the authors' default for every dataset),
    complex state of 2d, FFN 4d with GELU, eigenvalues initialised on the ring
    ``r_min=0, r_max=0.1`` (the authors' code uses 0.8/0.99: set those here to match it)."""

    name: str = "lrurec"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    state_size: int | None = Field(None, description="complex state width; None = 2*hidden_size")
    inner_size: int | None = Field(None, description="FFN width; None = 4*hidden_size")
    r_min: float = Field(0.0, ge=0.0, lt=1.0)
    r_max: float = Field(0.1, gt=0.0, lt=1.0)
    max_phase: float = Field(2 * math.pi, gt=0.0)


def complex_scan(u: torch.Tensor, log_mag: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = lam * h_{t-1} + u_t`` (``h_{-1} = 0``) along dim 1, in log2(L) steps,
    for ``lam = exp(log_mag + i * angle)``.

    Hillis-Steele scan: after the step with shift ``k`` each ``h_t`` holds the sum over the
    last ``2k`` inputs, so the step adds ``lam^k * h_{t-k}``. ``lam^k`` is formed in polar form
    (``|lam|^k``, ``k * angle``) rather than by repeated squaring, which keeps it accurate.
    """
    length = u.size(1)
    h = u
    k = 1
    while k < length:
        lam_k = torch.polar(torch.exp(k * log_mag), k * angle)
        h = torch.cat([h[:, :k], h[:, k:] + lam_k * h[:, :-k]], dim=1)
        k *= 2
    return h


class LRULayer(nn.Module):
    def __init__(self, config: LRURecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        n = config.state_size or 2 * d
        self.state_size = n
        # Ring init (Orvieto et al. 2023): |lambda|^2 uniform on [r_min^2, r_max^2], phase
        # uniform on [0, max_phase]; nu and theta are log-parametrised to stay positive, gamma
        # normalises the state's variance to that of the input.
        u1, u2 = torch.rand(n), torch.rand(n)
        nu_log = torch.log(
            -0.5 * torch.log(u1 * (config.r_max**2 - config.r_min**2) + config.r_min**2)
        )
        theta_log = torch.log(config.max_phase * u2)
        mag = torch.exp(-torch.exp(nu_log))
        gamma_log = torch.log(torch.sqrt(1 - mag**2))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(gamma_log)
        # Complex B and C as real maps on [Re; Im] (C real part: Re(C h) = C_re h_re - C_im h_im).
        self.in_proj = nn.Linear(d, 2 * n)
        self.out_proj = nn.Linear(2 * n, d)
        self.dropout = Dropout(config.dropout)
        self.norm = nn.LayerNorm(d)

    def log_eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log|lambda|, arg lambda)`` = ``(-exp(nu_log), exp(theta_log))``."""
        return -torch.exp(self.nu_log.float()), torch.exp(self.theta_log.float())

    def _input(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        bu = self.in_proj(x).float() * keep
        re, im = bu.chunk(2, dim=-1)
        return torch.complex(re, im) * torch.exp(self.gamma_log.float())

    def _output(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = self.out_proj(torch.cat([h.real, h.imag], dim=-1))
        return self.norm(x + self.dropout(y))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # The scan is in complex float32: autocast has no complex bf16, and lambda^k needs range.
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = complex_scan(self._input(x, keep), *self.log_eigenvalues())
        return self._output(h, x)

    def step(
        self, x: torch.Tensor, keep: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            log_mag, angle = self.log_eigenvalues()
            state = torch.polar(torch.exp(log_mag), angle) * state + self._input(x, keep)
        return self._output(state, x), state


class LRUBlock(nn.Module):
    def __init__(self, config: LRURecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.lru = LRULayer(config)
        self.ffn = FeedForward(d, config.inner_size or 4 * d, config.dropout, "gelu")
        self.ffn_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.lru(x, keep)
        return self.ffn_norm(x + self.ffn(x))

    def step(
        self, x: torch.Tensor, keep: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, state = self.lru.step(x, keep, state)
        return self.ffn_norm(x + self.ffn(x)), state


@register("lrurec")
class LRURec(Backbone):
    config_class = LRURecConfig
    objective = "causal"

    def __init__(self, n_items: int, config: LRURecConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.emb_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(LRUBlock(config) for _ in range(config.num_layers))
        self._init_weights()

    def _init_weights(self) -> None:
        # Authors' code: truncated normal (std 0.02, cut at +-0.04) on everything except the
        # LayerNorms and the eigenvalue parameters, biases included.
        for name, p in self.named_parameters():
            if "norm" in name or name.endswith(("nu_log", "theta_log", "gamma_log")):
                continue
            trunc_normal_(p.data, 0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def _embed(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.emb_norm(self.emb_dropout(self.embed_items(item_seq)))

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        keep = valid_mask(item_seq).unsqueeze(-1)
        x = self._embed(item_seq)
        for block in self.blocks:
            x = block(x, keep)
        return x

    def init_state(self, batch_size: int) -> list[torch.Tensor]:
        """Zero recurrent state, one ``[B, state_size]`` complex tensor per layer."""
        device = self.item_embedding.weight.device
        return [
            torch.zeros(batch_size, blk.lru.state_size, dtype=torch.complex64, device=device)
            for blk in self.blocks
        ]

    def step(
        self, items: torch.Tensor, state: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Consume one item per row (``[B]``, 0 = padding) and return its state ``[B, d]``."""
        keep = (items != 0).unsqueeze(-1)
        x = self._embed(items)
        new_state = []
        for block, s in zip(self.blocks, state, strict=True):
            x, s = block.step(x, keep, s)
            new_state.append(s)
        return x, new_state

    def encode_recurrent(self, item_seq: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` computed step by step (incremental inference; O(1) memory in L)."""
        state = self.init_state(item_seq.size(0))
        outs = []
        for t in range(item_seq.size(1)):
            out, state = self.step(item_seq[:, t], state)
            outs.append(out)
        return torch.stack(outs, dim=1)
