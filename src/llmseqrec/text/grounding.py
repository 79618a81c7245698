"""Map an LLM's free-text answer to catalogue items, never leaving the allowed candidates.

Each entry the answer names (JSON list/object values, or one line of text) is matched by,
in order:
1. index: a number ``n`` (``3``, ``[3]``, ``3.``, ``#3``, ``item 3``) is the n-th displayed
   candidate (1-based, as :func:`llmseqrec.text.prompts.numbered` shows them);
2. exact title: the entry equals a candidate's text;
3. normalised title: equal after case folding, accent and punctuation removal;
4. embedding nearest neighbour among the candidates (when an encoder is given and the
   similarity reaches ``min_similarity``).
Anything else is a failure. Every route and every failure is counted in
:class:`GroundingStats`; duplicates are dropped, so each item appears once.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llmseqrec.text.encoders import SentenceEncoder

_INDEX_ENTRY = re.compile(
    r"^\s*(?:item|candidate|no\.?|number|#)?\s*\[?\(?#?(\d{1,4})\)?\]?\s*[.):\-]?\s*(.*)$", re.I
)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# Inside prose only an object counts as JSON: a bare "[2]" in text is an index, not a list.
_JSON_BLOCK = re.compile(r"(\{.*\})", re.S)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


@dataclass
class GroundingStats:
    answers: int = 0
    entries: int = 0
    by_index: int = 0
    by_exact_title: int = 0
    by_normalised_title: int = 0
    by_embedding: int = 0
    invalid_index: int = 0  # a number outside 1..len(candidates): tried as text instead
    failed: int = 0  # entries that matched no candidate
    empty_answers: int = 0  # answers that yielded no item at all
    duplicates: int = 0
    non_json: int = 0  # answers where JSON was expected but not found (parsed as text)

    @property
    def fallbacks(self) -> int:
        return self.by_normalised_title + self.by_embedding

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "fallbacks": self.fallbacks}


def normalise_title(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", stripped).split())


def parse_json_answer(answer: str) -> Any | None:
    """The first JSON value in an answer (models wrap JSON in prose or code fences), or None."""
    text = answer.strip()
    fenced = [m.group(1) for m in [_FENCE.search(text)] if m]
    embedded = [m.group(1) for m in [_JSON_BLOCK.search(text)] if m]
    for candidate in (text, *fenced, *embedded):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def _json_entries(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        out: list[str] = []
        for item in value.values():
            out.extend(_json_entries(item))
        return out
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            out.extend(_json_entries(item))
        return out
    if isinstance(value, bool) or value is None:
        return []
    return [str(value)]


def answer_entries(
    answer: str, stats: GroundingStats | None = None, *, expect_json: bool = False
) -> list[str]:
    """The entries an answer names, in order: JSON values, else non-empty lines (or ; / , lists)."""
    parsed = parse_json_answer(answer)
    if parsed is not None and not isinstance(parsed, str | int | float):
        return [e for e in (s.strip() for s in _json_entries(parsed)) if e]
    if isinstance(parsed, int | float) and not isinstance(parsed, bool):
        return [str(parsed)]
    if expect_json and stats is not None:
        stats.non_json += 1
    lines = [line.strip(" \t-*•") for line in answer.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) == 1 and re.fullmatch(r"[\d\s,;\[\]#]+", lines[0]):
        lines = [p for p in re.split(r"[,;\s\[\]]+", lines[0]) if p]  # "3, 7, 1" or "[3 7]"
    return lines


class Grounder:
    """Grounds answers against candidate lists drawn from one catalogue of item texts.

    ``item_texts[i]`` is the text of item ``i`` (index 0 = padding, as
    ``Dataset.render_item_texts()`` returns). With an encoder, item embeddings are computed
    lazily for the candidates that need them.
    """

    def __init__(
        self,
        item_texts: Sequence[str],
        encoder: SentenceEncoder | None = None,
        *,
        min_similarity: float = 0.3,
        stats: GroundingStats | None = None,
    ) -> None:
        self.item_texts = list(item_texts)
        self.encoder = encoder
        self.min_similarity = min_similarity
        self.stats = stats or GroundingStats()
        self._normalised: dict[int, str] = {}

    def _norm(self, item: int) -> str:
        if item not in self._normalised:
            self._normalised[item] = normalise_title(self.item_texts[item])
        return self._normalised[item]

    def ground(
        self,
        answer: str,
        candidates: Sequence[int],
        *,
        max_items: int | None = None,
        expect_json: bool = False,
    ) -> list[int]:
        """Item ids from ``candidates`` that the answer names, in the answer's order."""
        stats = self.stats
        stats.answers += 1
        candidates = [int(c) for c in candidates]
        resolved: list[int | None] = []
        to_embed: list[tuple[int, str]] = []  # (position in the answer, text to embed)
        for entry in answer_entries(answer, stats, expect_json=expect_json):
            stats.entries += 1
            item, leftover = self._match(entry, candidates)
            if item is None and leftover:
                to_embed.append((len(resolved), leftover))
            elif item is None:
                stats.failed += 1
            resolved.append(item)
        if to_embed:
            hits = self._by_embedding([text for _, text in to_embed], candidates)
            for (position, _), hit in zip(to_embed, hits, strict=True):
                resolved[position] = hit
        result: list[int] = []
        for item in resolved:
            if item is None:
                continue
            if item in result:
                stats.duplicates += 1
                continue
            result.append(item)
        if max_items is not None:
            result = result[:max_items]
        if not result:
            stats.empty_answers += 1
        allowed = set(candidates)
        if any(i not in allowed for i in result):  # the contract; cannot happen by construction
            raise AssertionError("grounding produced an item outside the candidate set")
        return result

    def _match(self, entry: str, candidates: list[int]) -> tuple[int | None, str]:
        """(item, "") on a direct match, else (None, text worth an embedding look-up)."""
        item = self._by_title(entry, candidates)  # a title may itself start with a number
        if item is not None:
            return item, ""
        match = _INDEX_ENTRY.match(entry)
        if not match:
            return None, entry
        number, rest = int(match.group(1)), match.group(2).strip()
        if rest:
            item = self._by_title(rest, candidates)
            if item is not None:
                return item, ""
        if 1 <= number <= len(candidates):
            self.stats.by_index += 1
            return candidates[number - 1], ""
        self.stats.invalid_index += 1
        return None, rest

    def _by_title(self, text: str, candidates: list[int]) -> int | None:
        exact = [c for c in candidates if self.item_texts[c] == text]
        if exact:
            self.stats.by_exact_title += 1
            return exact[0]
        wanted = normalise_title(text)
        if not wanted:
            return None
        normal = [c for c in candidates if self._norm(c) == wanted]
        if normal:
            self.stats.by_normalised_title += 1
            return normal[0]
        return None

    def _by_embedding(self, entries: list[str], candidates: list[int]) -> list[int | None]:
        stats = self.stats
        out: list[int | None] = []
        if self.encoder is None or not candidates:
            stats.failed += len(entries)
            return [None] * len(entries)
        query = self.encoder.encode(entries)
        keys = self.encoder.encode([self.item_texts[c] for c in candidates])
        similarity = query @ keys.T
        for row in similarity:
            best = int(np.argmax(row))
            if row[best] >= self.min_similarity:
                stats.by_embedding += 1
                out.append(candidates[best])
            else:
                stats.failed += 1
                out.append(None)
        return out


def ground(
    answer: str,
    candidates: Sequence[int],
    item_texts: Sequence[str],
    *,
    encoder: SentenceEncoder | None = None,
    stats: GroundingStats | None = None,
    max_items: int | None = None,
    min_similarity: float = 0.3,
    expect_json: bool = False,
) -> list[int]:
    """One-off grounding; for many answers keep a :class:`Grounder` (it reuses its caches)."""
    grounder = Grounder(item_texts, encoder, min_similarity=min_similarity, stats=stats)
    return grounder.ground(answer, candidates, max_items=max_items, expect_json=expect_json)
