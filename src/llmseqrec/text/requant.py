"""Re-quantise a GGUF file into the weight type llama.cpp's CPU kernels batch best.

On load, llama.cpp repacks Q4_0 weights into interleaved blocks that its CPU GEMM kernels read
several rows at a time, so parallel slots share every weight load. Q4_1 (the packaged SmolLM2
file) has no such path: its kernels compute one dot product per row and column, and 8-16
parallel slots gained only 1.4-1.6x on this project's AVX2 machine, against 2.15x for the Q4_0
copy (``benchmarks/results/llm_stage.md``).
Converting once (dequantise, re-quantise with ``gguf``, the llama.cpp project's own Python
package) takes seconds and is cached under ``$LLMSEQREC_CACHE/models``.

Only 4/5-bit block types are converted; tensors already at higher precision (Q8_0, F16, F32:
the packaged file keeps its tied token embedding / output head in Q8_0) are copied unchanged.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Literal

import numpy as np

from llmseqrec import paths
from llmseqrec.text.errors import ModelNotFoundError
from llmseqrec.text.locate import model_fingerprint, packaged_gguf, require_path

log = logging.getLogger(__name__)

RequantTarget = Literal["q4_0", "q8_0"]
RequantChoice = Literal["auto", "off", "q4_0", "q8_0"]
_CONVERTED = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "IQ4_NL", "IQ4_XS")


def requantized_gguf(source: Path, target: RequantTarget) -> Path:
    """The cached re-quantised copy of ``source`` (made on first use, written atomically)."""
    try:
        import gguf
        from gguf.quants import dequantize, quantize
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ModelNotFoundError("re-quantising a GGUF file needs: pip install gguf") from error
    target_type = getattr(gguf.GGMLQuantizationType, target.upper())
    out = paths.cache_root() / "models" / f"{source.stem}.{model_fingerprint(source)}.{target}.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("re-quantising %s to %s (once; cached at %s)", source.name, target, out)
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    tmp = out.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue  # written by the writer itself
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
        for tensor in reader.tensors:
            if tensor.tensor_type.name in _CONVERTED and tensor.tensor_type != target_type:
                weights = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
                data = quantize(weights, target_type)
                writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=target_type)
            else:
                writer.add_tensor(
                    tensor.name, np.asarray(tensor.data), raw_dtype=tensor.tensor_type
                )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def resolve_gguf(
    model: str | Path | None, requantize: RequantChoice
) -> tuple[Path, Path, str | None]:
    """``(source, file to load, re-quantisation applied or None)`` for ``model`` (None = the
    packaged SmolLM2). ``auto`` converts the packaged Q4_1 file to Q4_0 and leaves a user's own
    file as it is (its type was chosen on purpose, and converting a large model takes minutes)."""
    source = require_path(model, "GGUF model file") if model else packaged_gguf()
    if source.is_dir() or source.suffix.lower() != ".gguf":
        raise ModelNotFoundError(f"the llamacpp backend needs a .gguf file, got {source}")
    target = ("off" if model else "q4_0") if requantize == "auto" else requantize
    if target == "off":
        return source, source, None
    return source, requantized_gguf(source, target), target
