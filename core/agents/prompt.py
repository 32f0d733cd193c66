"""Prompt templates and their rendering: pure text in, text and a hash out.

Templates use MLflow's `{{name}}` placeholders so the same text lives in the repository
(infra/llm/prompts) and in MLflow's Prompt Registry. A rendered prompt is hashed: the hash goes
on the audit row and, with the model id, keys the replay cache.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import FatalError

_VAR = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


class PromptError(FatalError, ValueError):
    """A template that cannot be rendered, or is not the one a replay needs."""


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    name: str  # e.g. "tradeflow-bull"
    version: str  # the registry's version, or "repo-<hash>" for the repository's text
    text: str

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(_VAR.findall(self.text))

    def render(self, values: Mapping[str, str]) -> str:
        missing = self.variables - set(values)
        if missing:
            raise PromptError(f"{self.name} v{self.version}: no value for {sorted(missing)}")
        return _VAR.sub(lambda m: values[m.group(1)], self.text)


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    agent: str
    round: int
    template: str
    template_version: str
    system: str
    user: str

    @property
    def text(self) -> str:
        return f"[system]\n{self.system}\n[user]\n{self.user}"

    @property
    def hash(self) -> str:
        return prompt_hash(self.system, self.user)


def prompt_hash(system: str, user: str) -> str:
    return hashlib.sha256(f"{system}\x00{user}".encode()).hexdigest()


def text_version(text: str) -> str:
    """The version of a template known only by its text (the repository's copy)."""
    return "repo-" + hashlib.sha256(text.encode()).hexdigest()[:12]
