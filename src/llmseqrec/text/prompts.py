"""Versioned prompt templates, rendered with item text treated strictly as data.

A template is a text file ``<name>.v<version>.txt``; the packaged ones live in
``llmseqrec/text/prompts/`` and a user's own directory can be searched first. Placeholders are
``{{ name }}``. Rendering is one pass over the template, so braces, quotes or placeholders
inside a value are copied literally and never expanded; line breaks and control characters
inside item texts are collapsed to spaces so an item cannot start a fake instruction line.
List values are written as numbered lines (``1. text``), the numbers grounding reads back;
a :class:`Bulleted` list as ``- text`` lines.

``render_fitted`` keeps a prompt within a token budget by dropping the OLDEST entries of the
history list first: the most recent items are the ones a recommender needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from llmseqrec.text.errors import TemplateError
from llmseqrec.text.llm import estimate_tokens

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_\-]+)\.v(?P<version>\d+)\.txt$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_SPACES = re.compile(r"\s+")

Value = str | int | float | Sequence[str]


def clean_item_text(text: str) -> str:
    """One line of item text: control characters and line breaks become single spaces."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", str(text))).strip()


def numbered(items: Iterable[str], start: int = 1) -> str:
    return "\n".join(f"{i}. {clean_item_text(t)}" for i, t in enumerate(items, start))


class Bulleted(tuple):
    """A list value written as unnumbered ``- text`` lines, so that in a prompt with a numbered
    candidate list the only numbers are the candidates' (a small model otherwise answers with
    history positions)."""

    __slots__ = ()


def bulleted(items: Iterable[str]) -> str:
    return "\n".join(f"- {clean_item_text(t)}" for t in items)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    text: str
    path: Path | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        """``name@vN``: what goes into the response cache key."""
        return f"{self.name}@v{self.version}"

    @cached_property
    def variables(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.text))

    @classmethod
    def from_file(cls, path: str | Path) -> PromptTemplate:
        path = Path(path)
        match = _FILE_NAME.match(path.name)
        if not match:
            raise TemplateError(f"{path}: template files are named <name>.v<version>.txt")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise TemplateError(f"{path}: cannot read template ({error.strerror})") from error
        return cls(match["name"], int(match["version"]), text, path)

    def render(self, **values: Value) -> str:
        """Fill every placeholder; lists become numbered lines. Missing/extra names are errors."""
        missing = self.variables - values.keys()
        if missing:
            raise TemplateError(f"template {self.id}: no value for {', '.join(sorted(missing))}")
        extra = values.keys() - self.variables
        if extra:
            raise TemplateError(
                f"template {self.id}: no placeholder for {', '.join(sorted(extra))}"
            )
        filled = {name: _format_value(value) for name, value in values.items()}
        # re.sub with a function: replacement text is never scanned again, so a title that
        # contains "{{history}}" or a backslash stays exactly as written.
        return _PLACEHOLDER.sub(lambda m: filled[m.group(1)], self.text)

    def render_fitted(
        self,
        *,
        budget_tokens: int,
        history_var: str = "history",
        count_tokens: Callable[[str], int] = estimate_tokens,
        min_items: int = 1,
        **values: Value,
    ) -> tuple[str, int]:
        """Render with as many of the MOST RECENT history entries as fit the token budget.

        Returns the prompt and how many oldest entries were dropped. History is given oldest
        first, as sequences are stored.
        """
        history = values.pop(history_var, None)
        if history is None or isinstance(history, str):
            raise TemplateError(f"template {self.id}: {history_var!r} must be a list of item texts")
        wrap = Bulleted if isinstance(history, Bulleted) else list
        history = wrap(history)
        # Binary search on the number of oldest items dropped: token counts grow with kept items.
        low, high = 0, max(len(history) - min_items, 0)
        if count_tokens(self.render(**values, **{history_var: history})) <= budget_tokens:
            return self.render(**values, **{history_var: history}), 0
        while low < high:
            mid = (low + high) // 2
            kept = wrap(history[mid:])  # slices keep the list's kind (numbered or bulleted)
            if count_tokens(self.render(**values, **{history_var: kept})) <= budget_tokens:
                high = mid
            else:
                low = mid + 1
        prompt = self.render(**values, **{history_var: wrap(history[low:])})
        if count_tokens(prompt) > budget_tokens:
            raise TemplateError(
                f"template {self.id}: does not fit {budget_tokens} tokens even with {min_items} history item(s)"
            )
        return prompt, low


def _format_value(value: Value) -> str:
    if isinstance(value, str):
        return clean_item_text(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Bulleted):
        return bulleted(value)
    return numbered(value)


def _packaged_dir() -> Path:
    return Path(str(resources.files("llmseqrec.text") / "prompts"))


def available_templates(search_dirs: Sequence[str | Path] = ()) -> Mapping[str, list[int]]:
    found: dict[str, set[int]] = {}
    for folder in [*map(Path, search_dirs), _packaged_dir()]:
        for path in folder.glob("*.v*.txt"):
            match = _FILE_NAME.match(path.name)
            if match:
                found.setdefault(match["name"], set()).add(int(match["version"]))
    return {name: sorted(versions) for name, versions in sorted(found.items())}


def load_template(
    name: str, version: int | None = None, search_dirs: Sequence[str | Path] = ()
) -> PromptTemplate:
    """A template by name (latest version unless given); ``search_dirs`` win over packaged ones."""
    if Path(name).suffix == ".txt":
        return PromptTemplate.from_file(name)
    for folder in [*map(Path, search_dirs), _packaged_dir()]:
        candidates = {}
        for path in folder.glob(f"{name}.v*.txt"):
            match = _FILE_NAME.match(path.name)
            if match and match["name"] == name:
                candidates[int(match["version"])] = path
        if version is not None and version in candidates:
            return PromptTemplate.from_file(candidates[version])
        if version is None and candidates:
            return PromptTemplate.from_file(candidates[max(candidates)])
    known = ", ".join(
        f"{n} (v{', v'.join(map(str, v))})" for n, v in available_templates(search_dirs).items()
    )
    wanted = f"{name} v{version}" if version is not None else name
    raise TemplateError(f"no prompt template {wanted}; available: {known or 'none'}")
