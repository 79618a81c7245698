"""Text into signals: LLM backends with a response cache, prompts, grounding, encoders, retrieval.

Heavy libraries (torch, transformers, xllamacpp, faiss) load only when a model is used.
"""

from llmseqrec.text.cache import ResponseCache, UsageCounters
from llmseqrec.text.encoders import AttentionEncoder, ItemSequenceEncoding, SentenceEncoder
from llmseqrec.text.errors import LlmRequestError, ModelNotFoundError, TemplateError
from llmseqrec.text.grounding import Grounder, GroundingStats, ground, parse_json_answer
from llmseqrec.text.llm import ChatConfig, ChatModel, GenerationParams
from llmseqrec.text.locate import packaged_gguf, packaged_minilm
from llmseqrec.text.prompts import Bulleted, PromptTemplate, available_templates, load_template
from llmseqrec.text.retrieval import topk_neighbours

__all__ = [
    "AttentionEncoder",
    "ChatConfig",
    "ChatModel",
    "GenerationParams",
    "Grounder",
    "GroundingStats",
    "ItemSequenceEncoding",
    "LlmRequestError",
    "ModelNotFoundError",
    "Bulleted",
    "PromptTemplate",
    "ResponseCache",
    "SentenceEncoder",
    "TemplateError",
    "UsageCounters",
    "available_templates",
    "ground",
    "load_template",
    "packaged_gguf",
    "packaged_minilm",
    "parse_json_answer",
    "topk_neighbours",
]
