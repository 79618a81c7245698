"""Errors of the text layer. All are one-line :class:`LlmSeqRecError` subclasses the CLI prints."""

from __future__ import annotations

from llmseqrec.errors import ConfigError, LlmSeqRecError


class ModelNotFoundError(ConfigError):
    """A model path, packaged model or backend library that is not there."""


class TemplateError(ConfigError):
    """A prompt template that cannot be found, parsed or filled."""


class LlmRequestError(LlmSeqRecError):
    """A model call that failed after its retries (or could not be retried, e.g. HTTP 401).

    Answers that completed before the failure are already in the response cache, so a rerun
    resumes where this one stopped.
    """

    def __init__(self, message: str, *, completed: int = 0, failed: int = 0) -> None:
        self.completed = completed
        self.failed = failed
        super().__init__(message)
