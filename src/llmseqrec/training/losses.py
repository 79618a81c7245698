"""Losses shared by the trainer and every enhancer.

``fused_softmax_ce`` computes full-softmax cross-entropy over all items without ever holding the
``[positions, items]`` logit matrix: it walks over row chunks that fit in cache and computes the
loss and both gradients in the same pass (the matmuls can run in bf16 on AMX). On a 2-core CPU the
plain ``cross_entropy(h @ E.T)`` path is memory-bound and several times slower.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_CHUNK_ROWS = 256
# On a GPU the per-chunk kernels are launch-bound at 256 rows; larger chunks keep it busy while
# the [rows, items] logits block stays a few hundred MB at most.
GPU_CHUNK_ROWS = 8192


def chunk_rows_for(device: torch.device) -> int:
    return DEFAULT_CHUNK_ROWS if device.type == "cpu" else GPU_CHUNK_ROWS


def _softmax_rows_in_place(logits: torch.Tensor) -> torch.Tensor:
    """Row softmax written over ``logits`` on the CPU (ATen's row kernel reads each element
    before it writes it, so input and output may alias); a new tensor elsewhere."""
    if logits.device.type == "cpu":
        return torch.ops.aten._softmax.out(logits, 1, False, out=logits)
    return torch.softmax(logits, dim=1)


class _FusedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        hidden: torch.Tensor,
        table: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None,
        normaliser: float,
        compute_dtype: torch.dtype,
        chunk_rows: int,
    ) -> torch.Tensor:
        needs_grad = hidden.requires_grad or table.requires_grad
        table_c = table.detach().to(compute_dtype)
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        device = hidden.device
        grad_table = (
            torch.zeros(table.shape, dtype=torch.float32, device=device)
            if table.requires_grad
            else None
        )
        total = torch.zeros((), dtype=torch.float32, device=device)
        # One logits block for every chunk, updated in place: on a 2-core CPU the fresh
        # [rows, items] tensors of the plain formulation (logits, logsumexp's temporary, the
        # softmax) cost more in page faults and passes over memory than the matmuls do.
        block_rows = min(chunk_rows, hidden.shape[0])
        block = torch.empty((block_rows, table.shape[0]), dtype=compute_dtype, device=device)
        block32 = (
            block
            if compute_dtype == torch.float32
            else torch.empty(block.shape, dtype=torch.float32, device=device)
        )
        for start in range(0, hidden.shape[0], chunk_rows):
            stop = min(start + chunk_rows, hidden.shape[0])
            n = stop - start
            h = hidden[start:stop].detach().to(compute_dtype)
            logits = torch.mm(h, table_c.T, out=block[:n])
            if block32 is not block:
                logits = block32[:n].copy_(logits)
            rows = torch.arange(n, device=device)
            target = targets[start:stop]
            target_logit = logits[rows, target]
            top = logits.amax(dim=1)
            probs = _softmax_rows_in_place(logits)
            # log-sum-exp = top - log(largest probability); that probability is >= 1 / items,
            # so unlike the target's own probability it cannot underflow.
            per_row = top - probs.amax(dim=1).log() - target_logit
            w = weights[start:stop].float() if weights is not None else None
            total += (per_row * w).sum() if w is not None else per_row.sum()
            if needs_grad:
                # d loss / d logits = w * (softmax - onehot(target))
                if w is not None:
                    probs.mul_(w[:, None])
                probs[rows, target] -= w if w is not None else 1.0
                probs_c = probs if block32 is block else block[:n].copy_(probs)
                if grad_hidden is not None:
                    grad_hidden[start:stop] = (probs_c @ table_c).to(hidden.dtype)
                if grad_table is not None:
                    if probs_c.dtype == torch.float32:
                        grad_table.addmm_(probs_c.T, h)
                    else:
                        grad_table.add_((probs_c.T @ h).float())
        ctx.save_for_backward(
            grad_hidden if grad_hidden is not None else torch.empty(0, device=device),
            grad_table if grad_table is not None else torch.empty(0, device=device),
        )
        ctx.has = (grad_hidden is not None, grad_table is not None)
        ctx.normaliser = normaliser
        ctx.table_dtype = table.dtype
        return total / normaliser

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        grad_hidden, grad_table = ctx.saved_tensors
        scale = grad_output / ctx.normaliser
        gh = grad_hidden * scale.to(grad_hidden.dtype) if ctx.has[0] else None
        gt = (grad_table * scale).to(ctx.table_dtype) if ctx.has[1] else None
        return gh, gt, None, None, None, None, None


def fused_softmax_ce(
    hidden: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    normaliser: float | None = None,
    compute_dtype: torch.dtype = torch.float32,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """Mean (or ``sum / normaliser``) cross-entropy of ``hidden @ table.T`` against ``targets``.

    ``hidden``: [P, d] states at target positions; ``table``: [C, d] class embeddings;
    ``targets``: [P] class indices; ``weights``: optional [P] per-row weights.
    """
    if normaliser is None:
        normaliser = float(hidden.shape[0])
    return _FusedSoftmaxCE.apply(
        hidden, table, targets, weights, max(normaliser, 1e-12), compute_dtype, chunk_rows
    )


def reference_softmax_ce(
    hidden: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    normaliser: float | None = None,
) -> torch.Tensor:
    """Plain autograd version of :func:`fused_softmax_ce` (tests and small problems)."""
    per_row = F.cross_entropy(hidden @ table.T, targets, reduction="none")
    if weights is not None:
        per_row = per_row * weights
    return per_row.sum() / (normaliser if normaliser is not None else hidden.shape[0])


def sampled_bce(
    hidden: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    weights: torch.Tensor | None = None,
    normaliser: float | None = None,
) -> torch.Tensor:
    """BCE with k sampled negatives per position (SASRec / LLMSeR / LLM-ESR protocol).

    ``negatives``: [P, k] item indices into ``table``.
    """
    pos = (hidden * table[targets]).sum(-1)
    neg = torch.einsum("pd,pkd->pk", hidden, table[negatives])
    per_row = F.softplus(-pos) + F.softplus(neg).sum(-1)
    if weights is not None:
        per_row = per_row * weights
    return per_row.sum() / (normaliser if normaliser is not None else hidden.shape[0])


def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    temperature: float = 1.0,
    similarity: str = "dot",
    extra_negatives: torch.Tensor | None = None,
    negative_weight: float = 1.0,
) -> torch.Tensor:
    """InfoNCE with in-batch negatives: row i of ``anchor`` should match row i of ``positive``.

    ``extra_negatives`` [B, d] adds one more negative per row (row i for anchor i), whose term
    in the denominator is multiplied by ``negative_weight`` (CLLMRec's weighted negatives).
    """
    if similarity == "cosine":
        anchor = F.normalize(anchor, dim=-1)
        positive = F.normalize(positive, dim=-1)
        if extra_negatives is not None:
            extra_negatives = F.normalize(extra_negatives, dim=-1)
    logits = anchor @ positive.T / temperature
    if extra_negatives is None and negative_weight == 1.0:
        return F.cross_entropy(logits, torch.arange(len(anchor), device=logits.device))
    # log(sum_j w_j exp(s_j)) with w = 1 for the positive and w_i for every negative.
    batch = len(anchor)
    eye = torch.eye(batch, dtype=torch.bool, device=logits.device)
    log_weight = math.log(negative_weight) if negative_weight > 0 else -math.inf
    log_w = torch.where(eye, 0.0, log_weight)
    terms = [logits + log_w]
    if extra_negatives is not None:
        own = (anchor * extra_negatives).sum(-1, keepdim=True) / temperature
        terms.append(own + log_weight)
    denominator = torch.logsumexp(torch.cat(terms, dim=1), dim=1)
    return (denominator - logits.diagonal()).mean()


def symmetric_info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float = 1.0,
    similarity: str = "cosine",
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """NT-Xent over the 2N views ``[a; b]``: view i's positive is its pair, the other 2N-2 views
    are negatives (CL4SRec / DuoRec / SRA-CL). With ``groups`` [N] (e.g. DuoRec's targets), views
    of the same group other than the pair are removed from the denominator (false negatives).

    ``similarity="dot"`` on unnormalised states is the CL4SRec family's code; on our backbones it
    collapses the representations (the loss is cut fastest by making every state alike), so the
    enhancers default to cosine; see benchmarks/results/contrastive.md.
    """
    n = len(a)
    z = torch.cat([a, b]).float()
    if similarity == "cosine":
        z = F.normalize(z, dim=-1)
    sim = z @ z.T / temperature
    device = sim.device
    drop = torch.eye(2 * n, dtype=torch.bool, device=device)
    pair = torch.cat([torch.arange(n, 2 * n, device=device), torch.arange(0, n, device=device)])
    if groups is not None:
        g = torch.cat([groups, groups]).to(device)
        same = g[:, None] == g[None, :]
        same[torch.arange(2 * n, device=device), pair] = False
        drop |= same
    return F.cross_entropy(sim.masked_fill(drop, float("-inf")), pair)
