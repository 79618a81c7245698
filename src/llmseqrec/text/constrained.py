"""Grammar-constrained decoding for the transformers backend, with llguidance token masks.

llama.cpp enforces a GBNF grammar itself; a Hugging Face model needs the same guarantee from
outside: before each token, every row's matcher says which tokens keep its answer inside the
grammar and the others are masked to -inf. llguidance (the Rust engine llama.cpp can use too)
reads GBNF, Lark and JSON schemas, so one grammar text serves both backends and a stage's
answers parse the same way whichever backend wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llmseqrec.errors import ConfigError

if TYPE_CHECKING:
    import torch


def compile_grammar(grammar: str | None, json_schema: dict[str, Any] | None) -> str | None:
    """An llguidance grammar from a GBNF/Lark text or a JSON schema (None: unconstrained)."""
    import llguidance

    try:
        if grammar is not None:
            return llguidance.grammar_from("grammar", grammar)
        if json_schema is not None:
            # Compact JSON: a free whitespace run lets a weak model spend its tokens on blanks.
            return llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(json_schema),
                defaults={
                    "whitespace_flexible": False,
                    "item_separator": ", ",
                    "key_separator": ": ",
                },
            )
    except (ValueError, RuntimeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"answer grammar does not compile: {first}") from error
    return None


def guidance_tokenizer(tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> Any:
    """llguidance's view of a fast HF tokenizer (~1 s: build once per model).

    ``vocab_size`` is the model's logit width (often padded past the tokenizer's) and
    ``stop_ids`` the tokens ``generate`` stops on: a finished grammar then allows exactly those.
    """
    import llguidance.hf

    try:
        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(stop_ids))
    except (ValueError, TypeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(
            f"grammars need a byte-level BPE fast tokenizer; this model's tokenizer is not one: {first}"
        ) from error


def check_grammar(grammar: str, tokenizer: Any) -> None:
    """One-line error for a grammar llguidance rejects against this tokenizer."""
    import llguidance

    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise ConfigError(f"answer grammar rejected: {messages[0].splitlines()[0]}")


class GrammarMask:
    """A ``generate`` logits processor: row r may only continue inside the grammar.

    Rows whose grammar has finished (their stop token taken) are left alone: ``generate``
    pads them. ``prompt_length`` is the padded prompt width, so the first call consumes nothing.
    """

    def __init__(self, tokenizer: Any, grammar: str, rows: int, prompt_length: int) -> None:
        """``grammar`` as :func:`check_grammar` accepted it (checked once per call, not per batch)."""
        import llguidance

        self.matchers = [llguidance.LLMatcher(tokenizer, grammar, log_level=0) for _ in range(rows)]
        self.prompt_length = prompt_length
        self.words = np.zeros((rows, (tokenizer.vocab_size + 31) // 32), dtype=np.int32)
        stop_bits = np.zeros(self.words.shape[1] * 32, dtype=np.uint8)
        stop_bits[list(tokenizer.eos_tokens)] = 1
        self.stop_words = np.packbits(stop_bits, bitorder="little").view(np.int32)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        last = input_ids[:, -1].tolist() if input_ids.shape[1] > self.prompt_length else None
        return self.restrict(range(len(self.matchers)), last, scores)

    def restrict(
        self, rows: Sequence[int], last_tokens: Sequence[int] | None, scores: torch.Tensor
    ) -> torch.Tensor:
        """``scores[i]`` masked for matcher ``rows[i]``, after it takes ``last_tokens[i]``.

        ``last_tokens`` is None before the first answer token. A decode loop that drops its
        finished rows passes the rows it still runs.
        """
        import torch

        rows = list(rows)
        if last_tokens is not None:
            for row, token in zip(rows, last_tokens, strict=True):
                if not self.matchers[row].is_stopped():
                    self.matchers[row].consume_token(token)
        for row in rows:
            matcher = self.matchers[row]
            if matcher.is_stopped() or matcher.is_error():
                # A complete (or broken) answer may only end; generate pads it from then on.
                self.words[row] = self.stop_words
            else:
                matcher.unsafe_compute_mask_ptr(self.words[row].ctypes.data, self.words[row].nbytes)
        allowed = np.unpackbits(self.words[rows].view(np.uint8), axis=1, bitorder="little")
        width = scores.shape[1]
        keep = np.zeros((len(rows), width), dtype=bool)
        keep[:, : min(width, allowed.shape[1])] = allowed[:, :width].astype(bool)
        return scores.masked_fill(~torch.from_numpy(keep).to(scores.device), float("-inf"))
