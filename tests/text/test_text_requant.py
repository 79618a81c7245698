"""Re-quantisation of the packaged GGUF for CPU batching: a faithful, cached, separately keyed copy."""

from __future__ import annotations

import gguf
import numpy as np
from gguf.quants import dequantize

from llmseqrec.text.locate import packaged_gguf
from llmseqrec.text.requant import requantized_gguf, resolve_gguf


def test_q4_0_copy_keeps_metadata_and_precise_tensors_and_stays_close_to_the_weights():
    source = packaged_gguf()
    converted = requantized_gguf(source, "q4_0")
    before, after = gguf.GGUFReader(source), gguf.GGUFReader(converted)

    assert set(before.fields) == set(after.fields)
    for name in ("general.architecture", "tokenizer.ggml.model", "llama.context_length"):
        assert before.fields[name].contents() == after.fields[name].contents()
    assert len(before.fields["tokenizer.ggml.tokens"].contents()) == len(
        after.fields["tokenizer.ggml.tokens"].contents()
    )

    old = {t.name: t for t in before.tensors}
    for tensor in after.tensors:
        original = old[tensor.name]
        assert list(tensor.shape) == list(original.shape)
        if original.tensor_type.name == "Q4_1":
            assert tensor.tensor_type.name == "Q4_0"
            a = dequantize(original.data, original.tensor_type)
            b = dequantize(tensor.data, tensor.tensor_type)
            # Re-quantising adds one more 4-bit rounding: small next to the weights themselves.
            assert np.linalg.norm(a - b) < 0.2 * np.linalg.norm(a)
        else:  # higher precision (the Q8_0 embedding / output head, F32 norms): copied as is
            assert tensor.tensor_type == original.tensor_type
            assert np.array_equal(np.asarray(tensor.data), np.asarray(original.data))


def test_conversion_is_cached_and_auto_leaves_a_users_own_file_alone():
    source = packaged_gguf()
    first = requantized_gguf(source, "q4_0")
    stamp = first.stat().st_mtime_ns
    assert requantized_gguf(source, "q4_0") == first and first.stat().st_mtime_ns == stamp

    assert resolve_gguf(None, "auto") == (source, first, "q4_0")
    assert resolve_gguf(None, "off") == (source, source, None)
    assert resolve_gguf(str(source), "auto") == (source, source, None)  # named explicitly


def test_converted_model_has_its_own_cache_identity():
    from llmseqrec.text.llm import ChatConfig, LlamaCppBackend

    default = LlamaCppBackend(ChatConfig())
    original = LlamaCppBackend(ChatConfig(requantize="off"))
    assert default.identity == original.identity + "+q4_0"
    assert default.path != original.path
