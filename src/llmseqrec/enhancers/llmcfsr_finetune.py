"""LLM-CFSR stage 1: contrastive fine-tuning of a sentence encoder on attribute-level views.

Each item is a list of attributes (title, brand, every category, description, ...). A *view*
shuffles the attribute order and drops ``drop_ratio`` of them (at least one kept). Two views of
the same item are a positive pair, the other items of the batch are negatives (InfoNCE with
in-batch negatives, cosine similarity / ``temperature``, symmetric by default). After
fine-tuning, every item's canonical text (all fields, original order) is embedded with mean
pooling and L2 normalisation, as sentence-transformers' all-MiniLM-L6-v2 does.

Only item attributes are read: no interaction, so nothing of the validation or test items' role
can leak through this stage.

The loop is a plain torch loop over the underlying Hugging Face transformer (measured faster on
2 CPU cores than sentence-transformers' ``fit`` with ``MultipleNegativesRankingLoss``, which
adds its Trainer and datasets overhead for the same forward/backward). The token-embedding
matrix is frozen by default (30k x 384 rows: its AdamW update would dominate a CPU step), and
``train_layers`` restricts training to the top transformer layers.

Artefacts live under ``<workdir>/<hash of options + texts + model>/``: ``checkpoint.pt``
(trainable weights, optimiser, step; written every ``checkpoint_every`` steps and at the end
of fine-tuning), ``emb_part_XXXX.npy`` chunks of the embedding pass, ``embeddings.npy``
(``[N+1, D]`` float32, row 0 zeros) and ``timing.json``. A killed run continues from the last
checkpoint / chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.text.errors import ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_FIELDS = ("title", "brand", "categories", "description")


class FinetuneOptions(BaseModel):
    """Fine-tuning and embedding options (the CPU-friendly defaults are measured in
    benchmarks/results/llmcfsr.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="False: embed the raw encoder (no fine-tuning)")
    model: str | None = Field(None, description="local encoder directory; None = packaged MiniLM")
    fields: tuple[str, ...] = DEFAULT_FIELDS
    drop_ratio: float = Field(0.4, ge=0.0, lt=1.0, description="share of attributes dropped")
    description_words: int = Field(24, ge=1, description="words of a description kept in views")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(5e-5, gt=0)
    warmup: float = Field(0.1, ge=0.0, lt=1.0, description="share of steps with linear warm-up")
    temperature: float = Field(0.05, gt=0)
    symmetric: bool = Field(True, description="InfoNCE in both directions (a->b and b->a)")
    max_seq_length: int = Field(32, ge=4, description="tokens per view while fine-tuning")
    embed_max_seq_length: int = Field(64, ge=4, description="tokens per item when embedding")
    train_layers: int | None = Field(
        2,
        ge=1,
        description="train only the top k transformer layers; None = all (measured: "
        "all 6 layers cost ~2x per step on CPU)",
    )
    train_token_embeddings: bool = False
    max_steps: int | None = Field(None, ge=1, description="cap on steps (tests, timing)")
    checkpoint_every: int = Field(50, ge=1)
    embed_chunk: int = Field(2048, ge=1)
    embed_batch: int = Field(128, ge=1)
    seed: int = 0


# ----------------------------------------------------------------------------- attributes
def item_attributes(
    dataset: Dataset, fields: tuple[str, ...] = DEFAULT_FIELDS, description_words: int = 24
) -> list[list[str]]:
    """One attribute list per item (index 0 = padding, empty); a list field (categories)
    contributes one attribute per element."""
    present = [f for f in fields if f in dataset.item_text.columns]
    columns = {f: dataset.item_text.get_column(f).to_list() for f in present}
    out: list[list[str]] = [[]]
    for i in range(dataset.n_items):
        attrs: list[str] = []
        for f in present:
            value = columns[f][i]
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            for v in values:
                text = str(v).strip() if v is not None else ""
                if not text:
                    continue
                if f == "description":
                    text = " ".join(text.split()[:description_words])
                if text not in attrs:
                    attrs.append(text)
        out.append(attrs)
    return out


def attribute_view(attrs: list[str], rng: np.random.Generator, drop_ratio: float) -> str:
    """Shuffle the attributes and drop ``drop_ratio`` of them (at least one is kept)."""
    if not attrs:
        return ""
    keep = max(1, len(attrs) - int(round(drop_ratio * len(attrs))))
    order = rng.permutation(len(attrs))[:keep]
    return " | ".join(attrs[j] for j in order)


def canonical_texts(dataset: Dataset, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[str]:
    return dataset.render_item_texts(fields)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, symmetric: bool) -> torch.Tensor:
    """Cosine InfoNCE with in-batch negatives: row i of ``a`` matches row i of ``b``."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    labels = torch.arange(len(a))
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels))
    return loss


# ----------------------------------------------------------------------------- encoder
def _model_dir(model: str | None) -> Path:
    from llmseqrec.text.encoders import _resolve_model_dir

    return _resolve_model_dir(model)


def load_encoder(model: str | None) -> tuple[Any, Any]:
    """Tokenizer and transformer of a local sentence-transformers directory (offline)."""
    from transformers import AutoModel, AutoTokenizer

    from llmseqrec.text.locate import offline_hub

    offline_hub()
    directory = _model_dir(model)
    return AutoTokenizer.from_pretrained(str(directory)), AutoModel.from_pretrained(str(directory))


def mean_pool(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def trainable_parameters(
    model: Any, options: FinetuneOptions
) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze the token embeddings (default) and all but the top ``train_layers`` layers."""
    n_layers = int(model.config.num_hidden_layers)
    first_trained = 0 if options.train_layers is None else max(0, n_layers - options.train_layers)
    chosen = []
    for name, p in model.named_parameters():
        train = True
        if name.startswith("embeddings."):
            train = options.train_token_embeddings and options.train_layers is None
        elif name.startswith("encoder.layer."):
            train = int(name.split(".")[2]) >= first_trained
        elif name.startswith("pooler."):
            train = False
        p.requires_grad_(train)
        if train:
            chosen.append((name, p))
    return chosen


# ----------------------------------------------------------------------------- cache
def artefact_hash(dataset: Dataset, options: FinetuneOptions) -> str:
    from llmseqrec.text.locate import model_fingerprint, recorded_identity

    texts = canonical_texts(dataset, options.fields)
    digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()
    relevant = options.model_dump(
        mode="json", exclude={"checkpoint_every", "embed_chunk", "embed_batch"}
    )
    if not options.enabled:  # only these matter for the raw encoder
        relevant = {k: relevant[k] for k in ("enabled", "model", "fields", "embed_max_seq_length")}
    payload = {
        "options": relevant,
        "texts": digest,
        "n_items": dataset.n_items,
        "model": recorded_identity(
            f"encoder-fingerprint|{options.model or 'packaged'}",
            lambda: {"fingerprint": model_fingerprint(_model_dir(options.model))},
        )["fingerprint"],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- stages
def finetune(
    model: Any,
    tokenizer: Any,
    attributes: list[list[str]],
    options: FinetuneOptions,
    directory: Path,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Contrastive fine-tuning, resumable from ``directory/checkpoint.pt``. Returns the record
    (steps, losses, seconds); the model is left with the fine-tuned weights."""
    from tqdm.auto import tqdm

    items = np.array([i for i in range(1, len(attributes)) if attributes[i]], dtype=np.int64)
    per_epoch = len(items) // options.batch_size + (len(items) % options.batch_size >= 2)
    total = per_epoch * options.epochs
    if options.max_steps is not None:
        total = min(total, options.max_steps)
    params = trainable_parameters(model, options)
    optimiser = torch.optim.AdamW([p for _, p in params], lr=options.lr, weight_decay=0.01)
    warm = max(1, int(options.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))),
    )
    path = directory / "checkpoint.pt"
    record: dict[str, Any] = {"step": 0, "losses": [], "seconds": 0.0, "total_steps": total}
    if path.exists():
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["weights"], strict=False)
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        record = json.loads(state["record"])
        log.info("fine-tuning resumes at step %d of %d", record["step"], total)
    if record["step"] >= total:
        return record

    def save() -> None:
        weights = {name: p.detach().clone() for name, p in params}
        atomic.torch_save(
            path,
            {
                "weights": weights,
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "record": json.dumps(record),
            },
        )

    model.train()
    bar = tqdm(
        total=total,
        initial=record["step"],
        desc="fine-tune encoder",
        disable=None if progress is None else not progress,
        mininterval=1.0,
    )
    started = time.perf_counter()
    base_seconds = record["seconds"]
    while record["step"] < total:
        step = record["step"]
        epoch, index = divmod(step, per_epoch)
        order = np.random.default_rng([options.seed, epoch]).permutation(items)
        chosen = order[index * options.batch_size : (index + 1) * options.batch_size]
        rng = np.random.default_rng([options.seed, epoch, index, 1])
        view_a = [attribute_view(attributes[i], rng, options.drop_ratio) for i in chosen]
        view_b = [attribute_view(attributes[i], rng, options.drop_ratio) for i in chosen]
        pooled = mean_pool(model, tokenizer, view_a + view_b, options.max_seq_length)
        loss = info_nce(
            pooled[: len(chosen)], pooled[len(chosen) :], options.temperature, options.symmetric
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        optimiser.step()
        scheduler.step()
        record["step"] = step + 1
        record["losses"].append(float(loss.detach()))
        record["seconds"] = base_seconds + time.perf_counter() - started
        bar.update(1)
        bar.set_postfix(loss=f"{record['losses'][-1]:.3f}")
        if record["step"] % options.checkpoint_every == 0 or record["step"] == total:
            save()
    bar.close()
    return record


@torch.no_grad()
def embed_all(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    options: FinetuneOptions,
    directory: Path,
    progress: bool | None = None,
) -> np.ndarray:
    """``[N+1, D]`` unit rows (row 0 zeros); chunks saved as they finish (resumable)."""
    from tqdm.auto import tqdm

    model.eval()
    n = len(texts) - 1
    n_chunks = math.ceil(n / options.embed_chunk)
    parts = []
    for c in tqdm(
        range(n_chunks),
        desc="embed items",
        disable=None if progress is None else not progress,
        mininterval=1.0,
    ):
        part = directory / f"emb_part_{c:04d}.npy"
        if not part.exists():
            start = 1 + c * options.embed_chunk
            chunk = texts[start : min(start + options.embed_chunk, n + 1)]
            # Length-sorted batches: little padding, so the pass costs ~ the real tokens.
            lengths = [
                len(ids)
                for ids in tokenizer(
                    chunk, truncation=True, max_length=options.embed_max_seq_length
                )["input_ids"]
            ]
            order = np.argsort(lengths, kind="stable")
            vectors = np.zeros((len(chunk), model.config.hidden_size), np.float32)
            for b in range(0, len(chunk), options.embed_batch):
                rows = order[b : b + options.embed_batch]
                pooled = mean_pool(
                    model, tokenizer, [chunk[r] for r in rows], options.embed_max_seq_length
                )
                vectors[rows] = F.normalize(pooled, dim=-1).numpy()
            atomic.save_npy(part, vectors)
        parts.append(np.load(part))
    body = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    return np.concatenate([np.zeros((1, body.shape[1]), np.float32), body])


def semantic_item_embeddings(
    dataset: Dataset,
    workdir: Path,
    options: FinetuneOptions | dict[str, Any] | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, Path]:
    """Cached ``[N+1, D]`` item embeddings (fine-tuned or raw encoder) and their directory."""
    if not isinstance(options, FinetuneOptions):
        options = FinetuneOptions.model_validate(options or {})
    directory = Path(workdir) / f"semantic-{artefact_hash(dataset, options)}"
    final = directory / "embeddings.npy"
    if final.exists():
        return np.load(final), directory
    directory.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    texts = canonical_texts(dataset, options.fields)
    try:
        tokenizer, model = load_encoder(options.model)
    except ModelNotFoundError as missing:  # e.g. a GPU machine given the cache, not the model
        raise ModelNotFoundError(f"{final} is not cached, and {missing}") from missing
    timing: dict[str, Any] = {
        "items": dataset.n_items,
        "fields": [f for f in options.fields if f in dataset.item_text.columns],
        "threads": threads,
        "options": options.model_dump(mode="json"),
    }
    if options.enabled:
        attributes = item_attributes(dataset, options.fields, options.description_words)
        record = finetune(model, tokenizer, attributes, options, directory, progress)
        timing.update(
            finetune_steps=record["step"],
            finetune_seconds=record["seconds"],
            loss_first=record["losses"][0] if record["losses"] else None,
            loss_last=float(np.mean(record["losses"][-10:])) if record["losses"] else None,
            mean_attributes=float(np.mean([len(a) for a in attributes[1:]])),
            # Wall time on a shared machine is only an upper bound; the load says how shared.
            finetune_load_average=os.getloadavg()[0],
        )
    started = time.perf_counter()
    embeddings = embed_all(model, tokenizer, texts, options, directory, progress)
    timing["embed_seconds"] = time.perf_counter() - started
    timing["embed_load_average"] = os.getloadavg()[0]
    atomic.save_npy(final, embeddings)
    atomic.write_json(directory / "timing.json", timing)
    for part in directory.glob("emb_part_*.npy"):
        part.unlink()
    return embeddings, directory
