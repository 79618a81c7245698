"""The default backend: the packaged SmolLM2 GGUF in-process through xllamacpp."""

import json

import pytest

from llmseqrec.text.errors import ModelNotFoundError
from llmseqrec.text.llm import ChatConfig, ChatModel, GenerationParams
from llmseqrec.text.locate import packaged_gguf

PROMPTS = [f"Name a colour that starts with the letter {c}." for c in "BGRY"]


def test_packaged_model_is_found_without_importing_its_package():
    path = packaged_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_batched_generation_then_cached_rerun_makes_zero_calls(smol_chat):
    answers = smol_chat.generate(PROMPTS, max_tokens=8)
    assert len(answers) == 4 and all(isinstance(a, str) and a for a in answers)
    usage = smol_chat.usage
    assert (
        usage.calls == 4 and usage.cache_hits == 0 and usage.tokens_out > 0 and usage.tokens_in > 0
    )

    # A fresh ChatModel on the same cache file: the model is not even loaded.
    rerun = ChatModel(smol_chat.config, cache_path=smol_chat.cache.path)
    assert rerun.generate(PROMPTS, max_tokens=8) == answers
    assert rerun.usage.calls == 0 and rerun.usage.cache_hits == 4
    assert rerun.backend._server is None
    stored = {row["backend"]: row for row in rerun.cache.usage()}["llamacpp"]
    assert stored["calls"] == 4 and stored["cache_hits"] == 4 and stored["stored"] == 4
    rerun.close()


def test_cache_key_separates_templates_and_parameters(smol_chat):
    smol_chat.generate(PROMPTS[:1], max_tokens=4, template="check@v1")
    smol_chat.generate(PROMPTS[:1], max_tokens=4, template="check@v2")
    smol_chat.generate(PROMPTS[:1], max_tokens=5, template="check@v1")
    smol_chat.generate(PROMPTS[:1] * 3, max_tokens=4, template="check@v1")  # duplicates: cached
    assert smol_chat.usage.calls == 3 and smol_chat.usage.cache_hits == 3
    assert len(smol_chat.cache) == 3


def test_json_schema_constrains_the_answer(smol_chat):
    schema = {
        "type": "object",
        "properties": {"item": {"type": "integer", "minimum": 1, "maximum": 3}},
        "required": ["item"],
        "additionalProperties": False,
    }
    params = GenerationParams(max_tokens=16, json_schema=schema)
    answer = smol_chat.generate(
        ["Candidates: 1. soap 2. shampoo 3. lotion. Which one? Answer as JSON."], params=params
    )[0]
    assert json.loads(answer)["item"] in (1, 2, 3)


def test_bad_model_path_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF model file not found"):
        ChatModel(ChatConfig(model=str(tmp_path / "missing.gguf")))
    with pytest.raises(ModelNotFoundError, match="needs a .gguf file"):
        ChatModel(ChatConfig(model=str(tmp_path)))


# Titles made of model numbers and codes: ~1 byte per token, where the byte estimate assumes 3.
CODE_TITLES = [f"HP {n}XL CN{n}WN 0.{n}mm #{n}-B/{n}" for n in range(100, 400)]


def test_prompts_fitted_with_the_models_count_fit_its_context(smol_chat):
    """Regression: fitted with the byte estimate, an Office user prompt of 2,249 tokens reached
    the server, which refused it for its 2,048-token context."""
    from llmseqrec.text.prompts import load_template

    template = load_template("user_summary")
    budget = smol_chat.context_length - 128
    estimated, _ = template.render_fitted(budget_tokens=budget, history=CODE_TITLES)
    assert smol_chat.count_tokens(estimated) > 2 * budget  # what the estimate let through
    fitted, dropped = template.render_fitted(
        budget_tokens=budget, count_tokens=smol_chat.count_tokens, history=CODE_TITLES
    )
    assert dropped > 0 and budget - 40 < smol_chat.count_tokens(fitted) <= budget
    assert smol_chat.generate([fitted], max_tokens=2)[0] is not None  # the server accepts it
