"""The answer an LLM agent must give, as a strict schema, and its reading into a vote.

The schema goes to the provider as a strict JSON schema (response_format); the answer is then
validated here again, because not every OpenAI-compatible server enforces it. An answer that
does not validate is an abstention with the validation error: never a guess.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.agents.base import MAX_REASONS, Vote
from core.types import Action


class InvalidAnswer(ValueError):
    pass


class AgentAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["BUY", "SELL", "HOLD"]
    confidence: float = Field(ge=0.0, le=1.0)
    horizon: int = Field(ge=1, le=500, description="candles the view is for")
    reasons: list[str] = Field(min_length=1, max_length=MAX_REASONS)
    risk_flags: list[str] = Field(max_length=5)


_MAX_REASON_CHARS = 240


def read_answer(agent: str, text: str) -> Vote:
    """The vote in `text`; InvalidAnswer says precisely why there is none."""
    if not text.strip():
        raise InvalidAnswer("empty answer")
    try:
        answer = AgentAnswer.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise InvalidAnswer(f"{where}: {first['msg']} ({exc.error_count()} error(s))") from None
    reasons = tuple(" ".join(r.split())[:_MAX_REASON_CHARS] for r in answer.reasons)
    if not all(reasons):
        raise InvalidAnswer("reasons: an empty reason")
    flags = tuple(" ".join(f.split())[:80] for f in answer.risk_flags if f.strip())
    return Vote(
        agent=agent,
        action=Action(answer.action),
        confidence=round(answer.confidence, 4),
        reason="; ".join(reasons)[:300],
        horizon=answer.horizon,
        reasons=reasons,
        risk_flags=flags,
    )


def vote_json(vote: Vote) -> dict[str, object]:
    """A vote as the audit row keeps it (and as a rebuttal shows it to the other agent)."""
    return {
        "action": vote.action.value,
        "confidence": vote.confidence,
        "horizon": vote.horizon,
        "reasons": list(vote.reasons),
        "risk_flags": list(vote.risk_flags),
    }
