"""llmseqrec: LLM-enhanced sequential recommendation on any sequential backbone."""

__version__ = "0.1.0"
