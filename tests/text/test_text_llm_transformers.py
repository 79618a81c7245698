"""The transformers backend on a real (tiny, randomly initialised) Llama saved to disk with the
packaged MiniLM tokenizer: no hub access, seconds on CPU, exercises batching and caching."""

import shutil

import pytest
import torch

from llmseqrec.text.llm import ChatConfig, ChatModel
from llmseqrec.text.locate import packaged_minilm


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
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
