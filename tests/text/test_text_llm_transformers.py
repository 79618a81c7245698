"""The transformers backend on a real (tiny, randomly initialised) Llama saved to disk with the
packaged MiniLM tokenizer: no hub access, seconds on CPU, exercises batching and caching."""

import json
import shutil

import pytest
import torch

from llmseqrec.errors import ConfigError
from llmseqrec.text.llm import ChatConfig, ChatModel, resolve_dtype
from llmseqrec.text.locate import packaged_gguf, packaged_minilm


def save_tiny_llama(folder, vocab_size: int, pad: int, bos: int, eos: int) -> None:
    """A randomly initialised 2-layer Llama (seconds on CPU), saved as a model directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


def chat_on(folder, cache, **config) -> ChatModel:
    return ChatModel(
        ChatConfig(backend="transformers", model=str(folder), device="cpu", **config),
        cache_path=cache,
    )


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(folder, 30522, pad=0, bos=101, eos=102)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(packaged_minilm() / name, folder / name)
    return folder


def test_batched_equals_one_at_a_time_and_reruns_from_cache(tiny_llama_dir, tmp_path):
    prompts = ["rose shampoo", "a much longer prompt about red nail polish and lotion", "soap"]
    config = ChatConfig(
        backend="transformers", model=str(tiny_llama_dir), batch_size=3, device="cpu"
    )
    batched = ChatModel(config, cache_path=tmp_path / "a.sqlite")
    answers = batched.generate(prompts, max_tokens=4)
    assert batched.usage.calls == 3 and batched.usage.tokens_out > 0
    assert batched.context_length == 256

    single = ChatModel(
        config, backend=batched.backend, cache_path=tmp_path / "b.sqlite", batch_size=1
    )
    single.backend.config = single.config  # one prompt per forward pass
    assert [single.generate([p], max_tokens=4)[0] for p in prompts] == answers

    rerun = ChatModel(config, cache_path=tmp_path / "a.sqlite")
    assert rerun.generate(prompts, max_tokens=4) == answers
    assert rerun.usage.calls == 0 and rerun.backend._model is None


def test_on_cpu_no_prompt_is_read_under_a_padding_mask(tiny_llama_dir, tmp_path):
    # CPU attention under a padding mask is PyTorch's slow math path (3x on the LLMSeR stage):
    # prompts are read one by one, unpadded, and only the decode steps run as a padded batch.
    prompts = ["rose shampoo", "a much longer prompt about red nail polish and lotion", "soap"]
    chat = chat_on(tiny_llama_dir, tmp_path / "p.sqlite", batch_size=3)
    model, _ = chat.backend._load()
    reads: list[tuple[int, int, bool]] = []
    forward = model.forward

    def spy(*args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        reads.append((*ids.shape, mask is not None and not bool(mask.all())))
        return forward(*args, **kwargs)

    model.forward = spy
    answers = chat.generate(prompts, max_tokens=4)
    assert len(answers) == 3
    prompt_reads = [r for r in reads if r[1] > 1]
    assert prompt_reads and all(rows == 1 and not padded for rows, _, padded in prompt_reads)
    assert all(width == 1 for _, width, padded in reads if padded)


def test_on_cpu_finished_rows_leave_the_batch_and_answers_stay_generates(tiny_llama_dir, tmp_path):
    # generate kept a finished row in the batch until the longest answer ended; the CPU loop
    # drops it, and must still answer what generate answers for each prompt alone.
    from llmseqrec.text.llm import GenerationParams

    prompts = ["rose shampoo", "a much longer prompt about red nail polish", "soap", "lip balm"]
    chat = chat_on(tiny_llama_dir, tmp_path / "s.sqlite", batch_size=4)
    model, tokenizer = chat.backend._load()
    texts = [chat.backend._render(tokenizer, p, GenerationParams()) for p in prompts]

    def reference(stops: list[int]) -> list[list[int]]:
        out = []
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                tokens = model.generate(
                    input_ids=ids,
                    max_new_tokens=10,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=0,
                )
            out.append(tokens[0, ids.shape[1] :].tolist())
        return out

    # a stop token that ends one answer early while another runs on (the random model's own)
    free = reference([tokenizer.vocab_size - 1])
    stop = next(t for t in free[0][:3] if any(t not in answer for answer in free[1:]))
    chat.backend._stop_ids = [stop]
    expected = [
        tokenizer.decode(answer, skip_special_tokens=True).strip() for answer in reference([stop])
    ]
    shapes: list[tuple[int, int]] = []
    forward = model.forward

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    model.forward = spy
    assert chat.generate(prompts, max_tokens=10) == expected
    decode_rows = [rows for rows, width in shapes if width == 1]
    assert decode_rows[0] == 4 and decode_rows[-1] < 4


@pytest.fixture(scope="module")
def tiny_bpe_llama_dir(tmp_path_factory):
    """A random tiny Llama with SmolLM2's byte-level BPE tokenizer (what llguidance reads)."""
    from llmseqrec.text.llm import gguf_tokenizer

    folder = tmp_path_factory.mktemp("tiny-bpe-llama")
    tokenizer = gguf_tokenizer(str(packaged_gguf()))
    ids = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    save_tiny_llama(folder, len(tokenizer), *ids)
    tokenizer.save_pretrained(folder)
    return folder


def test_grammars_need_a_tokenizer_llguidance_reads(tiny_llama_dir, tmp_path):
    chat = chat_on(tiny_llama_dir, tmp_path / "w.sqlite")
    with pytest.raises(ConfigError, match="byte-level BPE"):
        chat.generate(["soap"], max_tokens=4, grammar='root ::= "yes" | "no"')


def test_grammar_holds_every_answer_of_a_random_model(tiny_bpe_llama_dir, tmp_path):
    # Random weights answer garbage; the llguidance mask must still keep each answer inside.
    prompts = ["rose shampoo", "a much longer prompt about red nail polish and lotion", "soap"]
    chat = chat_on(tiny_bpe_llama_dir, tmp_path / "c.sqlite", batch_size=2)
    answers = chat.generate(prompts, max_tokens=8, grammar='root ::= "yes" | "no"')
    assert set(answers) <= {"yes", "no"} and len(answers) == 3
    schema = {
        "type": "object",
        "properties": {"item": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["item"],
        "additionalProperties": False,
    }
    for answer in chat.generate(prompts, max_tokens=24, json_schema=schema):
        assert 1 <= json.loads(answer)["item"] <= 9


def test_grammar_holds_on_the_gpu_path_too(tiny_bpe_llama_dir, tmp_path):
    # A GPU reads a left-padded batch through plain `generate`, the grammar mask as a logits
    # processor (the LLMSeR stage on a lent GPU); no GPU here, so that path is taken on CPU.
    prompts = ["rose shampoo", "a much longer prompt about red nail polish and lotion", "soap"]
    chat = chat_on(tiny_bpe_llama_dir, tmp_path / "g.sqlite", batch_size=3)
    chat.backend._prefill_unpadded = lambda *_: None  # what it returns off the CPU
    answers = chat.generate(prompts, max_tokens=24, grammar='root ::= "{\\"item\\": " [1-9] "}"')
    assert len(answers) == 3 and all(1 <= json.loads(a)["item"] <= 9 for a in answers)


def test_a_broken_grammar_is_one_clear_error(tiny_bpe_llama_dir, tmp_path):
    chat = chat_on(tiny_bpe_llama_dir, tmp_path / "d.sqlite")
    with pytest.raises(ConfigError, match="answer grammar"):
        chat.generate(["soap"], max_tokens=4, grammar='root ::= "yes" | undefined_rule')


def test_weight_type_is_resolved_and_part_of_the_identity(tiny_llama_dir):
    assert resolve_dtype("auto", "cuda") == "float16"
    assert resolve_dtype("float32", "cpu") == "float32"
    assert resolve_dtype("auto", "cpu") in ("bfloat16", "float32")
    names = {
        ChatModel(
            ChatConfig(backend="transformers", model=str(tiny_llama_dir), device="cpu", dtype=d),
            use_cache=False,
        ).identity
        for d in ("float32", "bfloat16")
    }
    assert len(names) == 2 and all(n.startswith(tiny_llama_dir.name) for n in names)


def test_packaged_smollm2_answers_the_llmser_grammar(tmp_path):
    # The default model through transformers (dequantised GGUF), held to LLMSeR's SNF grammar:
    # only candidate numbers, at most M of them, compact JSON.
    from llmseqrec.enhancers.llmser import snf_grammar

    chat = ChatModel(
        ChatConfig(backend="transformers", device="cpu", batch_size=2),
        cache_path=tmp_path / "e.sqlite",
    )
    assert chat.identity.startswith(packaged_gguf().name)
    prompt = (
        "Candidates:\n1. stapler\n2. printer paper\n3. red pen\n4. desk lamp\n"
        'Pick up to 3 candidates the user bought before. Answer {"items": [numbers]}.'
    )
    answers = chat.generate(
        [prompt, prompt + " Think."], max_tokens=40, grammar=snf_grammar(False, 3, 4)
    )
    for answer in answers:
        items = json.loads(answer)["items"]
        assert 1 <= len(items) <= 3 and set(items) <= {1, 2, 3, 4}
