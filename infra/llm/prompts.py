"""The prompt templates kept in the repository: the source of truth MLflow's Prompt Registry is
synced from, and what the agents use when no registry is configured."""

from __future__ import annotations

from pathlib import Path

from core.agents.prompt import PromptTemplate, text_version

PROMPT_DIR = Path(__file__).with_name("prompts")
BULL, BEAR, TURN = "tradeflow-bull", "tradeflow-bear", "tradeflow-turn"
TEMPLATE_NAMES = (BULL, BEAR, TURN)


def repo_template(name: str) -> PromptTemplate:
    text = (PROMPT_DIR / f"{name}.txt").read_text(encoding="utf-8").strip()
    return PromptTemplate(name, text_version(text), text)


def repo_templates() -> dict[str, PromptTemplate]:
    return {name: repo_template(name) for name in TEMPLATE_NAMES}
