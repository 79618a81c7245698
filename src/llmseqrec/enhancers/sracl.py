"""SRA-CL: semantic retrieval augmented contrastive learning (Cui et al., 2025).

Offline step (``prepare``), from TRAINING prefixes only:

1. one LLM summary per user (``user_summary`` template, the user's training items, newest kept
   when the prompt is too long);
2. one LLM summary per item from its own text and up to ``item_sequences`` training sequences
   that contain it (a window of ``sequence_window`` items either side; the authors' code reads
   full logs, a leak we avoid);
3. sentence embeddings of the summaries and top-k cosine neighbours (FAISS, self excluded).

Items that never occur in a training prefix get no summary, no embedding and no neighbours, and
are nobody's neighbour: validation/test items cannot enter through the side door.
``text_source: raw`` is the ablation without an LLM: the item's own text and the user's
concatenated training-history text are embedded instead of summaries.

Training: cross-sequence InfoNCE between a user's sequence representation and a positive
synthesised by learnable attention over its k semantic neighbours' representations (computed
in the same step), and intra-sequence InfoNCE between two semantic-substitution views.
Inference uses the backbone alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.views import represent_by_length, substitute
from llmseqrec.errors import ConfigError
from llmseqrec.training.batches import Batch, left_pad
from llmseqrec.training.losses import info_nce, symmetric_info_nce

ARTEFACT_VERSION = 1
USER_SYSTEM = (
    "You are a retail analyst. You describe a shopper's tastes in plain third-person prose, "
    "based only on the purchases listed."
)


class SraclOptions(BaseModel):
    """``enhancer:`` options of ``method: sracl`` (paper defaults)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.1, ge=0, description="weight of the cross-sequence loss L_CS")
    beta: float = Field(0.1, ge=0, description="weight of the intra-sequence loss L_IS")
    temperature: float = Field(1.0, gt=0, description="InfoNCE temperature")
    similarity: Literal["dot", "cosine"] = Field(
        "cosine", description="cosine, or dot on raw states (the authors' code; collapses here)"
    )
    k: int = Field(10, ge=1, description="semantic neighbours per user and per item")
    substitute_ratio: float = Field(0.2, ge=0, le=1, description="share of items substituted")
    cs_sample: int | None = Field(
        None,
        ge=1,
        description="compute this many of the k neighbours per step (random, attention over "
        "those); None = all k, as the paper. A compute knob for CPU runs",
    )
    use_cs: bool = True
    use_is: bool = True
    unlearnable: bool = Field(
        False, description="ablation: positive = one random neighbour instead of attention"
    )
    text_source: Literal["llm", "raw"] = Field(
        "llm", description="llm summaries, or the raw item / history text (ablation)"
    )
    raw_user: Literal["concat", "mean"] = Field(
        "concat",
        description="raw-text ablation: embed the concatenated history text, or average the "
        "history items' text embeddings (much cheaper on CPU)",
    )
    item_sequences: int = Field(10, ge=0, description="training sequences per item prompt")
    sequence_window: int = Field(2, ge=1, description="items either side of the item")
    text_chars: int = Field(80, ge=10, description="item text clipped to this many characters")
    user_tokens: int = Field(128, ge=8, description="answer tokens per user summary")
    user_system: str | None = Field(
        USER_SYSTEM,
        description="system message of the user-summary prompts. Without one, SmolLM2's chat "
        "template introduces the model as 'a helpful AI assistant named SmolLM', and 84 of its "
        "first 127 Office user summaries described the shopper as that assistant",
    )
    item_tokens: int = Field(96, ge=8, description="answer tokens per item summary")
    chunk: int = Field(64, ge=1, description="prompts per generate call (progress granularity)")
    llm_limit: int | None = Field(
        None,
        ge=0,
        description="ask the LLM at most this many new prompts in this call; the stage stays "
        "incomplete (an error says the coverage) and a rerun continues",
    )
    chat: dict[str, Any] = Field(
        default_factory=dict, description="ChatConfig fields (default: packaged SmolLM2)"
    )
    encoder: str | None = Field(None, description="sentence encoder dir (default: MiniLM)")

    def artefact_options(self) -> dict[str, Any]:
        """The options that change the offline artefacts (training options do not)."""
        keys = ["text_source", "k", "text_chars"]
        if self.text_source == "raw":
            keys.append("raw_user")
        if self.text_source == "llm":
            keys += [
                "item_sequences",
                "sequence_window",
                "user_tokens",
                "item_tokens",
                "user_system",
            ]
        out = {key: getattr(self, key) for key in keys}
        if self.text_source == "llm":
            chat = {
                key: value
                for key, value in self.chat.items()
                if key in ("backend", "model", "model_identity", "context_length", "base_url")
            }
            out["chat"] = chat
        out["encoder"] = self.encoder
        return out


class LlmStageIncomplete(RuntimeError):
    """The LLM stage stopped at ``llm_limit``; a rerun continues where it stopped."""


def _clip(text: str, chars: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


# ---------------------------------------------------------------------------------- prompts
class SummaryPrompts:
    """User and item prompts from TRAINING prefixes only."""

    def __init__(
        self,
        dataset: Dataset,
        options: SraclOptions,
        budget_tokens: int,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        from llmseqrec.text import load_template
        from llmseqrec.text.llm import estimate_tokens

        self.count_tokens = count_tokens or estimate_tokens
        self.dataset = dataset
        self.options = options
        self.user_template = load_template("user_summary")
        self.item_template = load_template("item_summary")
        self.budget = budget_tokens
        texts = dataset.render_item_texts()
        self.item_text = [_clip(t, options.text_chars) if t else "" for t in texts]
        split = dataset.split
        self.offsets = split.train_offsets
        self.items = split.train_items.astype(np.int64)
        # Items present in some training prefix: the only ones that get text signals.
        self.trained = np.zeros(dataset.n_items + 1, dtype=bool)
        self.trained[self.items] = True
        self.trained[0] = False

    def item_label(self, item: int) -> str:
        return self.item_text[item] or f"item {self.dataset.item_ids[item - 1]}"

    def user_history(self, user: int) -> list[str]:
        seq = self.items[self.offsets[user] : self.offsets[user + 1]]
        return [self.item_label(int(i)) for i in seq]

    def user_prompt(self, user: int, reserve: int) -> str:
        prompt, _ = self.user_template.render_fitted(
            budget_tokens=self.budget - reserve,
            count_tokens=self.count_tokens,
            history=self.user_history(user),
        )
        return prompt

    def item_contexts(self) -> list[list[str]]:
        """Per item: up to ``item_sequences`` windows of training sequences that contain it."""
        opts = self.options
        n_users = len(self.offsets) - 1
        users = np.repeat(np.arange(n_users), np.diff(self.offsets))
        positions = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
        order = np.argsort(self.items, kind="stable")
        bounds = np.searchsorted(self.items[order], np.arange(self.dataset.n_items + 2))
        rng = np.random.default_rng(0)
        contexts: list[list[str]] = [[] for _ in range(self.dataset.n_items + 1)]
        for item in np.flatnonzero(self.trained):
            hits = order[bounds[item] : bounds[item + 1]]
            # One occurrence per user, a seeded random choice of users.
            _, first = np.unique(users[hits], return_index=True)
            hits = hits[first]
            if len(hits) > opts.item_sequences:
                hits = rng.choice(hits, opts.item_sequences, replace=False)
                hits.sort()
            for flat in hits[: opts.item_sequences]:
                user, pos = users[flat], positions[flat]
                seq = self.items[self.offsets[user] : self.offsets[user + 1]]
                lo, hi = max(0, pos - opts.sequence_window), pos + opts.sequence_window + 1
                window = [int(i) for i in seq[lo:pos]] + [int(i) for i in seq[pos + 1 : hi]]
                if window:
                    contexts[item].append(" ; ".join(self.item_label(i) for i in window))
        return contexts

    def item_prompt(self, item: int, context: list[str], reserve: int) -> str:
        prompt, _ = self.item_template.render_fitted(
            budget_tokens=self.budget - reserve,
            count_tokens=self.count_tokens,
            history_var="sequences",
            min_items=0,
            item=self.item_label(item),
            sequences=context or ["(no other purchases recorded)"],
        )
        return prompt


def artefact_directory(dataset: Dataset, options: SraclOptions, workdir: Path) -> Path:
    payload = {
        "version": ARTEFACT_VERSION,
        "dataset": dataset.metadata.get("cache_key", dataset.name),
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        **options.artefact_options(),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return Path(workdir) / digest


# Context kept free beyond the answer: the chat template and system prompt (~25 tokens for
# SmolLM2) wrap every prompt.
TEMPLATE_RESERVE = 64


def build_prompts(
    dataset: Dataset,
    options: SraclOptions,
    context_length: int,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[list[str], list[int], list[str], SummaryPrompts]:
    """(user prompts for every user, items that get a summary, their prompts, the builder).

    ``count_tokens`` should be the chat model's own count (the default estimate can undercount).
    """
    builder = SummaryPrompts(dataset, options, context_length, count_tokens)
    reserve_user = options.user_tokens + TEMPLATE_RESERVE
    user_prompts = [builder.user_prompt(u, reserve_user) for u in range(dataset.n_users)]
    contexts = builder.item_contexts()
    items = [int(i) for i in np.flatnonzero(builder.trained)]
    reserve_item = options.item_tokens + TEMPLATE_RESERVE
    item_prompts = [builder.item_prompt(i, contexts[i], reserve_item) for i in items]
    return user_prompts, items, item_prompts, builder


def run_llm_stage(
    dataset: Dataset,
    options: SraclOptions,
    chat: Any,
    progress: bool = True,
    kinds: tuple[str, ...] = ("item", "user"),
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Summaries for every item (first) and user; returns summaries, coverage and costs.

    Answers go to the response cache as they arrive, so a killed stage resumes for free.
    With ``llm_limit`` it stops after that many new prompts and reports partial coverage.
    ``kinds`` limits which summaries are asked for (the others are read from the cache only),
    so two processes sharing the cache can write item and user summaries side by side.
    ``shard=(k, n)`` asks only for prompts whose index is k modulo n, so n processes (one
    core each) split one kind of summary without asking for the same prompt twice.
    """
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"sracl: shard {index}/{count} is not k/n with 0 <= k < n")
    unknown = set(kinds) - {"item", "user"}
    if unknown:
        raise ConfigError(f"sracl: unknown summary kind {sorted(unknown)[0]!r}; use item or user")

    started = time.perf_counter()
    user_prompts, items, item_prompts, _ = build_prompts(
        dataset, options, chat.context_length, chat.count_tokens
    )
    stages = [("item", item_prompts), ("user", user_prompts)]
    budget = options.llm_limit
    answers: dict[str, list[str | None]] = {}
    before = dict(chat.usage.as_dict())
    for kind, prompts in stages:
        template, params = SUMMARY_TEMPLATES[kind], summary_params(options, kind)
        got: list[str | None] = [None] * len(prompts)
        todo = _uncached(chat, prompts, options, kind)
        cached = [i for i in range(len(prompts)) if i not in todo]
        if cached:  # served from the cache: zero model calls
            for i, text in zip(
                cached,
                chat.generate([prompts[i] for i in cached], params=params, template=template),
                strict=True,
            ):
                got[i] = text
        ask = [i for i in sorted(todo) if i % count == index] if kind in kinds else []
        if budget is not None:
            ask, budget = ask[:budget], budget - min(budget, len(ask))
        bar = None
        if progress and ask:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ask), desc=f"sracl {kind} summaries", unit="prompt")
        for start in range(0, len(ask), options.chunk):
            part = ask[start : start + options.chunk]
            texts = chat.generate([prompts[i] for i in part], params=params, template=template)
            for i, text in zip(part, texts, strict=True):
                got[i] = text
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
        answers[kind] = got
    after = chat.usage.as_dict()
    cost = {k: after[k] - before.get(k, 0) for k in after}
    cost.update(
        wall_seconds=round(time.perf_counter() - started, 3),
        model=chat.identity,
        backend=chat.backend.name,
        users_total=len(user_prompts),
        users_done=sum(a is not None for a in answers["user"]),
        items_total=len(item_prompts),
        items_done=sum(a is not None for a in answers["item"]),
    )
    return {"users": answers["user"], "items": items, "item_answers": answers["item"], "cost": cost}


SUMMARY_TEMPLATES = {"item": "item_summary@v1", "user": "user_summary@v1"}


def summary_params(options: SraclOptions, kind: str) -> Any:
    """Generation settings of one kind of summary (they are part of its cache key)."""
    from llmseqrec.text import GenerationParams

    if kind == "item":
        return GenerationParams(max_tokens=options.item_tokens, temperature=0.0)
    return GenerationParams(
        max_tokens=options.user_tokens, temperature=0.0, system=options.user_system
    )


def summary_keys(
    backend: str, model: str, options: SraclOptions, kind: str, prompts: list[str]
) -> list[str]:
    """Response-cache keys of one kind of summary prompt, as the chat model stores them."""
    from llmseqrec.text.cache import CacheKeyParts

    params = summary_params(options, kind).model_dump(mode="json")
    parts = CacheKeyParts(backend, model, SUMMARY_TEMPLATES[kind], params)
    return [parts.key(p) for p in prompts]


def _uncached(chat: Any, prompts: list[str], options: SraclOptions, kind: str) -> set[int]:
    if chat.cache is None:
        return set(range(len(prompts)))
    keys = summary_keys(chat.backend.name, chat.identity, options, kind, prompts)
    hits = chat.cache.get_many(keys)
    return {i for i, key in enumerate(keys) if key not in hits}


def prompt_keys(
    dataset: Dataset, options: SraclOptions, workdir: Path, models: list[tuple[str, str]]
) -> dict[str, list[str]]:
    """Cache keys of every summary prompt per ``"backend\tmodel\tkind"``, for counting what the
    response cache holds without loading a model. Memoised beside the artefact directory:
    fitting 20k user prompts with the exact tokenizer takes minutes, and the prompts depend
    only on what the directory's hash covers."""
    directory = artefact_directory(dataset, options, workdir)
    memo = directory.with_name(directory.name + ".prompt-keys.json")
    held = json.loads(memo.read_text()) if memo.exists() else {}
    names = {(b, m, kind): f"{b}\t{m}\t{kind}" for b, m in models for kind in SUMMARY_TEMPLATES}
    if all(name in held for name in names.values()):
        return held
    chat = make_chat(options)  # its token count fits the prompts; no model is loaded
    user_prompts, _, item_prompts, _ = build_prompts(
        dataset, options, chat.context_length, chat.count_tokens
    )
    prompts = {"item": item_prompts, "user": user_prompts}
    for (backend, model, kind), name in names.items():
        held[name] = summary_keys(backend, model, options, kind, prompts[kind])
    memo.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(memo, held)
    return held


def make_chat(options: SraclOptions) -> Any:
    from llmseqrec.text import ChatConfig, ChatModel

    try:
        config = ChatConfig.model_validate(options.chat)
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(
            f"sracl: enhancer.chat.{'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
    return ChatModel(config)


def prepare_artefacts(
    dataset: Dataset, options: SraclOptions, workdir: Path, progress: bool = True, chat: Any = None
) -> Path:
    """Summaries (or raw texts), embeddings and neighbours under ``workdir/<options hash>/``."""
    from llmseqrec.text import SentenceEncoder, topk_neighbours

    directory = artefact_directory(dataset, options, workdir)
    if (directory / "meta.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    split = dataset.split
    trained_items = np.zeros(dataset.n_items + 1, dtype=bool)
    trained_items[split.train_items] = True
    trained_items[0] = False
    items = [int(i) for i in np.flatnonzero(trained_items)]
    cost: dict[str, Any]
    if options.text_source == "llm":
        own_chat = chat is None
        chat = chat or make_chat(options)
        try:
            stage = run_llm_stage(dataset, options, chat, progress=progress)
        finally:
            if own_chat:
                chat.close()
        cost = stage["cost"]
        atomic.write_json(directory / "llm_cost.json", cost)
        if cost["users_done"] < cost["users_total"] or cost["items_done"] < cost["items_total"]:
            raise LlmStageIncomplete(
                f"sracl LLM stage incomplete: {cost['users_done']}/{cost['users_total']} users, "
                f"{cost['items_done']}/{cost['items_total']} items summarised "
                f"(llm_limit={options.llm_limit}); rerun to continue from the cache"
            )
        user_texts = [str(t).strip() for t in stage["users"]]
        item_texts = [str(t).strip() for t in stage["item_answers"]]
        assert stage["items"] == items
    else:
        builder = SummaryPrompts(dataset, options, 10**9)
        # Most recent first: the encoder truncates the end of a long text.
        user_texts = [" ; ".join(reversed(builder.user_history(u))) for u in range(dataset.n_users)]
        item_texts = [builder.item_label(i) for i in items]
        cost = {"calls": 0, "model": None, "backend": None}
    atomic.write_json(directory / "user_texts.json", user_texts)
    atomic.write_json(
        directory / "item_texts.json", dict(zip(map(str, items), item_texts, strict=True))
    )
    encoder = SentenceEncoder(options.encoder)
    embed_start = time.perf_counter()
    item_vectors = encoder.encode(item_texts, progress=progress)
    if options.text_source == "raw" and options.raw_user == "mean":
        # Mean of the training items' text embeddings (the same items the concat text lists).
        table = np.zeros((dataset.n_items + 1, item_vectors.shape[1]), dtype=np.float32)
        table[items] = item_vectors
        sums = np.add.reduceat(table[split.train_items], split.train_offsets[:-1], axis=0)
        user_vectors = sums / np.diff(split.train_offsets)[:, None]
    else:
        user_vectors = encoder.encode(user_texts, progress=progress)
    embed_seconds = time.perf_counter() - embed_start
    k = options.k
    user_idx, _ = topk_neighbours(user_vectors, min(k, max(dataset.n_users - 1, 1)))
    user_nb = np.full((dataset.n_users, k), -1, dtype=np.int64)
    user_nb[:, : user_idx.shape[1]] = user_idx
    item_idx, _ = topk_neighbours(item_vectors, min(k, max(len(items) - 1, 1)))
    ids = np.asarray(items, dtype=np.int64)
    item_nb = np.zeros((dataset.n_items + 1, k), dtype=np.int64)
    item_nb[ids, : item_idx.shape[1]] = np.where(item_idx >= 0, ids[np.maximum(item_idx, 0)], 0)
    atomic.save_npy(directory / "user_neighbours.npy", user_nb)
    atomic.save_npy(directory / "item_neighbours.npy", item_nb)
    cost.update(
        embedding_model=encoder.identity,
        texts_encoded=encoder.encoded,
        embedding_seconds=round(embed_seconds, 3),
        total_seconds=round(time.perf_counter() - started, 3),
    )
    atomic.write_json(directory / "cost.json", cost)
    meta = {
        "options": options.artefact_options(),
        "users": dataset.n_users,
        "items_with_text": len(items),
        "items": dataset.n_items,
    }
    atomic.write_json(directory / "meta.json", meta)  # written last: marks the artefacts complete
    return directory


def neighbour_agreement(dataset: Dataset, directory: Path, seed: int = 0) -> dict[str, float]:
    """How often the retrieved neighbours agree with the training interactions.

    users: share of (user, neighbour) pairs whose training prefixes have an item in common;
    items: share of (item, neighbour) pairs bought by a common user in training. Each beside
    the same share for as many uniformly random partners (self excluded), so a report can say
    whether the text retrieval finds collaborative signal at all. Reads training data only.
    """
    from scipy import sparse

    split = dataset.split
    users = split.train_users_of()
    held = sparse.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, split.train_items.astype(np.int64))),
        shape=(split.n_users, dataset.n_items + 1),
    )
    held.data[:] = 1.0  # repeated purchases count once
    rng = np.random.default_rng(seed)

    def share(rows: Any, neighbours: np.ndarray, eligible: np.ndarray) -> tuple[float, float]:
        anchor, slot = np.nonzero(neighbours >= 0)
        keep = eligible[anchor]
        anchor, partner = anchor[keep], neighbours[anchor[keep], slot[keep]]
        if len(anchor) == 0:
            return 0.0, 0.0
        pool = np.flatnonzero(eligible)
        chance_partner = rng.choice(pool, size=len(anchor))
        clash = chance_partner == anchor
        chance_partner[clash] = pool[(np.searchsorted(pool, chance_partner[clash]) + 1) % len(pool)]

        def common(a: np.ndarray, b: np.ndarray) -> float:
            return float((np.asarray(rows[a].multiply(rows[b]).sum(axis=1)).ravel() > 0).mean())

        return common(anchor, partner), common(anchor, chance_partner)

    user_nb = np.load(Path(directory) / "user_neighbours.npy", allow_pickle=False)
    item_nb = np.load(Path(directory) / "item_neighbours.npy", allow_pickle=False)
    item_nb = np.where(item_nb > 0, item_nb, -1)  # 0 = padding item, never a neighbour
    items_held = held.T.tocsr()
    trained = np.asarray(items_held.sum(axis=1)).ravel() > 0
    user_share, user_chance = share(held, user_nb, np.ones(split.n_users, dtype=bool))
    item_share, item_chance = share(items_held, item_nb, trained)
    return {
        "users_sharing_an_item": round(user_share, 4),
        "users_sharing_an_item_random": round(user_chance, 4),
        "items_bought_together": round(item_share, 4),
        "items_bought_together_random": round(item_chance, 4),
    }


# ---------------------------------------------------------------------------------- training
def last_state(model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """The representation that ranks the next item, for left-padded rows (computed on groups
    of similar length: the extra views' passes are most of a contrastive method's cost)."""
    if hasattr(model, "sequence_representation"):
        return represent_by_length(model.sequence_representation, rows)
    return represent_by_length(lambda part: model.encode(part)[:, -1, :], rows)


class AttentionSynthesis(nn.Module):
    """``w = LeakyReLU(a^T [W h_u || W h_u'])``, softmax over the k neighbours."""

    def __init__(self, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(dim, dim))
        self.a = nn.Parameter(torch.empty(2 * dim))
        bound = 1.0 / dim**0.5
        with torch.no_grad():
            self.W.uniform_(-bound, bound, generator=generator)
            self.a.uniform_(-bound, bound, generator=generator)
        self.act = nn.LeakyReLU(0.2)

    def weights(
        self, anchor: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """anchor [B, d], neighbours [B, k, d], valid [B, k] -> weights [B, k] (rows sum to 1)."""
        d = anchor.shape[-1]
        wa = anchor @ self.W.T
        wn = neighbours @ self.W.T
        score = self.act((wa @ self.a[:d])[:, None] + wn @ self.a[d:])
        score = score.masked_fill(~valid, float("-inf"))
        return torch.softmax(score, dim=1)

    def forward(
        self, anchor: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        p = self.weights(anchor, neighbours, valid)
        return (p[:, :, None] * neighbours).sum(1)


@register_enhancer
class SRACL(Enhancer):
    name = "sracl"
    ablations = {
        "wo_cl": {"use_cs": False, "use_is": False},
        "wo_cs": {"use_cs": False},
        "wo_is": {"use_is": False},
        "unlearnable": {"unlearnable": True},
        "raw_text": {"text_source": "raw"},
    }

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: SraclOptions = parse_options(SraclOptions, self.options, "sracl")  # type: ignore[assignment]
        self.user_neighbours: np.ndarray | None = None
        self.item_neighbours: torch.Tensor | None = None
        self.artefacts: Path | None = None
        self.synthesis: AttentionSynthesis | None = None
        self._pending_state: dict[str, Any] | None = None
        self._train_rows: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return (self.opts.use_cs and self.opts.alpha > 0) or (
            self.opts.use_is and self.opts.beta > 0
        )

    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        if not self.active:
            return  # w/o CL: the plain backbone, no offline step needed
        self.artefacts = prepare_artefacts(dataset, self.opts, Path(workdir))
        self.user_neighbours = np.load(self.artefacts / "user_neighbours.npy", allow_pickle=False)
        self.item_neighbours = torch.from_numpy(
            np.load(self.artefacts / "item_neighbours.npy", allow_pickle=False)
        )

    def wrap(self, recommender: nn.Module) -> nn.Module:
        dim = recommender.item_table().shape[1]
        self.synthesis = AttentionSynthesis(dim, torch.Generator().manual_seed(1234))
        if self._pending_state is not None:
            self.synthesis.load_state_dict(self._pending_state)
            self._pending_state = None
        return recommender

    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        super().bind(dataset, max_len, seed)
        split = dataset.split
        # Each user's training prefix (last max_len items): the neighbour's sequence.
        self._train_rows = left_pad(
            split.train_offsets, split.train_items.astype(np.int64), max_len
        )

    def trainable_modules(self) -> list[nn.Module]:
        learnable = self.opts.use_cs and not self.opts.unlearnable and self.active
        return [self.synthesis] if self.synthesis is not None and learnable else []

    def extra_loss(
        self, model: nn.Module, batch: Batch, states: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if not self.active or self.user_neighbours is None:
            return {}
        opts = self.opts
        out: dict[str, torch.Tensor] = {}
        anchor = states[:, -1, :]
        if opts.use_cs and opts.alpha > 0:
            out["cs"] = opts.alpha * self.cross_sequence_loss(model, batch, anchor)
        if opts.use_is and opts.beta > 0:
            out["is"] = opts.beta * self.intra_sequence_loss(model, batch)
        return out

    def neighbour_rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.user_neighbours is not None and self._train_rows is not None
        nb = torch.from_numpy(self.user_neighbours[users.numpy()])  # [B, k], -1 = none
        m = self.opts.cs_sample
        if m is not None and m < nb.shape[1]:
            # m distinct random neighbour slots per user; attention runs over those only.
            slots = torch.rand(nb.shape, generator=self.generator).argsort(1)[:, :m]
            nb = torch.gather(nb, 1, slots)
        valid = nb >= 0
        rows = torch.from_numpy(self._train_rows[np.maximum(nb.numpy(), 0).reshape(-1)])
        # Trim columns that are padding everywhere (cheap for short sequences).
        keep = (rows != 0).any(0)
        first = int(keep.nonzero()[0]) if keep.any() else rows.shape[1] - 1
        return rows[:, first:], valid

    def cross_sequence_loss(
        self, model: nn.Module, batch: Batch, anchor: torch.Tensor
    ) -> torch.Tensor:
        # Neighbour tables and the method's generator live on the CPU; the rows move after.
        rows, valid = self.neighbour_rows(batch.users.cpu())
        b, k = valid.shape
        if self.opts.unlearnable:
            # One random valid neighbour per user (no attention).
            noise = torch.rand(valid.shape, generator=self.generator).masked_fill(~valid, -1.0)
            pick = noise.argmax(1)
            chosen = rows.view(b, k, -1)[torch.arange(b), pick]
            positive = last_state(model, chosen.to(anchor.device))
        else:
            assert self.synthesis is not None
            reps = last_state(model, rows.to(anchor.device)).view(b, k, -1)
            positive = self.synthesis(anchor, reps, valid.to(anchor.device))
        return info_nce(anchor, positive, self.opts.temperature, self.opts.similarity)

    def substitution_view(self, inputs: torch.Tensor) -> torch.Tensor:
        assert self.item_neighbours is not None
        return substitute(inputs, self.opts.substitute_ratio, self.item_neighbours, self.generator)

    def intra_sequence_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs = batch.inputs.cpu()
        view_a = self.substitution_view(inputs)
        view_b = self.substitution_view(inputs)
        both = last_state(model, torch.cat([view_a, view_b]).to(batch.inputs.device))
        n = len(view_a)
        return symmetric_info_nce(both[:n], both[n:], self.opts.temperature, self.opts.similarity)

    def state_dict(self) -> dict[str, Any]:
        if self.synthesis is None:
            return {}
        return {
            "synthesis": {k: v.detach().clone() for k, v in self.synthesis.state_dict().items()}
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "synthesis" not in state:
            return
        if self.synthesis is None:
            self._pending_state = state["synthesis"]
        else:
            self.synthesis.load_state_dict(state["synthesis"])
