"""LRURec (Yue et al., WSDM 2024): stacked Linear Recurrent Units with position-wise FFNs.

Each LRU layer runs the diagonal complex recurrence ``h_t = lambda * h_{t-1} + gamma * B x_t``
(``lambda = exp(-exp(nu_log) + i exp(theta_log))``, ``gamma = exp(gamma_log)``) and reads
``y_t = Re(C h_t)``. Training evaluates the recurrence in parallel (chunked matrix form, see
:func:`linear_recurrence`); :meth:`LRURec.step` runs the same layers one item at a time for
incremental inference, with identical outputs.

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


# Chunk length of the blocked parallel form. Measured on CPU (fwd+bwd of one layer, 1 thread):
# one chunk is fastest up to ~64 positions, ~32 beyond (L=200: 0.17 s vs 0.46 s unchunked and
# 0.65 s for the earlier log-depth complex scan, which was bound by memory traffic).
CHUNK = 32


def lag_matrix(log_mag: torch.Tensor, angle: torch.Tensor, length: int) -> torch.Tensor:
    """``[n, 2L, 2L]`` real form of the causal kernel ``lam^(t-s)`` (``t >= s``, else 0) for
    ``lam = exp(log_mag + i * angle)``: it maps ``[Re u; Im u]`` of a length-L input to
    ``[Re h; Im h]`` of ``h_t = lam * h_{t-1} + u_t`` (``h_{-1} = 0``). Powers are formed in
    polar form (``|lam|^k``, ``k * angle``), which keeps them accurate for long lags."""
    pos = torch.arange(length, device=log_mag.device)
    lag = pos[:, None] - pos[None, :]
    lag_f = lag.clamp(min=0).to(log_mag.dtype)
    mag = torch.exp(lag_f * log_mag[:, None, None]) * (lag >= 0)
    phase = lag_f * angle[:, None, None]
    re, im = mag * torch.cos(phase), mag * torch.sin(phase)
    return torch.cat([torch.cat([re, -im], 2), torch.cat([im, re], 2)], 1)


def power_matrix(log_mag: torch.Tensor, angle: torch.Tensor, length: int) -> torch.Tensor:
    """``[n, 2L, 2]``: row ``i`` applies ``lam^(i+1)`` to a state ``[Re; Im]`` (the contribution
    of the state entering a chunk to its i-th output)."""
    k = torch.arange(1, length + 1, device=log_mag.device, dtype=log_mag.dtype)
    mag = torch.exp(k * log_mag[:, None])
    phase = k * angle[:, None]
    re, im = mag * torch.cos(phase), mag * torch.sin(phase)
    return torch.cat([torch.stack([re, -im], -1), torch.stack([im, re], -1)], 1)


def linear_recurrence(
    u: torch.Tensor,
    log_mag: torch.Tensor,
    angle: torch.Tensor,
    chunks: int,
    log_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """All states of ``h_t = lam * h_{t-1} + gain * u_t`` (``gain = exp(log_gain)``, default 1)
    for ``u`` laid out ``[n, 2, C, G, B]`` (state channel, re/im, position in chunk, chunk,
    batch; time = chunk * C + position).

    Blocked parallel form: within each chunk one batched matmul with :func:`lag_matrix`; the
    state at each chunk's end is propagated across chunks by the same kernel with ``lam^C``,
    and added back through :func:`power_matrix`. Every step is a dense matmul, so the
    recurrence costs a few passes over memory instead of ``log2(L)`` elementwise sweeps."""
    n, _, size, _, batch = u.shape
    kernel = lag_matrix(log_mag, angle, size)
    if log_gain is not None:
        kernel = kernel * torch.exp(log_gain).view(n, 1, 1)
    h = torch.bmm(kernel, u.reshape(n, 2 * size, chunks * batch))
    h = h.view(n, 2, size, chunks, batch)
    if chunks == 1:
        return h
    ends = h[:, :, size - 1].reshape(n, 2 * chunks, batch)
    states = torch.bmm(lag_matrix(size * log_mag, size * angle, chunks), ends)
    entering = nn.functional.pad(states.view(n, 2, chunks, batch)[:, :, :-1], (0, 0, 1, 0))
    carried = torch.bmm(power_matrix(log_mag, angle, size), entering.reshape(n, 2, -1))
    return h + carried.view(n, 2, size, chunks, batch)


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
        batch, length, d = x.shape
        n = self.state_size
        chunks = 1 if length <= 2 * CHUNK else math.ceil(length / CHUNK)
        size = math.ceil(length / chunks)
        pad = chunks * size - length  # left padding: zero inputs keep the zero initial state
        # Time and batch go last so that the projections and the recurrence are plain matmuls
        # with no transposes of the 2n-wide state; only the d-wide input and output are permuted.
        # In fp32 throughout: autocast has no benefit at these sizes and lambda^k needs range.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_in = nn.functional.pad(x.float() * keep, (0, 0, pad, 0))
            keep_in = nn.functional.pad(keep.float(), (0, 0, pad, 0))
            # The bias enters as one more input row (the keep mask), so padding positions get
            # neither input nor bias and the whole input map is a single matmul.
            x_t = torch.cat([x_in, keep_in], -1).view(batch, chunks, size, d + 1)
            x_t = x_t.permute(3, 2, 1, 0).reshape(d + 1, -1)
            # in_proj rows are [Re (n); Im (n)]; regroup them per state channel.
            w_in = torch.cat([self.in_proj.weight, self.in_proj.bias[:, None]], 1)
            w_in = w_in.view(2, n, d + 1).transpose(0, 1).reshape(2 * n, d + 1)
            u = torch.mm(w_in, x_t).view(n, 2, size, chunks, batch)
            h = linear_recurrence(u, *self.log_eigenvalues(), chunks, self.gamma_log.float())
            w_out = self.out_proj.weight.view(d, 2, n).transpose(1, 2).reshape(d, 2 * n)
            y = torch.addmm(self.out_proj.bias[:, None], w_out, h.reshape(2 * n, -1))
            y = y.view(d, size, chunks, batch).permute(3, 2, 1, 0).reshape(batch, -1, d)
        return self.norm(x + self.dropout(y[:, pad:].to(x.dtype)))

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
