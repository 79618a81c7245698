"""Errors that reach the user as one line naming the file, line or field."""

from __future__ import annotations

from pathlib import Path


class LlmSeqRecError(Exception):
    """Base class: the CLI prints these as a single line and exits non-zero."""


class DataFormatError(LlmSeqRecError):
    """Bad input data. The message always names the file and, where known, the line or field."""

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")


class ConfigError(LlmSeqRecError):
    """Invalid option or configuration value."""
