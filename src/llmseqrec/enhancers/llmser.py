"""LLMSeR: LLM-filtered pseudo-prior items with reliability-weighted dual-channel training.

Offline (``prepare``, cached under ``workdir/<options hash>/``, resumable in user chunks):

1. **CCG** (collaborative candidate generator). A backbone (the run's model unless
   ``offline_model`` names another) is trained with the project's trainer on REVERSED training
   prefixes. The derived dataset holds ``[v_k .. v_2, v_1, v_1]`` per user, so the leave-one-out
   split of the derived set trains on ``[v_k .. v_2]`` and early-stops on predicting ``v_1``:
   everything it sees is a training item; validation and test items never enter. Given the whole
   reversed prefix ``[v_k .. v_1]`` its top-``n_candidates`` predictions for "the item before
   ``v_1``" are the user's candidate pool (items of the prefix and items never seen in training
   excluded).
2. **SNF** (semantic noise filter). The chat model (``pick_items`` template; see *Reason* below)
   sees the reversed history texts (most recent first, unnumbered ``- `` lines) and the numbered
   candidate texts and picks ``n_pseudo`` (M) of them; the answer grammar admits candidate
   numbers only. Answers are grounded to the pool with ``text.Grounder`` (never an
   item outside the pool). Short or failed answers are filled from the CCG ranking
   (``snf_fallback="ccg"``) or left short (``"none"``); both are counted in ``cost.json``.
   The first-ranked pick is placed next to ``v_1`` (as the reverse model's top-1 is the item
   immediately before ``v_1``): ``S~ = [p_M .. p_1, v_1 .. v_k]``.
3. **ARV** (adaptive reliability validation). The LAST TRAINING item ``v_k`` is masked (the
   authors' code masks the validation item, a leak; we never touch it). A forward backbone trained
   on ``[v_1 .. v_(k-1)]`` per user (early stopping on ``v_k``) ranks the masked slot given
   ``[p_M .. p_1, v_1 .. v_(k-1)]``; its top-``n_verify`` (H) items go to the chat model
   (``pick_one``), which picks one. ``omega_u = clip(cos(e(picked), e(v_k)), 0, 1)`` with
   SentenceEncoder embeddings of the two item texts. A failed pick falls back to the forward
   model's top-1 (counted).

Training (dual channel): ``alpha_u = beta * omega_u`` if ``n_u > T`` (head user; ``T`` default
the 80th percentile of training lengths) else ``omega_u``; the loss is
``sum_u (1 - alpha_u) L(S_u) + alpha_u L(S~_u)``, through ``augment_batch``: original rows get
weight ``1 - alpha_u`` and the augmented rows are appended with weight ``alpha_u``
(``Batch.with_rows``). A batch where every ``alpha_u`` is 0 is returned untouched, so with all
weights 0 training is exactly the plain backbone (tested). Users whose prefix already fills the
window (``n_u > max_len``) are not augmented (the pseudo items would be cut off). Loss: whatever
the run config says; the ``p-s100`` protocol (the paper's) gives BCE with one negative, and
``train.loss=ce`` switches to CE.

Ablations (``ablation=...``), our reading of the paper's rows:

* ``wo_ccg``: the pool is not the reverse model's top-N but ``pool="popular"`` (the N most
  popular training items outside the history) or ``pool="random"`` (N random training items).
* ``wo_snf``: no LLM filter: the top-M of the CCG pool are the pseudo items (ARV still runs).
* ``wo_arv``: no reliability: ``omega_u = 1`` for every augmented user ("weight 1 on the
  augmented sequence"); the head-user factor beta still applies.
* ``wo_rcs``: without the Reversed Chronological Sequence in the SNF prompt: the history is shown
  oldest first (the prompt says so) instead of most recent first.
* ``wo_reason``: the prompts ask for the answer only (the packaged ``pick_items`` /
  ``pick_one`` templates). The full method asks for a one-sentence reason before the answer,
  in the same JSON object (``{"reason": ..., "items": [...]}``); only the items are grounded.
* ``wo_wd``: without weight differentiation: ``alpha_u = omega_u`` for head users too.

``llm=False`` is the LLM-free path (SNF = top-M of CCG, ARV pick = forward top-1): fast, used by
most tests. ``llm_users=K`` sends only the first K users (by index) to the chat model and uses
the LLM-free path for the rest; the coverage is written to ``cost.json``. Chunks already answered
are reused when K grows, and every answer is in the response cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.errors import ConfigError
from llmseqrec.machine import cpu_model
from llmseqrec.training.batches import Batch, left_pad

log = logging.getLogger(__name__)

# Bump when prompts, grammars or the chunk format change: cached chunks are then not reused.
# 2: the answer cap fits the longest answer (96 tokens cut SNF lists off). 3: histories are
# unnumbered and the grammar admits candidate numbers only (SmolLM2 answered history positions).
STAGE_VERSION = 3
RUNTIME_CHAT_KEYS = ("threads", "parallel_slots")
ABLATIONS = ("none", "wo_ccg", "wo_snf", "wo_arv", "wo_rcs", "wo_reason", "wo_wd")


class LLMSeROptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_candidates: int = Field(20, ge=1, description="N: CCG pool size")
    n_pseudo: int = Field(12, ge=1, description="M: pseudo-prior items per user")
    n_verify: int = Field(10, ge=1, description="H: forward candidates for the masked slot")
    arv_order: Literal["ranked", "reversed", "shuffled"] = Field(
        "ranked",
        description="order of the H candidates in the ARV prompt: the forward model's ranking "
        "(the paper), reversed, or shuffled per user (a probe of the chat model's position bias)",
    )
    beta: float = Field(0.5, ge=0.0, le=1.0, description="weight factor for head users")
    head_threshold: float | None = Field(
        None, ge=0, description="T: head users have n_u > T (default: 80th pct of lengths)"
    )
    ablation: Literal[ABLATIONS] = "none"  # type: ignore[valid-type]
    pool: Literal["popular", "random"] = Field("popular", description="pool for wo_ccg")
    snf_fallback: Literal["ccg", "none"] = "ccg"
    llm: bool = Field(True, description="False: LLM-free path (top-M of CCG, forward top-1)")
    llm_users: int | None = Field(None, ge=0, description="only the first K users go to the LLM")
    offline_model: str | None = Field(None, description="backbone for CCG/ARV (default: run's)")
    offline_epochs: int = Field(30, ge=1, description="epochs for the reverse/forward models")
    offline_patience: int = Field(5, ge=1)
    chat: dict[str, Any] = Field(default_factory=dict, description="ChatConfig fields")
    max_tokens: int | None = Field(
        None, ge=1, description="answer tokens (default: the longest answer the format allows)"
    )
    chunk_users: int = Field(32, ge=1)
    text_fields: tuple[str, ...] = ("title", "brand", "categories")
    text_chars: int = Field(120, ge=10, description="item text cut to this many characters")
    seed: int = 0


# ---------------------------------------------------------------- helpers


def short_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :12
    ]


def dataset_fingerprint(dataset: Dataset) -> str:
    """Identity of the TRAINING data (the only part offline stages read)."""
    split = dataset.split
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(split.train_offsets, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(split.train_items, dtype=np.int64).tobytes())
    digest.update(str(dataset.n_items).encode())
    return digest.hexdigest()[:12]


def csr_from_lists(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    flat = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    return offsets, flat


def derived_dataset(dataset: Dataset, kind: Literal["reverse", "forward"]) -> Dataset:
    """A dataset built from TRAINING prefixes only, whose own split never touches valid/test.

    ``reverse``: ``[v_k .. v_2, v_1, v_1]``: trains on ``[v_k .. v_2]``, early-stops on ``v_1``.
    ``forward``: ``[v_1 .. v_k, v_k]``: trains on ``[v_1 .. v_(k-1)]``, early-stops on ``v_k``.
    """
    split = dataset.split
    offsets, items = split.train_offsets, split.train_items.astype(np.int32)
    lengths = np.diff(offsets)
    if (lengths < 1).any():
        raise ConfigError(f"dataset {dataset.name!r}: a user has an empty training prefix")
    users = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(items)) - offsets[:-1][users]
    if kind == "reverse":
        base = items[offsets[:-1][users] + lengths[users] - 1 - position]  # reversed per user
        last = items[offsets[:-1]]  # v_1
    else:
        base = items
        last = items[offsets[1:] - 1]  # v_k
    new_lengths = lengths + 1
    new_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=new_offsets[1:])
    flat = np.empty(int(new_offsets[-1]), dtype=np.int32)
    new_users = np.repeat(np.arange(len(lengths)), new_lengths)
    new_pos = np.arange(len(flat)) - new_offsets[:-1][new_users]
    in_base = new_pos < lengths[new_users]
    flat[in_base] = base
    flat[~in_base] = last
    return Dataset(
        name=f"{dataset.name}-{kind}",
        user_ids=dataset.user_ids,
        item_ids=dataset.item_ids,
        offsets=new_offsets,
        items=flat,
        item_text=dataset.item_text,
        metadata={"source": {"format": f"derived-{kind}"}, "parent": dataset.name},
    )


def train_offline_backbone(
    run_config: Any,
    derived: Dataset,
    root: Path,
    model: str,
    epochs: int,
    patience: int,
    seed: int,
) -> torch.nn.Module:
    """Train (or reload) a backbone on a derived dataset with the project's trainer."""
    from llmseqrec.training.run import train_run
    from llmseqrec.training.trainer import build_model

    train = run_config.train.model_copy(
        update={"epochs": epochs, "patience": patience, "seed": seed, "max_minutes": None}
    )
    backbone = (
        dict(run_config.backbone)
        if model == run_config.model
        else {
            k: v
            for k, v in run_config.backbone.items()
            if k in ("max_len", "hidden_size", "dropout")
        }
    )
    config = run_config.model_copy(
        update={
            "dataset": derived.name,
            "model": model,
            "method": "none",
            "enhancer": {},
            "backbone": backbone,
            "train": train,
            "name": "model",
        }
    )
    _, directory = train_run(config, derived, root=root, progress=False)
    net = build_model(config, derived)
    net.load_state_dict(torch.load(directory / "checkpoint.pt", weights_only=True))
    net.eval()
    return net


@torch.no_grad()
def topk_next(
    model: torch.nn.Module,
    histories: list[np.ndarray],
    k: int,
    max_len: int,
    allowed: np.ndarray,
    exclude: list[np.ndarray] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Top-k next items per history ([U, k], 0 where fewer than k are allowed)."""
    out = np.zeros((len(histories), k), dtype=np.int64)
    bad = torch.from_numpy(~allowed)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        offsets, flat = csr_from_lists([np.asarray(h, dtype=np.int32) for h in chunk])
        rows = torch.from_numpy(left_pad(offsets, flat, max_len))
        scores = model.score_last(rows).float()
        scores[:, bad] = -torch.inf
        for i, h in enumerate(chunk):
            drop = h if exclude is None else exclude[start + i]
            if len(drop):
                scores[i, torch.as_tensor(np.asarray(drop, dtype=np.int64))] = -torch.inf
        values, index = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        index[~torch.isfinite(values)] = 0
        out[start : start + len(chunk), : index.shape[1]] = index.numpy()
    return out


def model_max_len(model: torch.nn.Module) -> int:
    return int(model.backbone.config.max_len)


# ---------------------------------------------------------------- prompts

REASON_SNF = (
    "First give a one-sentence reason, then the answer, as one JSON object "
    '{"reason": "...", "items": [candidate numbers]} in order of likelihood.'
)
REASON_ARV = (
    "First give a one-sentence reason, then the answer, as one JSON object "
    '{"reason": "...", "item": candidate number}.'
)


def snf_template(reason: bool, reversed_history: bool):
    """The SNF prompt: packaged ``pick_items`` or a derived variant (own name, own cache keys)."""
    from llmseqrec.text import PromptTemplate, load_template

    base = load_template("pick_items")
    if not reason and reversed_history:
        return base
    text = base.text
    name = "llmser_pick_items"
    if not reversed_history:
        text = text.replace("most recent first", "oldest first")
        name += "_chrono"
    if reason:
        head, _, _ = text.partition("Answer with a JSON object")
        text = head + REASON_SNF + "\n"
        name += "_reason"
    return PromptTemplate(name, base.version, text)


def arv_template(reason: bool):
    from llmseqrec.text import PromptTemplate, load_template

    base = load_template("pick_one")
    if not reason:
        return base
    head, _, _ = base.text.partition("Answer with a JSON object")
    return PromptTemplate("llmser_pick_one_reason", base.version, head + REASON_ARV + "\n")


def arv_display_order(candidates: np.ndarray, order: str, seed: int, user: int) -> np.ndarray:
    """The ARV candidates in the order the prompt lists them (numbered 1..H in that order)."""
    if order == "reversed":
        return candidates[::-1].copy()
    if order == "shuffled":  # per user, so chunking and sharding do not change it
        return np.random.default_rng([seed, user]).permutation(candidates)
    return candidates


def answer_items_only(answer: str) -> str:
    """Keep only the answer fields of a JSON object (a reason must never be grounded)."""
    from llmseqrec.text import parse_json_answer

    parsed = parse_json_answer(answer)
    if isinstance(parsed, dict):
        kept = {k: v for k, v in parsed.items() if k in ("items", "item")}
        return json.dumps(kept)
    return answer


REASON_CHARS = 80


def _number(n: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": max(n, 1)}


def snf_schema(reason: bool, n: int, n_candidates: int) -> dict[str, Any]:
    props: dict[str, Any] = {
        "items": {"type": "array", "items": _number(n_candidates), "maxItems": n}
    }
    if reason:
        props = {"reason": {"type": "string", "maxLength": REASON_CHARS}, **props}
    return {"type": "object", "properties": props, "required": list(props)}


def arv_schema(reason: bool, n_candidates: int) -> dict[str, Any]:
    props: dict[str, Any] = {"item": _number(n_candidates)}
    if reason:
        props = {"reason": {"type": "string", "maxLength": REASON_CHARS}, **props}
    return {"type": "object", "properties": props, "required": list(props)}


def answer_token_cap(reason: bool, n_items: int) -> int:
    """Tokens that always hold the longest answer the grammar/schema allows.

    A token is at least one byte, so the byte length of the longest compact answer is a bound;
    16 more cover a JSON-schema server's spacing. A smaller cap cuts the item list off after a
    long reason, and a cut answer grounds to nothing (the LLM is then silently bypassed).
    """
    head = len('{"reason": "') + REASON_CHARS + len('", ') if reason else 1
    body = len('"items": [') + 2 * n_items + len(", ") * (n_items - 1) + len("]}")
    return head + body + 16


_GBNF_REASON = f'reason ::= "\\"reason\\": \\"" [^"\\\\\\n]{{1,{REASON_CHARS}}} "\\", "\n'


def _gbnf_numbers(n_candidates: int) -> str:
    """``num`` matches the candidate numbers 1..n only (at most two digits: see the token cap)."""
    if not 1 <= n_candidates <= 99:
        raise ConfigError(f"llmser: {n_candidates} candidates; the answer grammar takes 1..99")
    return "num ::= " + " | ".join(f'"{i}"' for i in range(1, n_candidates + 1)) + "\n"


def snf_grammar(reason: bool, n: int, n_candidates: int) -> str:
    """Compact JSON (no indentation: half the answer tokens of a JSON-schema answer)."""
    head = '"{" reason ' if reason else '"{" '
    rest = f'("," " "? num){{0,{max(n - 1, 0)}}}'
    root = f'root ::= {head}"\\"items\\": [" num {rest} "]}}"\n'
    return root + (_GBNF_REASON if reason else "") + _gbnf_numbers(n_candidates)


def arv_grammar(reason: bool, n_candidates: int) -> str:
    head = '"{" reason ' if reason else '"{" '
    root = f'root ::= {head}"\\"item\\": " num "}}"\n'
    return root + (_GBNF_REASON if reason else "") + _gbnf_numbers(n_candidates)


def constraint(backend: Any, schema: dict[str, Any], grammar: str) -> dict[str, Any]:
    """The compact GBNF grammar where the backend holds it itself; else the JSON schema."""
    return (
        {"grammar": grammar}
        if getattr(backend, "enforces_grammar", False)
        else {"json_schema": schema}
    )


# ---------------------------------------------------------------- enhancer


@register_enhancer
class LLMSeR(Enhancer):
    name = "llmser"
    ablations = {name: {"ablation": name} for name in ABLATIONS if name != "none"}
    options_added_later = {"arv_order": "ranked"}  # runs recorded before it showed them ranked

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: LLMSeROptions = parse_options(LLMSeROptions, self.options, self.name)
        self.chat_model: Any = None  # tests may inject a ChatModel before prepare
        self.encoder: Any = None  # SentenceEncoder, created on first use
        self.pseudo_offsets: np.ndarray | None = None
        self.pseudo_items: np.ndarray | None = None
        self.omega: np.ndarray | None = None
        self.alpha: np.ndarray | None = None
        self.artefact_dir: Path | None = None

    # ------------------------------------------------------------ identity
    def _offline_model(self) -> str:
        if self.opts.offline_model:
            return self.opts.offline_model
        return self.run_config.model if self.run_config is not None else "sasrec"

    def _model_payload(self, dataset: Dataset) -> dict[str, Any]:
        cfg = self.run_config
        model = self._offline_model()
        return {
            "data": dataset_fingerprint(dataset),
            "model": model,
            "backbone": dict(cfg.backbone) if cfg is not None else {},
            "train": cfg.train.model_dump(
                exclude={"max_minutes", "threads", "epochs", "patience", "seed"}
            )
            if cfg is not None
            else {},
            "eval": cfg.eval.model_dump() if cfg is not None else {},
            "epochs": self.opts.offline_epochs,
            "patience": self.opts.offline_patience,
            "seed": self.opts.seed,
        }

    def _stage_payload(self, dataset: Dataset) -> dict[str, Any]:
        o = self.opts
        return {
            "version": STAGE_VERSION,
            "models": self._model_payload(dataset),
            "n": o.n_candidates,
            "m": o.n_pseudo,
            "h": o.n_verify,
            # options added later join the hash only away from their old behaviour, so stages
            # built before them keep their directory
            **{
                key: getattr(o, key)
                for key, old in self.options_added_later.items()
                if getattr(o, key) != old
            },
            "ablation": o.ablation
            if o.ablation in ("wo_ccg", "wo_snf", "wo_rcs", "wo_reason")
            else "none",
            "pool": o.pool if o.ablation == "wo_ccg" else None,
            "fallback": o.snf_fallback,
            # threads and slots change speed, not answers: chunks stay shared across them
            "chat": {k: v for k, v in o.chat.items() if k not in RUNTIME_CHAT_KEYS},
            "max_tokens": o.max_tokens,
            "fields": list(o.text_fields),
            "chars": o.text_chars,
            "chunk": o.chunk_users,
            "seed": o.seed,
        }

    # ------------------------------------------------------------ offline
    def _ensure_run_config(self, dataset: Dataset) -> None:
        if self.run_config is None:
            from llmseqrec.training.config import build_run_config

            self.run_config = build_run_config(dataset.name, "sasrec", self.name, "p-s100")

    def models_dir(self, workdir: Path, dataset: Dataset) -> Path:
        # Shared by LLMSeR and ASReP: the reverse model does not depend on the method's options.
        return Path(workdir).parent / "llmser" / "models" / short_hash(self._model_payload(dataset))

    def reverse_model(self, dataset: Dataset, workdir: Path) -> torch.nn.Module:
        return self._offline_model_for(dataset, workdir, "reverse")

    def forward_model(self, dataset: Dataset, workdir: Path) -> torch.nn.Module:
        return self._offline_model_for(dataset, workdir, "forward")

    def _offline_model_for(
        self, dataset: Dataset, workdir: Path, direction: Literal["reverse", "forward"]
    ) -> torch.nn.Module:
        self._ensure_run_config(dataset)
        return train_offline_backbone(
            self.run_config,
            derived_dataset(dataset, direction),
            self.models_dir(workdir, dataset) / direction,
            self._offline_model(),
            self.opts.offline_epochs,
            self.opts.offline_patience,
            self.opts.seed,
        )

    def item_texts(self, dataset: Dataset) -> list[str]:
        """Each item's text as the prompts show it (index 0: padding)."""
        texts = dataset.render_item_texts(self.opts.text_fields)
        out = []
        for i, t in enumerate(texts):
            t = t[: self.opts.text_chars] if t else ""
            out.append(t if t or i == 0 else f"item {dataset.item_ids[i - 1]}")
        return out

    def candidate_pools(self, dataset: Dataset, workdir: Path, directory: Path) -> np.ndarray:
        """[U, N] candidate pools (0 = none), cached in ``ccg.npz``."""
        path = directory / "ccg.npz"
        if path.exists():
            return np.load(path)["candidates"]
        split = dataset.split
        counts = np.bincount(split.train_items, minlength=dataset.n_items + 1)
        seen = counts > 0
        seen[0] = False
        histories = [split.train_sequence(u) for u in range(split.n_users)]
        n = self.opts.n_candidates
        started = time.perf_counter()
        if self.opts.ablation == "wo_ccg":
            rng = np.random.default_rng([self.opts.seed, 11])
            ranked = np.argsort(-counts[1:], kind="stable") + 1
            ranked = ranked[seen[ranked]]
            out = np.zeros((split.n_users, n), dtype=np.int64)
            for u, h in enumerate(histories):
                order = ranked if self.opts.pool == "popular" else rng.permutation(ranked)
                keep = order[~np.isin(order, h)][:n]
                out[u, : len(keep)] = keep
        else:
            model = self.reverse_model(dataset, workdir)
            reversed_histories = [h[::-1].copy() for h in histories]
            out = topk_next(model, reversed_histories, n, model_max_len(model), seen)
        atomic.save_npz(path, candidates=out, seconds=np.array(time.perf_counter() - started))
        return out

    def stage_dir(self, dataset: Dataset, workdir: Path) -> Path:
        """Where this option set's artefacts (pools, chunks, cost.json) live."""
        self._ensure_run_config(dataset)
        return Path(workdir) / short_hash(self._stage_payload(dataset))

    def travelling_files(self, dataset: Dataset, workdir: Path) -> list[Path]:
        """What a long LLM stage needs on another machine to go on where it stopped: the
        finished offline models and the candidate pools (the prompts are built from them, so
        models retrained elsewhere would ask other questions), and every finished LLM chunk.
        Plain chunks are left out: they take seconds to rebuild."""
        directory = self.stage_dir(dataset, workdir)
        files: list[Path] = []
        for metrics in sorted(self.models_dir(workdir, dataset).rglob("metrics.json")):
            if json.loads(metrics.read_text()).get("finished"):
                files += [
                    metrics.parent / n for n in ("config.yaml", "metrics.json", "checkpoint.pt")
                ]
        files += [directory / "options.json", directory / "ccg.npz"]
        files += sorted((directory / "chunks").glob("llm-*.npz"))
        return [f for f in files if f.exists()]

    def prepare(
        self,
        dataset: Dataset,
        workdir: Path,
        shard: tuple[int, int] = (0, 1),
        users_below: int | None = None,
    ) -> None:
        """Build (or reuse) every chunk and assemble the artefacts.

        ``shard=(k, n)`` builds only the missing chunks whose index is k mod n, so n processes
        can share one stage; a shard that finds chunks still missing returns without
        assembling (``self.cost`` then says how many), and a last unsharded call assembles.
        ``users_below=K`` likewise builds only the chunks that end at or before user K (the
        LLM-free twin of the users an unfinished LLM stage has reached).
        """
        k_shard, n_shard = shard
        if not 0 <= k_shard < n_shard:
            raise ConfigError(f"llmser shard {k_shard}/{n_shard}: need 0 <= k < n")
        if users_below is not None and users_below < 0:
            raise ConfigError(f"llmser users_below {users_below}: need K >= 0")
        directory = self.stage_dir(dataset, workdir)
        directory.mkdir(parents=True, exist_ok=True)
        atomic.write_json(directory / "options.json", self._stage_payload(dataset))
        self.artefact_dir = directory
        wall = time.perf_counter()
        candidates = self.candidate_pools(dataset, workdir, directory)
        forward = self.forward_model(dataset, workdir)
        split = dataset.split
        n_users = split.n_users
        llm_upto = 0
        if self.opts.llm:
            llm_upto = n_users if self.opts.llm_users is None else min(self.opts.llm_users, n_users)
        chunk = self.opts.chunk_users
        chunks_dir = directory / "chunks"
        chunks_dir.mkdir(exist_ok=True)
        texts = self.item_texts(dataset)
        segments: list[tuple[int, int, bool]] = []
        for start in range(0, n_users, chunk):
            end = min(start + chunk, n_users)
            if start < llm_upto < end:
                segments += [(start, llm_upto, True), (llm_upto, end, False)]
            else:
                segments.append((start, end, start < llm_upto))

        def chunk_path(start: int, end: int, use_llm: bool) -> Path:
            return chunks_dir / f"{'llm' if use_llm else 'plain'}-{start:07d}-{end:07d}.npz"

        def build(start: int, end: int, use_llm: bool) -> None:
            users = np.arange(start, end)
            result = self._process_chunk(dataset, users, candidates, forward, texts, use_llm)
            # the CPU (and the chat model's GPU, if any), so a report quoting the stage's wall
            # time can say what it was measured on
            gpu = getattr(self.chat_model, "accelerator", None) if use_llm else None
            where = {"cpu": np.array(cpu_model())} | ({"gpu": np.array(gpu)} if gpu else {})
            atomic.save_npz(chunk_path(start, end, use_llm), **result, **where)

        if n_shard > 1 or users_below is not None:
            mine = [
                s
                for i, s in enumerate(segments)
                if i % n_shard == k_shard and (users_below is None or s[1] <= users_below)
            ]
            todo = [s for s in mine if not chunk_path(*s).exists()]
            part = f"shard {k_shard}/{n_shard}" if n_shard > 1 else f"users < {users_below}"
            bar = tqdm(todo, desc=f"llmser {part}", unit="chunk", disable=False)
            for segment in bar:
                build(*segment)
            missing = sum(not chunk_path(*s).exists() for s in segments)
            if missing:
                self.cost = {"shard": f"{k_shard}/{n_shard}", "chunks": len(segments),
                             "chunks_missing": missing, "built_now": len(todo)}  # fmt: skip
                return
        pseudo: list[np.ndarray] = []
        omega = np.zeros(n_users, dtype=np.float32)
        picked_all = np.zeros(n_users, dtype=np.int64)
        totals: dict[str, float] = {}
        bar = tqdm(segments, desc="llmser offline", unit="chunk", disable=None, mininterval=5.0)
        for start, end, use_llm in bar:
            users = np.arange(start, end)
            path = chunk_path(start, end, use_llm)
            if not path.exists():
                build(start, end, use_llm)
            data = np.load(path)
            offs, flat = data["pseudo_offsets"], data["pseudo_items"]
            pseudo += [flat[offs[i] : offs[i + 1]] for i in range(len(users))]
            omega[users] = data["omega"]
            picked_all[users] = data["picked"]
            for key, value in json.loads(str(data["counters"])).items():
                totals[key] = totals.get(key, 0) + value
        self.pseudo_offsets, self.pseudo_items = csr_from_lists(pseudo)
        self.omega = omega
        self.picked = picked_all
        self.candidates = candidates
        cost = {
            "users": n_users,
            "llm_users": llm_upto,
            "coverage": llm_upto / max(n_users, 1),
            "prepare_wall_seconds_this_call": time.perf_counter() - wall,
            "chunks": len(segments),
            "ccg_seconds": float(np.load(directory / "ccg.npz")["seconds"]),
            **totals,
            "mean_pseudo_items": float(np.mean([len(p) for p in pseudo])) if pseudo else 0.0,
            "mean_omega": float(omega.mean()) if n_users else 0.0,
            "ablation": self.opts.ablation,
        }
        if self.opts.llm and self.chat_model is not None:
            cost["chat_model"] = getattr(self.chat_model, "identity", "?")
        atomic.write_json(directory / "cost.json", cost)
        # runs with different LLM coverage share the stage directory: keep each one's figures
        atomic.write_json(directory / f"cost-llm{llm_upto}.json", cost)
        self.cost = cost

    # ---------------------------------------------------------------- chunk
    def _chat(self) -> Any:
        if self.chat_model is None:
            from llmseqrec.text import ChatConfig, ChatModel

            try:
                config = ChatConfig.model_validate(self.opts.chat)
            except ValidationError as error:
                first = error.errors()[0]
                raise ConfigError(
                    f"llmser option enhancer.chat.{'.'.join(map(str, first['loc']))}: {first['msg']}"
                ) from None
            self.chat_model = ChatModel(config)
        return self.chat_model

    def _encoder(self) -> Any:
        if self.encoder is None:
            from llmseqrec.text import SentenceEncoder

            self.encoder = SentenceEncoder()
        return self.encoder

    def _process_chunk(
        self,
        dataset: Dataset,
        users: np.ndarray,
        candidates: np.ndarray,
        forward: torch.nn.Module,
        texts: list[str],
        use_llm: bool,
    ) -> dict[str, np.ndarray]:
        from llmseqrec.text import Bulleted, GenerationParams, Grounder, GroundingStats

        started = time.perf_counter()
        o = self.opts
        split = dataset.split
        m = o.n_pseudo
        counters: dict[str, float] = {
            "snf_users": 0,
            "snf_fallback_users": 0,
            "snf_filled_items": 0,
            "arv_users": 0,
            "arv_fallback_users": 0,
            "calls": 0,
            "cache_hits": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "model_seconds": 0.0,
            "llm_wall_seconds": 0.0,
            "llm_failures": 0,
        }
        histories = [split.train_sequence(int(u)) for u in users]
        pools = [c[c > 0] for c in candidates[users]]
        reason = o.ablation != "wo_reason"
        snf_tokens = o.max_tokens or answer_token_cap(reason, m)
        arv_tokens = o.max_tokens or answer_token_cap(reason, 1)
        stats = GroundingStats()
        grounder = Grounder(texts, self._encoder() if use_llm else None, stats=stats)
        chat = self._chat() if use_llm else None

        def ask(
            index: list[int],
            prompts: list[str],
            template: Any,
            schema: dict[str, Any],
            grammar: str,
            max_tokens: int,
        ) -> dict[int, str | None]:
            """The answers to `prompts` under the backend's form of the constraint, keyed by
            the user positions in `index` (a failed batch answers None, counted)."""
            if not prompts:
                return {}
            shape = constraint(chat.backend, schema, grammar)
            before = chat.usage.as_dict() if hasattr(chat.usage, "as_dict") else {}
            started = time.perf_counter()
            params = GenerationParams(max_tokens=max_tokens, **shape)
            try:
                answers: list[str | None] = list(
                    chat.generate(prompts, params=params, template=template.id)
                )
            except Exception as error:  # noqa: BLE001 - a failed batch falls back, counted
                log.warning("llmser: LLM batch failed (%s); falling back", error)
                counters["llm_failures"] += len(prompts)
                answers = [None] * len(prompts)
            counters["llm_wall_seconds"] += time.perf_counter() - started
            after = chat.usage.as_dict() if hasattr(chat.usage, "as_dict") else {}
            for key, name in (("calls", "calls"), ("cache_hits", "cache_hits"),
                              ("tokens_in", "tokens_in"), ("tokens_out", "tokens_out"),
                              ("seconds", "model_seconds")):  # fmt: skip
                counters[name] += float(after.get(key, 0)) - float(before.get(key, 0))
            return dict(zip(index, answers, strict=True))

        def grounded(answer: str | None, candidates: Any, max_items: int) -> list[int]:
            if answer is None or len(candidates) == 0:
                return []
            return grounder.ground(
                answer_items_only(answer), list(candidates), max_items=max_items, expect_json=True
            )

        # ---- SNF
        chosen: list[np.ndarray] = []
        llm_snf = use_llm and o.ablation != "wo_snf"
        if llm_snf:
            template = snf_template(reason, reversed_history=o.ablation != "wo_rcs")
            budget = max(256, self._chat().context_length - snf_tokens - 32)
            prompts, index = [], []
            for i, (h, pool) in enumerate(zip(histories, pools, strict=True)):
                if len(pool) == 0:
                    continue
                hist = [texts[x] for x in (h[::-1] if o.ablation != "wo_rcs" else h)]
                # Most recent first: a prompt over budget drops the most recent items, keeping
                # the ones next to the pseudo-prior slot.
                prompt, _ = template.render_fitted(
                    budget_tokens=budget,
                    count_tokens=self._chat().count_tokens,
                    history=Bulleted(hist),
                    candidates=[texts[c] for c in pool],
                    count=min(m, len(pool)),
                )
                prompts.append(prompt)
                index.append(i)
            widest = max((len(pools[i]) for i in index), default=1)  # one grammar per batch
            answers = ask(
                index,
                prompts,
                template,
                snf_schema(reason, m, widest),
                snf_grammar(reason, m, widest),
                snf_tokens,
            )
        for i, pool in enumerate(pools):
            if llm_snf:
                counters["snf_users"] += 1
                got = grounded(answers.get(i), pool, m)
                if len(got) < min(m, len(pool)):
                    counters["snf_fallback_users"] += 1
                    if o.snf_fallback == "ccg":
                        extra = [int(c) for c in pool if int(c) not in got][: m - len(got)]
                        counters["snf_filled_items"] += len(extra)
                        got = got + extra
                chosen.append(np.asarray(got, dtype=np.int64))
            else:
                chosen.append(pool[:m].astype(np.int64))
        # ---- ARV
        inputs = [
            np.concatenate([c[::-1], h[:-1]]).astype(np.int64)
            for c, h in zip(chosen, histories, strict=True)
        ]
        targets = np.array([int(h[-1]) for h in histories], dtype=np.int64)
        counts = np.bincount(split.train_items, minlength=dataset.n_items + 1)
        seen = counts > 0
        seen[0] = False
        verify = topk_next(forward, inputs, o.n_verify, model_max_len(forward), seen)
        picked = verify[:, 0].copy()
        llm_arv = use_llm
        if llm_arv:
            template = arv_template(reason)
            budget = max(256, self._chat().context_length - arv_tokens - 32)
            prompts, index = [], []
            shown: dict[int, np.ndarray] = {}
            for i, (x, cands) in enumerate(zip(inputs, verify, strict=True)):
                cands = arv_display_order(cands[cands > 0], o.arv_order, o.seed, int(users[i]))
                if len(x) == 0 or len(cands) == 0 or len(chosen[i]) == 0:
                    continue
                shown[i] = cands
                prompt, _ = template.render_fitted(
                    budget_tokens=budget,
                    count_tokens=self._chat().count_tokens,
                    history=Bulleted(texts[v] for v in x),
                    candidates=[texts[c] for c in cands],
                )
                prompts.append(prompt)
                index.append(i)
            widest = max((int((verify[i] > 0).sum()) for i in index), default=1)
            answers = ask(
                index,
                prompts,
                template,
                arv_schema(reason, widest),
                arv_grammar(reason, widest),
                arv_tokens,
            )
            for i in index:
                counters["arv_users"] += 1
                cands = shown[i]  # candidate numbers refer to the order the prompt showed
                got = grounded(answers.get(i), cands, 1)
                if got:
                    picked[i] = got[0]
                else:
                    counters["arv_fallback_users"] += 1
        # ---- omega
        omega = np.zeros(len(users), dtype=np.float32)
        has = np.array([len(c) > 0 and p > 0 for c, p in zip(chosen, picked, strict=True)])
        if has.any():
            idx = np.flatnonzero(has)
            a = self._encoder().encode([texts[int(picked[i])] for i in idx])
            b = self._encoder().encode([texts[int(targets[i])] for i in idx])
            omega[idx] = np.clip((a * b).sum(1), 0.0, 1.0)
        for key, value in stats.as_dict().items():
            counters[f"grounding_{key}"] = value
        # Kept in the chunk, so a stage's build time survives the calls that only reuse it
        # (summed over chunks: one process's seconds, whatever the sharding).
        counters["build_seconds"] = time.perf_counter() - started
        counters["chunks_timed"] = 1
        offsets, flat = csr_from_lists(chosen)
        return {
            "users": users,
            "pseudo_offsets": offsets,
            "pseudo_items": flat,
            "pools": candidates[users],
            "verify": verify,
            "picked": picked,
            "omega": omega,
            "counters": np.array(json.dumps(counters)),
        }

    # ------------------------------------------------------------ training
    def head_threshold(self, dataset: Dataset) -> float:
        if self.opts.head_threshold is not None:
            return float(self.opts.head_threshold)
        return float(np.percentile(dataset.split.train_lengths, 80))

    def compute_alpha(self, dataset: Dataset) -> np.ndarray:
        omega = self.omega.astype(np.float64).copy()
        lengths = dataset.split.train_lengths
        has_pseudo = np.diff(self.pseudo_offsets) > 0
        if self.opts.ablation == "wo_arv":
            omega = np.where(has_pseudo, 1.0, 0.0)
        alpha = omega.copy()
        if self.opts.ablation != "wo_wd":
            head = lengths > self.head_threshold(dataset)
            alpha[head] = self.opts.beta * omega[head]
        alpha[~has_pseudo] = 0.0
        return np.clip(alpha, 0.0, 1.0).astype(np.float32)

    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        super().bind(dataset, max_len, seed)
        if self.omega is None:
            raise ConfigError(f"{self.name}: prepare() must run before training")
        self.alpha = self.compute_alpha(dataset)
        self.aug_windows, augmentable = prepended_windows(
            dataset, self.pseudo_offsets, self.pseudo_items, max_len
        )
        self.row_alpha = np.where(augmentable, self.alpha, 0.0).astype(np.float32)

    def augment_batch(self, batch: Batch, step: int) -> Batch:
        return dual_channel(batch, self.row_alpha, self.aug_windows, self.dataset, mode="add")


def prepended_windows(
    dataset: Dataset, pseudo_offsets: np.ndarray, pseudo_items: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's augmented training window: the pseudo-prior items (stored nearest-first,
    so reversed) before the training sequence, left-padded to ``max_len + 1``; and which users
    it augments: those with pseudo items whose training sequence leaves room for them."""
    split = dataset.split
    rows = []
    for u in range(split.n_users):
        prior = pseudo_items[pseudo_offsets[u] : pseudo_offsets[u + 1]]
        rows.append(np.concatenate([prior[::-1], split.train_sequence(u)]))
    offsets, flat = csr_from_lists(rows)
    augmentable = (np.diff(pseudo_offsets) > 0) & (split.train_lengths <= max_len)
    return left_pad(offsets, flat, max_len + 1), augmentable


def _left_pad_to(tensor: torch.Tensor, width: int) -> torch.Tensor:
    if tensor.shape[1] >= width:
        return tensor
    pad = torch.zeros(tensor.shape[0], width - tensor.shape[1], dtype=tensor.dtype)
    return torch.cat([pad, tensor], dim=1)


def dual_channel(
    batch: Batch,
    user_alpha: np.ndarray,
    aug_windows: np.ndarray,
    dataset: Dataset,
    mode: Literal["add", "replace"] = "add",
) -> Batch:
    """``add``: original rows weighted ``1 - alpha``, augmented rows appended with weight ``alpha``.
    ``replace``: rows with ``alpha > 0`` are replaced by their augmented sequence (ASReP).

    Only rows that hold a user's whole training prefix are augmented; a batch with no such row
    (or all ``alpha = 0``) is returned unchanged, so zero weights reproduce the plain backbone.
    """
    users = batch.users.numpy()
    alpha = user_alpha[users].astype(np.float32)
    if not (alpha > 0).any():
        return batch
    whole = ((batch.inputs != 0).sum(1) + 1).numpy() == dataset.split.train_lengths[users]
    alpha = np.where(whole, alpha, 0.0).astype(np.float32)
    selected = np.flatnonzero(alpha > 0)
    if len(selected) == 0:
        return batch
    rows = torch.from_numpy(aug_windows[users[selected]])
    nonzero = (rows != 0).any(0)
    first = int(nonzero.nonzero()[0]) if nonzero.any() else rows.shape[1] - 2
    rows = rows[:, min(first, rows.shape[1] - 2) :]
    width = max(rows.shape[1] - 1, batch.inputs.shape[1])
    inputs = _left_pad_to(batch.inputs, width)
    targets = _left_pad_to(batch.targets, width)
    aug_in = _left_pad_to(rows[:, :-1], width)
    aug_tg = _left_pad_to(rows[:, 1:], width)
    base = batch.weights if batch.weights is not None else torch.ones(len(users))
    a = torch.from_numpy(alpha)
    if mode == "replace":
        sel = torch.from_numpy(selected)
        inputs = inputs.clone()
        targets = targets.clone()
        inputs[sel] = aug_in
        targets[sel] = aug_tg
        return Batch(
            users=batch.users,
            inputs=inputs.contiguous(),
            targets=targets.contiguous(),
            weights=batch.weights,
            views=batch.views,
            extras=batch.extras,
        )
    widened = Batch(
        users=batch.users,
        inputs=inputs.contiguous(),
        targets=targets.contiguous(),
        weights=base * (1.0 - a),
        views=batch.views,
        extras=batch.extras,
    )
    sel = torch.from_numpy(selected)
    return widened.with_rows(
        aug_in.contiguous(), aug_tg.contiguous(), batch.users[sel], base[sel] * a[sel]
    )
